"""The browser client of the rooms wire format, ``ignitia-rooms.js``, shipped in the package.

One JavaScript file, no build step, no dependency (``static/ignitia-rooms.js``; its API and the
format are ``docs/rooms-protocol.md``). :func:`javascript_path` says where it is, for Flask's
``send_file`` or Django's ``STATICFILES_DIRS``; :func:`javascript_app` is a WSGI app that
serves it (``Content-Type: text/javascript``, an ``ETag``, ``Cache-Control: no-cache`` so that a
browser asks again each time and gets a 304 while the file is the same).

Example:
    >>> javascript_path().endswith("ignitia-rooms.js")
    True
    >>> answer = {}
    >>> body = javascript_app({"REQUEST_METHOD": "GET"}, lambda status, headers: answer.update(status=status))
    >>> answer["status"], b"IgnitiaRooms" in b"".join(body)
    ('200 OK', True)
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["javascript_app", "javascript_path"]

_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "ignitia-rooms.js")


def javascript_path() -> str:
    """The path of ``ignitia-rooms.js`` inside the installed package.

    Example:
        >>> import os
        >>> os.path.isfile(javascript_path())
        True
    """
    return _FILE


@functools.lru_cache(maxsize=1)
def _file() -> tuple[bytes, str]:
    """The file's bytes and their ETag (read once: the package does not change while it runs)."""
    with open(_FILE, "rb") as file:
        data = file.read()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (weak or strong, or ``*``)."""
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def javascript_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI app that answers any GET or HEAD with ``ignitia-rooms.js``.

    200 with the file, or 304 when ``If-None-Match`` names its ETag; 405 for another method.
    Mount it at the path your pages load it from (``WebSocketMiddleware``, a dispatcher, or
    call it from your own WSGI app for that path).

    Example:
        >>> _, etag = _file()
        >>> answer = {}
        >>> javascript_app({"REQUEST_METHOD": "GET", "HTTP_IF_NONE_MATCH": etag},
        ...                lambda status, headers: answer.update(status=status))
        []
        >>> answer["status"]
        '304 Not Modified'
    """
    data, etag = _file()
    method = environ.get("REQUEST_METHOD", "GET")
    cache = [("ETag", etag), ("Cache-Control", "no-cache")]
    if method not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain"),
                                                  ("Content-Length", "0")])
        return []
    if _matches(environ.get("HTTP_IF_NONE_MATCH", ""), etag):
        start_response("304 Not Modified", cache)
        return []
    start_response("200 OK", [
        ("Content-Type", "text/javascript; charset=utf-8"),
        ("Content-Length", str(len(data))),
        ("X-Content-Type-Options", "nosniff"),
        *cache,
    ])
    return [] if method == "HEAD" else [data]
