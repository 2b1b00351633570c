"""A minimal Django project with WebSocket views (see README, "Django")."""
