"""The project's WSGI application, with WebSocket views enabled."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.settings")

from ignitia_sync.django import get_wsgi_application

application = get_wsgi_application()
