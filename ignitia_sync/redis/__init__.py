"""Rooms and broadcasts across processes and hosts, over Redis pub/sub (``pip install ignitia_sync[redis]``).

Example::

    from ignitia_sync.redis import RedisBackplane
    server = Server(app, ("0.0.0.0", 3000), backplane=RedisBackplane("redis://localhost:6379/0"))
"""

from .backplane import Emitter, RedisBackplane, decode, encode

__all__ = ["Emitter", "RedisBackplane", "decode", "encode"]
