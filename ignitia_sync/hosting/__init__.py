"""Hosts of connections: what every host shares (:mod:`.host`), the standalone
:class:`~ignitia_sync.hosting.server.Server`, and how a socket is taken over from a WSGI server.

Example:
    >>> from ignitia_sync.hosting import Server
    >>> Server.__name__
    'Server'
"""

from .server import Server, ServerSettings, run

__all__ = ["Server", "ServerSettings", "run"]
