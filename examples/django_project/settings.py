"""Settings of the example project: sessions, auth, one sqlite file, WebSocket views.

``"ignitia_sync.django"`` comes first in ``INSTALLED_APPS``, so that ``manage.py runserver``
serves the WebSocket views too (before ``django.contrib.staticfiles``, whose ``runserver``
it replaces while keeping its static files).
"""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example only: set DJANGO_SECRET_KEY in production")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "examples.django_project.urls"
WSGI_APPLICATION = "examples.django_project.wsgi.application"
INSTALLED_APPS = [
    "ignitia_sync.django",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("DJANGO_DB", str(HERE / "db.sqlite3"))}
}
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
LOGIN_URL = "/login/"
# ConnectionSettings fields for every WebSocket view (a view's own options win).
IGNITIA_SYNC = {"max_message_size": 8 << 20, "ping_interval": 20.0}
