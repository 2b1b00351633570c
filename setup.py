"""The optional C accelerator, ``ignitia_sync.sansio._framing``; all metadata stays in setup.cfg.

This file exists because setup.cfg cannot declare ``ext_modules``. The extension is the C twin
of ignitia_sync/sansio/framing_python.py; ignitia_sync.sansio.framing falls back to the Python
twin wherever it is not built. The build-time environment variable
``IGNITIA_SYNC_BUILD_EXTENSION`` decides:

- unset, empty or ``auto``: built where it compiles; a failing compile (no C compiler, no
  Python headers) prints a warning and leaves a pure-Python install;
- ``yes``: a failing compile fails the build (tox, CI and the wheel builds use it);
- ``no``: not built at all.

It is never built on interpreters other than CPython (PyPy and others run the Python twin).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup

MODES = ("auto", "yes", "no")
mode = os.environ.get("IGNITIA_SYNC_BUILD_EXTENSION", "").strip().lower() or "auto"
if mode not in MODES:
    raise SystemExit(f"IGNITIA_SYNC_BUILD_EXTENSION={mode!r}: expected one of {', '.join(MODES)}")

ext_modules = []
if mode != "no" and sys.implementation.name == "cpython":
    # -O3 and -std=c11 are gcc/clang flags; MSVC takes neither (and compiles C11 by default).
    flags = [] if sys.platform == "win32" else ["-O3", "-std=c11"]
    ext_modules.append(Extension("ignitia_sync.sansio._framing", ["ignitia_sync/sansio/_framing.c"],
                                 extra_compile_args=flags, optional=mode == "auto"))

setup(ext_modules=ext_modules)
