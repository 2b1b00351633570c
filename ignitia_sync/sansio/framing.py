"""Which twin does the per-message frame work: the C accelerator, or Python.

The C extension ``ignitia_sync.sansio._framing`` (built by ``pip install`` where a C
compiler is present, and in the wheels the project's wheel workflow builds) and :mod:`~ignitia_sync.sansio.framing_python` do
the same thing byte for byte. This module picks one at import: the C one when it was
built and the interpreter is CPython, unless the environment variable
``IGNITIA_SYNC_PURE_PYTHON`` is set (to anything but empty), which forces Python.

:data:`ACTIVE` says which one runs; ``ignitia_sync.native_speedups()`` is the public
name of the same answer, and :func:`~ignitia_sync.run` logs :func:`describe` at start.

Example:
    >>> from ignitia_sync.sansio import framing
    >>> framing.text_frame("hi")
    b'\\x81\\x02hi'
    >>> isinstance(framing.ACTIVE, bool)
    True
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Protocol

from ..message import Message
from . import framing_python

__all__ = ["ACTIVE", "describe", "frame", "masked_frame", "native_speedups", "parse", "text_frame", "unmask"]

Payload = bytes | bytearray | memoryview


class _Frame(Protocol):
    def __call__(self, opcode: int, payload: Payload, first: int = 0x80, /) -> bytes: ...


parse: Callable[[bytearray, bool, int, list[Message]], tuple[int, bool]] = framing_python.parse
frame: _Frame = framing_python.frame
text_frame: Callable[[str], bytes] = framing_python.text_frame
masked_frame: Callable[[int, Payload, bytes], bytes] = framing_python.masked_frame
unmask: Callable[[Payload, bytes | bytearray], bytes] = framing_python.unmask

#: True when the C accelerator does the per-message frame work in this process.
ACTIVE = False
#: Why the Python twin runs ("" when the accelerator does).
_WHY_PYTHON: str

if os.environ.get("IGNITIA_SYNC_PURE_PYTHON"):
    _WHY_PYTHON = "IGNITIA_SYNC_PURE_PYTHON is set"
elif sys.implementation.name != "cpython":
    _WHY_PYTHON = f"{sys.implementation.name} is not CPython"
else:
    try:
        from . import _framing
    except ImportError as exc:  # not built (no compiler, an sdist without one): the Python twin
        _WHY_PYTHON = f"the C accelerator is not built ({exc})"
    else:
        _WHY_PYTHON = ""
        parse, frame, text_frame = _framing.parse, _framing.frame, _framing.text_frame
        masked_frame, unmask = _framing.masked_frame, _framing.unmask
        ACTIVE = True


def native_speedups() -> bool:
    """True when the C accelerator does this process's per-message frame work.

    Also ``ignitia_sync.native_speedups()``. False where it was not built (no C compiler
    at install time, PyPy) or ``IGNITIA_SYNC_PURE_PYTHON`` is set; both paths behave the same.

    Example:
        >>> native_speedups() in (True, False)
        True
    """
    return ACTIVE


def describe() -> str:
    """Which path does the frame work, and why: the line ``run()`` logs at start.

    Example:
        >>> describe().startswith("frame work: ")
        True
    """
    if ACTIVE:
        return "frame work: C accelerator (ignitia_sync.sansio._framing)"
    return f"frame work: Python ({_WHY_PYTHON})"
