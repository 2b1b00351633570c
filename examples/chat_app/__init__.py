"""The chat app package: ``ignitia-sync examples.chat_app:app`` or ``gunicorn ... examples.chat_app:app``."""

from .app import app

__all__ = ["app"]
