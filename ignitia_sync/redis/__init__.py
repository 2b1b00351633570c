"""Rooms and broadcasts across processes and hosts, over Redis pub/sub (``pip install ignitia_sync[redis]``).

The package, by job: ``backplane`` (:class:`RedisBackplane`, the servers' side), ``emitter``
(:class:`Emitter`, for a process that serves no WebSockets), ``envelope`` (the wire format,
:func:`encode`/:func:`decode`), ``inspection`` (every process's connections and rooms on
request, the close of one connection), ``link`` (the backplane's link state and its
transitions), ``shards`` (the redis-py clients and subscription connections).

Example::

    from ignitia_sync.redis import RedisBackplane
    server = Server(app, ("0.0.0.0", 3000), backplane=RedisBackplane("redis://localhost:6379/0"))
"""

from .._support.extras import needs

with needs("ignitia_sync.redis", "redis-py", extra="redis", packages=("redis",)):
    from .backplane import RedisBackplane
    from .emitter import Emitter
    from .envelope import decode, encode

__all__ = ["Emitter", "RedisBackplane", "decode", "encode"]
