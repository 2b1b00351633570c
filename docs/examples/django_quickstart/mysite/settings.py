"""The smallest settings a Django project with WebSocket views needs (docs/quickstart.md)."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "quickstart only: set DJANGO_SECRET_KEY")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
INSTALLED_APPS = [
    "ignitia_sync.django",  # only for `manage.py runserver`; first, before django.contrib.staticfiles
]
IGNITIA_SYNC = {"max_message_size": 1 << 20, "ping_interval": 20}
