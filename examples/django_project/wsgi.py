"""The project's WSGI application, with WebSocket views enabled.

    ignitia-sync examples.django_project.wsgi:application --port 8000
    gunicorn -k ignitia_sync.gunicorn.Worker -w 2 examples.django_project.wsgi
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")

from ignitia_sync.django import get_wsgi_application

application = get_wsgi_application()
