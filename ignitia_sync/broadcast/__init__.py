"""Rooms and broadcast: the :class:`~ignitia_sync.broadcast.registry.Registry` of open
connections and the backplane that carries its calls to other processes.

Example:
    >>> from ignitia_sync.broadcast import Registry
    >>> len(Registry())
    0
"""

from .registry import Backplane, LocalBackplane, Registry

__all__ = ["Backplane", "LocalBackplane", "Registry"]
