"""Every import path and name that users had before the package got its folders still works.

The names are those the README, the docs and the examples used at the last release of the
flat layout; the old module paths are those of ``ignitia_sync._support.moved.MOVED``.
"""

from __future__ import annotations

import configparser
import importlib
import pathlib

import pytest

from ignitia_sync._support.moved import MOVED

#: (module, names) as the README, docs and examples of the flat layout imported them.
DOCUMENTED = [
    ("ignitia_sync", ['AuthInfo', 'AuthMiddleware', 'ConnectionClosed', 'ConnectionSettings', 'HandshakeError', 'KeyedLimiter', 'Message', 'MessageDecodeError', 'OriginCheck', 'RateLimit', 'Request', 'Response', 'Router', 'Server', 'SlidingWindow', 'TokenBucket', 'WebSocketConnection', 'run', 'websocket_batch_handler', 'websocket_handler', 'websocket_message_handler']),
    ("ignitia_sync.client", ['Backoff', 'ClientConnection', 'connect', 'reconnecting']),
    ("ignitia_sync.django", ['get_wsgi_application', 'websocket_view']),
    ("ignitia_sync.exceptions", ['ConnectionClosed']),
    ("ignitia_sync.flask", ['ConnectionClosed', 'FlaskWebSocket', 'Sock']),
    ("ignitia_sync.gunicorn", ['Worker']),
    ("ignitia_sync.handshake", ['accept']),
    ("ignitia_sync.message", ['Text']),
    ("ignitia_sync.redis", ['RedisBackplane']),
    ("ignitia_sync.registry", ['Backplane']),
    ("ignitia_sync.session", ['serve_connection']),
    ("ignitia_sync.testing", ['TestClient']),
    ("ignitia_sync.wsgi", ['WebSocketMiddleware']),
]


@pytest.mark.parametrize(("module", "names"), DOCUMENTED, ids=[module for module, _ in DOCUMENTED])
def test_every_documented_name_still_imports(module, names):
    imported = importlib.import_module(module)
    for name in names:
        assert hasattr(imported, name), f"from {module} import {name}"


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_module_path_is_the_module_at_its_new_place(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)
    assert importlib.import_module(new).__spec__.name == new  # the module keeps its own identity


def test_the_entry_points_and_the_django_app_still_resolve():
    config = configparser.ConfigParser()
    config.read(pathlib.Path(__file__).resolve().parents[1] / "setup.cfg")
    entry_points = config["options.entry_points"]
    for line in (entry_points["console_scripts"] + entry_points["pytest11"]).split("\n"):
        if "=" in line:
            target = line.split("=", 1)[1].strip()
            module, _, attr = target.partition(":")
            imported = importlib.import_module(module)
            assert not attr or hasattr(imported, attr), target
    from ignitia_sync.gunicorn import Worker  # gunicorn -k ignitia_sync.gunicorn.Worker

    assert Worker.__name__ == "Worker"
    assert importlib.import_module("ignitia_sync.django.apps").__name__ == "ignitia_sync.django.apps"
