"""The project's WSGI application: the file ``django-admin startproject`` writes, unchanged.

WebSocket views need nothing more here:

    ignitia-sync examples.django_project.wsgi:application --port 8000
    gunicorn -k ignitia_sync.gunicorn.Worker -w 2 examples.django_project.wsgi
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")

application = get_wsgi_application()
