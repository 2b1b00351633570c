"""Serving the metrics over HTTP: a WSGI app that refuses addresses outside an allowed list.

:func:`wsgi_app` answers ``GET`` with the text format (from prometheus_client's default
registry, or, under multiprocess mode, from every process's files), 403 to a peer outside
``allow`` (loopback by default), 405 to other methods. :func:`mount` puts it at a path in
front of another WSGI app; the standalone server does that itself with ``metrics=True``.

Example:
    >>> app = mount("/metrics", wsgi_app())
    >>> answers = []
    >>> body = app({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET", "REMOTE_ADDR": "10.0.0.7"},
    ...            lambda status, headers: answers.append(status))
    >>> answers, body
    (['403 Forbidden'], [b'metrics are not served to this address\\n'])
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from .families import keep_in_sync, multiprocess, sync

__all__ = ["DEFAULT_ALLOW", "allowed", "mount", "render", "wsgi_app"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Who may scrape by default: this machine only.
DEFAULT_ALLOW: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


def networks(allow: Sequence[str]) -> tuple[_Network, ...]:
    """``allow`` parsed (addresses or networks); ValueError for a typo, now.

    Example:
        >>> networks(["10.0.0.0/8", "::1"])
        (IPv4Network('10.0.0.0/8'), IPv6Network('::1/128'))
    """
    if isinstance(allow, str):
        raise TypeError("allow must be a sequence of addresses or networks, not a string")
    return tuple(ipaddress.ip_network(network, strict=False) for network in allow)


def allowed(address: str, allow: Iterable[_Network]) -> bool:
    """True when ``address`` (a peer's IP; IPv4-mapped IPv6 too) is inside one of ``allow``.

    Example:
        >>> allowed("127.0.0.1", networks(DEFAULT_ALLOW)), allowed("127.0.0.2", networks(["127.0.0.1"]))
        (True, False)
    """
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False  # a Unix socket's peer, or nothing: not an address we can allow
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == network.version and ip in network for network in allow)


def render() -> tuple[bytes, str]:
    """(body, content type) of a scrape, after :func:`~ignitia_sync.metrics.sync`.

    Example:
        >>> render()[1].startswith("text/plain")
        True
    """
    sync()
    if multiprocess():
        keep_in_sync()
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _answer(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def wsgi_app(allow: Sequence[str] | None = DEFAULT_ALLOW) -> WSGIApp:
    """A WSGI app serving the metrics to peers inside ``allow`` (None: to everyone).

    The peer is ``REMOTE_ADDR``: behind a reverse proxy that is the proxy, so keep the
    metrics path off the proxy (or scrape the process directly).

    Example:
        >>> answers = []
        >>> body = wsgi_app()({"REQUEST_METHOD": "GET", "REMOTE_ADDR": "127.0.0.1"},
        ...                   lambda status, headers: answers.append(status))
        >>> answers
        ['200 OK']
    """
    allowed_networks = networks(allow) if allow is not None else None
    keep_in_sync()

    def metrics(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if allowed_networks is not None and not allowed(str(environ.get("REMOTE_ADDR", "")), allowed_networks):
            return _answer(start_response, "403 Forbidden", "metrics are not served to this address\n")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", "GET only\n")
        body, content_type = render()
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [b""] if method == "HEAD" else [body]

    return metrics


def mount(path: str, metrics: WSGIApp, app: WSGIApp | None = None) -> WSGIApp:
    """``metrics`` at ``path`` (exactly), everything else to ``app`` (None: 404).

    Example:
        >>> answers = []
        >>> _ = mount("/metrics", wsgi_app())({"PATH_INFO": "/other"}, lambda status, headers: answers.append(status))
        >>> answers
        ['404 Not Found']
    """
    if not path.startswith("/"):
        raise ValueError(f"the metrics path must start with '/', not {path!r}")

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") == path:
            return metrics(environ, start_response)
        if app is None:
            return _answer(start_response, "404 Not Found", "not found\n")
        return app(environ, start_response)

    return dispatch
