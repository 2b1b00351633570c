#!/usr/bin/env python
"""Django's command line for the example project (run from anywhere).

    python examples/django_project/manage.py migrate
    python examples/django_project/manage.py runserver 8000    # HTTP and WebSocket views
"""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the folder that holds examples/
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
