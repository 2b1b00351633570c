"""What the revocation suites share: a form POST with a session cookie, and the clients' checks.

Three suites revoke a user across real processes (tests/redis/test_revocation_processes.py
with Flask, test_user_revocation_processes.py with an Emitter and a handler,
test_django_logout_processes.py with Django); each signs in, opens connections, and checks
which were closed with what, and which still answer.
"""

from __future__ import annotations

import contextlib
import http.client
import time
import urllib.parse

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


def post(port: int, path: str, cookie: str = "", **form: str) -> tuple[int, str, str]:
    """(status, body, session cookie) of a form POST to 127.0.0.1:``port``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **({"Cookie": cookie} if cookie else {})}
        connection.request("POST", path, urllib.parse.urlencode(form), headers)
        response = connection.getresponse()
        set_cookie = response.getheader("Set-Cookie") or ""
        return response.status, response.read().decode(), set_cookie.split(";", 1)[0]
    finally:
        connection.close()


def opened(stack: contextlib.ExitStack, url: str, greeting: str, cookie: str = "") -> ClientConnection:
    """A connection to ``url`` (closed with ``stack``) once its server said ``greeting``: its user is set by then."""
    headers = {"Cookie": cookie} if cookie else None
    client = stack.enter_context(connect(url, additional_headers=headers, open_timeout=10))
    assert client.recv(timeout=10) == greeting
    return client


def closed_before(client: ClientConnection, deadline: float) -> tuple[int, str]:
    """The (code, reason) of the Close the server sent, which must arrive before ``deadline`` (monotonic)."""
    with pytest.raises(ConnectionClosed) as closed:
        client.recv(timeout=max(0.0, deadline - time.monotonic()))
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def still_open(client: ClientConnection, answer: str = "still here?") -> None:
    """The connection still answers "still here?" (with ``answer``)."""
    client.send("still here?")
    assert client.recv(timeout=10) == answer
