"""The cluster side of the inspection endpoint: where its answers come from, and the close orders it takes.

:class:`Cluster` is what ``ConnectionsEndpoint.cluster(...)`` asks: every process's
connections and rooms (``inspect``), the close of one connection in the process that has it
(``close_connection``), the close of every connection of a user (``disconnect``). An
:class:`~ignitia_sync.redis.Emitter` is one as it is; :func:`cluster_of` makes one of a
host whose backplane is a ``RedisBackplane`` (read at each call: a forked worker has its own),
so that a user's connections in the endpoint's own process close too (``registry.disconnect``).

:func:`close_order` reads and checks the JSON body of ``POST .../close``: one ``ValueError``
line per mistake, which the endpoint answers as 400.

Example:
    >>> close_order(b'{"user_id": "alice", "code": 1008, "reason": "banned"}')
    {'user_id': 'alice', 'code': 1008, 'reason': 'banned'}
    >>> close_order(b'{"process": "0123456789abcdef", "id": "#17", "code": 1011}')
    Traceback (most recent call last):
    ...
    ValueError: close code 1011 cannot end a revoked session: use 1000, 1001, 1008 or 3000-4999
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from ..broadcast.registry import _check_application_id
from ..message import check_revocation_close

__all__ = ["Cluster", "close_order", "cluster_of"]

#: The largest close order read (bytes).
MAX_BODY = 4096
#: A process id as inspections list it, and a connection's own id (as ``redis.envelope`` checks them).
_PROCESS = re.compile(r"[0-9a-f]{16}")
_OWN_ID = re.compile(r"#[0-9]{1,23}")
#: The fields of the two orders.
_ONE = frozenset({"process", "id", "code", "reason"})
_USER = frozenset({"user_id", "code", "reason"})


class Cluster(Protocol):
    """Where a cluster-mode endpoint gets its answers: an ``Emitter``, or :func:`cluster_of` a host."""

    def inspect(self, timeout: float = 2.0) -> dict[str, Any]: ...

    def close_connection(self, process: str, id: str, code: int = 1008, reason: str = "") -> int: ...

    def disconnect(self, id: str, code: int = 1008, reason: str = "") -> Any: ...


class _HostCluster:
    """A host's view of the cluster: its backplane's inspections and closes, its registry's revocations."""

    def __init__(self, host: Any) -> None:
        self._host = host

    def _backplane(self) -> Any:
        return self._host.registry.backplane

    def inspect(self, timeout: float = 2.0) -> dict[str, Any]:
        return self._backplane().inspect(timeout)  # type: ignore[no-any-return]

    def close_connection(self, process: str, id: str, code: int = 1008, reason: str = "") -> int:
        return int(self._backplane().close_connection(process, id, code, reason))

    def disconnect(self, id: str, code: int = 1008, reason: str = "") -> Any:
        return self._host.registry.disconnect(id, code, reason)  # here at once, elsewhere through Redis


def cluster_of(source: Any) -> Cluster:
    """``source`` as a :class:`Cluster`: a host (``Server``, ``WebSocketMiddleware``, a Flask ``Sock``'s
    ``host``) with a Redis backplane, or anything with ``inspect``, ``close_connection`` and ``disconnect``.

    Raises:
        TypeError: a host whose backplane cannot inspect other processes (not a ``RedisBackplane``).

    Example:
        >>> from ignitia_sync.hosting.host import Host, HostSettings
        >>> cluster_of(Host(HostSettings()))
        Traceback (most recent call last):
        ...
        TypeError: cluster inspection needs a host with a Redis backplane (backplane='redis://...'), not LocalBackplane
    """
    registry = getattr(source, "registry", None)
    if registry is not None and hasattr(registry, "backplane"):
        backplane = registry.backplane
        if not callable(getattr(backplane, "inspect", None)):
            raise TypeError("cluster inspection needs a host with a Redis backplane (backplane='redis://...'), "
                            f"not {type(backplane).__name__}")
        return _HostCluster(source)
    if all(callable(getattr(source, name, None)) for name in ("inspect", "close_connection", "disconnect")):
        return source  # type: ignore[no-any-return]
    raise TypeError(f"cluster inspection needs a host with a Redis backplane or an Emitter, not {type(source).__name__}")


def close_order(body: bytes) -> dict[str, Any]:
    """The checked order in ``body``: ``{"process", "id", "code", "reason"}`` or ``{"user_id", "code", "reason"}``.

    ``code`` is 1008 and ``reason`` empty when left out.

    Raises:
        ValueError: one line saying what is wrong (not JSON, not an object, a field missing,
            unknown or of the wrong type, a code or reason a revocation may not send).
    """
    try:
        order = json.loads(body)
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(order, dict):
        raise ValueError("the body must be a JSON object")
    fields = _USER if "user_id" in order else _ONE
    unknown = sorted(set(order) - fields)
    if unknown:
        raise ValueError(f"unknown field {unknown[0][:40]!r}: send either process, id or user_id, with code and reason")
    code, reason = order.get("code", 1008), order.get("reason", "")
    if type(code) is not int:
        raise ValueError("code must be an integer")
    if not isinstance(reason, str):
        raise ValueError("reason must be a string")
    check_revocation_close(code, reason)
    if fields is _USER:
        user_id = order["user_id"]
        if not isinstance(user_id, str):
            raise ValueError("user_id must be a string")
        _check_application_id(user_id)
        return {"user_id": user_id, "code": code, "reason": reason}
    process, id = order.get("process"), order.get("id")
    if not isinstance(process, str) or not _PROCESS.fullmatch(process):
        raise ValueError("process must be a process uid as the inspection lists it (16 hex digits)")
    if not isinstance(id, str) or not _OWN_ID.fullmatch(id):
        raise ValueError("id must be a connection id as the inspection lists it ('#' and digits, as '#17')")
    return {"process": process, "id": id, "code": code, "reason": reason}
