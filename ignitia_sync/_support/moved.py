"""Old import paths keep working: ``ignitia_sync.server`` is :mod:`ignitia_sync.hosting.server`.

Before the package had folders, every module sat at the top (``ignitia_sync.protocol``,
``ignitia_sync.session``...). :data:`MOVED` names where each one lives now; importing an
old path returns the module itself (the same object, so ``isinstance`` and monkeypatching
behave), without a file left behind at the old place.

Example:
    >>> import ignitia_sync.server, ignitia_sync.hosting.server
    >>> ignitia_sync.server is ignitia_sync.hosting.server
    True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

__all__ = ["MOVED", "install"]

#: Old module path → where the module lives now.
MOVED = {
    "ignitia_sync.client_handshake": "ignitia_sync.sansio.client_handshake",
    "ignitia_sync.handshake": "ignitia_sync.sansio.server_handshake",
    "ignitia_sync.http": "ignitia_sync.sansio.http",
    "ignitia_sync.inbox": "ignitia_sync.connection.inbox",
    "ignitia_sync.keepalive": "ignitia_sync.connection.keepalive",
    "ignitia_sync.protocol": "ignitia_sync.sansio.protocol",
    "ignitia_sync.registry": "ignitia_sync.broadcast.registry",
    "ignitia_sync.server": "ignitia_sync.hosting.server",
    "ignitia_sync.session": "ignitia_sync.hosting.serve",
    "ignitia_sync.stats": "ignitia_sync.hosting.stats",
    "ignitia_sync.transport": "ignitia_sync.connection.transport",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module at its new place."""

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # the import system is about to replace it
        return module

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        assert spec is not None
        module.__spec__ = spec.loader_state  # the module keeps its own spec, under both names


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once; ``ignitia_sync/__init__`` calls it)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
