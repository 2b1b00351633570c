"""``"ignitia_sync.django"`` in ``INSTALLED_APPS``: ``manage.py runserver`` serves WebSocket views.

Put it before ``"django.contrib.staticfiles"`` (the first app with a ``runserver`` command
wins); static files are still served as staticfiles' own command does.
"""

from django.apps import AppConfig


class IgnitiaSyncConfig(AppConfig):  # type: ignore[misc]
    """The app: its only job is the ``runserver`` command.

    Example: ``INSTALLED_APPS = ["ignitia_sync.django", ..., "django.contrib.staticfiles"]``.
    """

    name = "ignitia_sync.django"
    label = "ignitia_sync"
    verbose_name = "ignitia_sync WebSockets"
