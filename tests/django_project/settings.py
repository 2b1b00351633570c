"""A minimal Django project for the tests: sessions, auth, one sqlite file (IGNITIA_TEST_DB)."""

import os

SECRET_KEY = "test only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.django_project.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("IGNITIA_TEST_DB", ":memory:")}}
USE_TZ = True
LOGIN_URL = "/login/"
IGNITIA_SYNC = {"max_message_size": 8 << 20}
