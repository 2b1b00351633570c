"""Fixtures: a real ignitia_sync server on 127.0.0.1, port 0, in its own thread and hub."""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ignitia_sync import Router, Server

from .apps import Certificate, issue_certificate
from .browser import browser  # noqa: F401 (a fixture: headless Chromium for the browser tests)
from .redis_server import RedisServer

#: benchmarks/ and scripts/ hold programs that other processes run (servers, apps, gates), not tests:
#: importing one here would start or monkey-patch something, or wait for what its test provides.
collect_ignore_glob = ["benchmarks/*", "scripts/*"]
# The websocket_client fixture, loaded from the source tree (see addopts in setup.cfg).
pytest_plugins = ["ignitia_sync.testing"]


@contextlib.contextmanager
def running(app: Router, **settings: Any) -> Iterator[Server]:
    server = Server(app, ("127.0.0.1", 0), **settings)
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """``server = serve(app, **settings)``: started now, stopped after the test."""
    stack = contextlib.ExitStack()

    def start(app: Router, **settings: Any) -> Server:
        return stack.enter_context(running(app, **settings))

    with stack:
        yield start


def url(server: Server, path: str) -> str:
    host, port = server.address
    return f"ws://{host}:{port}{path}"


class _Failures(logging.Handler):
    """Keeps every error the library logged with a traceback: a handler that raised, and the like."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(autouse=True)
def server_side_errors_fail_the_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A server-side handler that raises fails the test that caused it, with its traceback.

    Its assertions count: the server would only log the exception and close with 1011. A
    test that means a handler (or middleware) to raise says so with
    ``@pytest.mark.expect_errors``.
    """
    failures = _Failures()
    library = logging.getLogger("ignitia_sync")
    library.addHandler(failures)
    try:
        yield
    finally:
        library.removeHandler(failures)
    if failures.records and request.node.get_closest_marker("expect_errors") is None:
        formatter = logging.Formatter("%(name)s: %(message)s")
        pytest.fail("the server logged an error:\n" + "\n".join(formatter.format(r) for r in failures.records),
                    pytrace=False)


@pytest.fixture(autouse=True)
def _log_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ignitia_sync")


@pytest.fixture
def certificate(tmp_path: pathlib.Path) -> Certificate:
    """A certificate for 127.0.0.1 and localhost from a throwaway authority (``tests/apps.py``)."""
    return issue_certificate(tmp_path, "127.0.0.1", "localhost")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free port, for this test only (``tests/redis_server.py``)."""
    server = RedisServer()
    server.start()
    yield server
    server.kill()
