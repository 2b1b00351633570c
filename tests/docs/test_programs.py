"""The documentation's whole programs (docs/examples/), run the way its readers run them.

Each server is started in its own process, as the page says, and spoken to with our client;
the tests the pages show (docs/examples/testing/, docs/examples/tutorial/) run in their own
pytest process, where the ``websocket_client`` fixture comes from the installed plugin.
``RUN_HERE`` lists every file these tests run: tests/docs/test_snippets.py checks that each
whole program shown in README.md and docs/ is one of them (or an example that
tests/e2e/ or tests/client/ runs).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ignitia_sync import Message
from ignitia_sync.client import connect
from tests.subprocess_server import free_port, host_command, running

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
DJANGO = EXAMPLES / "django_quickstart"

#: Every file under docs/examples/ that a test of this module runs (or imports, for a test it runs).
RUN_HERE = frozenset({
    "docs/examples/quickstart.py",
    "docs/examples/flask_quickstart.py",
    "docs/examples/pywsgi_app.py",
    "docs/examples/django_quickstart/manage.py",
    "docs/examples/django_quickstart/mysite/__init__.py",
    "docs/examples/django_quickstart/mysite/settings.py",
    "docs/examples/django_quickstart/mysite/urls.py",
    "docs/examples/django_quickstart/mysite/wsgi.py",
    "docs/examples/tutorial/chat1.py",
    "docs/examples/tutorial/chat2.py",
    "docs/examples/tutorial/chat3.py",
    "docs/examples/tutorial/test_tutorial.py",
    "docs/examples/testing/chat.py",
    "docs/examples/testing/conftest.py",
    "docs/examples/testing/test_chat.py",
    "docs/examples/testing/flask_login_app.py",
    "docs/examples/testing/test_flask_login.py",
    "docs/examples/testing/test_django_auth.py",
    "docs/examples/testing/test_fixture_login.py",
    # run by tests/docs/test_monitoring_programs.py
    "docs/examples/monitoring/server.py",
    "docs/examples/monitoring/flask_app.py",
    "docs/examples/monitoring/gunicorn.conf.py",
})


def _pythonpath(*folders: pathlib.Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([*map(str, folders), str(ROOT)])}


def _echoes(url: str, sent: str, expected: str) -> None:
    with connect(url, open_timeout=10) as ws:
        ws.send_text(sent)
        assert ws.recv(timeout=10) == Message.text(expected)


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()


def test_every_file_under_docs_examples_is_run_here():
    found = {path.relative_to(ROOT).as_posix() for path in EXAMPLES.rglob("*.py")}
    assert found == RUN_HERE


@pytest.mark.parametrize("how", ["python", "ignitia-sync"])
def test_the_standalone_quickstart(port, how):
    if how == "python":
        command = [sys.executable, str(EXAMPLES / "quickstart.py"), "--port", str(port)]
    else:
        command = host_command("ignitia-sync", "quickstart:app", port)
    with running(command, port, _pythonpath(EXAMPLES)) as process:
        _echoes(f"ws://127.0.0.1:{port}/echo", "hi", "hi")
    assert process.returncode == 0  # SIGTERM: a graceful stop


@pytest.mark.parametrize("host", ["ignitia-sync", "werkzeug"])
def test_the_flask_quickstart(port, host):
    with running(host_command(host, "flask_quickstart:app", port), port, _pythonpath(EXAMPLES)):
        with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10) as ws:
            assert ws.recv(timeout=10) == Message.text("hello 127.0.0.1")
            ws.send_text("hi")
            assert ws.recv(timeout=10) == Message.text("hi")


def test_the_django_quickstart_under_runserver(port):
    command = [sys.executable, str(DJANGO / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"]
    with running(command, port, {**_pythonpath(DJANGO), "DJANGO_SETTINGS_MODULE": "mysite.settings"}):
        _echoes(f"ws://127.0.0.1:{port}/ws/echo/lobby/", "hi", "lobby: hi")


def test_the_django_quickstart_with_the_stock_wsgi_py(port):
    # (explicit: the shell running the tests may name another project; no test of this process leaves one set)
    with running(host_command("ignitia-sync", "mysite.wsgi:application", port), port,
                 {**_pythonpath(DJANGO), "DJANGO_SETTINGS_MODULE": "mysite.settings"}):
        _echoes(f"ws://127.0.0.1:{port}/ws/echo/kitchen/", "hi", "kitchen: hi")


def test_pywsgi_serves_the_app_and_its_websockets(port):
    command = [sys.executable, str(EXAMPLES / "pywsgi_app.py")]
    with running(command, port, {"PORT": str(port)}) as process:
        _echoes(f"ws://127.0.0.1:{port}/ws/echo", "hi", "hi")
    assert process.returncode == 0


def test_the_tests_the_pages_show():
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tutorial", "testing"], cwd=EXAMPLES, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^9 passed", done.stdout, re.MULTILINE), done.stdout  # every test: none skipped
