"""What a script that configured no logging shows: handler tracebacks, start and stop lines,
and one warning when a handler blocks the event loop, naming its route and what to do."""

from __future__ import annotations

import sys

from ignitia_sync import Message
from ignitia_sync.client import connect
from tests.subprocess_server import free_port, running


def test_a_script_without_logging_shows_tracebacks_and_a_blocking_handler_on_stderr():
    port = free_port()
    output: list[str] = []
    command = [sys.executable, "tests/scripts/loud_server.py", "--port", str(port)]
    with running(command, port, output=output, allow_traceback=True):
        with connect(f"ws://127.0.0.1:{port}/boom") as ws:
            assert ws.recv(timeout=10) == Message.close_with_reason(1011, "")
        with connect(f"ws://127.0.0.1:{port}/sleepy") as ws:
            assert ws.recv(timeout=10).data == "woke up"
    text = "".join(output)
    assert "handler for /boom from 127.0.0.1 raised" in text and "RuntimeError: the handler's own bug" in text
    assert "listening on 127.0.0.1" in text and "stopped" in text
    # one warning for the handler's episode (a loaded machine may starve the loop besides: not its line)
    blocking = [line for line in text.splitlines() if "has blocked the event loop" in line and "/sleepy" in line]
    assert len(blocking) == 1, text
    line = blocking[0]
    assert "the handler of route '/sleepy'" in line and "loud_server.py:" in line and "in sleepy" in line
    assert "this program is not monkey-patched: call gevent.monkey.patch_all()" in line


def test_an_application_that_configured_logging_is_left_alone():
    import logging

    from ignitia_sync._support.logs import show_logs_by_default

    logger = logging.getLogger("ignitia_sync.test_configured")
    logger.setLevel(logging.WARNING)  # the application's choice
    assert show_logs_by_default("ignitia_sync.test_configured") is False
    assert logger.level == logging.WARNING and not logger.handlers
