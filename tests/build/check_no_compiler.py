"""IGNITIA_SYNC_BUILD_EXTENSION=yes without a C compiler must fail the install (tox -e nocompiler).

``yes`` is what tox, CI and the wheel builds set so that an accelerator that does not
compile is an error, not a quiet pure-Python install. This runs ``pip install`` of a clean
copy of the checkout (no build/, no accelerator built in place) into a throwaway folder with
CC, CXX and LDSHARED set to /bin/false, and asserts that pip exits non-zero because the
compiler failed. Run by ``tox -e nocompiler``; ``python tests/build/check_no_compiler.py``
works in any environment with pip.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SOURCE = ROOT / "ignitia_sync" / "sansio" / "_framing.c"
#: what setuptools needs to build the project: its configuration, the long description, the package
PROJECT_FILES = ["setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md"]


def main() -> int:
    if not SOURCE.exists():
        print(f"check_no_compiler: {SOURCE} is missing: nothing to fail to compile")
        return 1
    with tempfile.TemporaryDirectory(prefix="ignitia-nocompiler-") as tmp:
        copy = pathlib.Path(tmp) / "src"
        shutil.copytree(ROOT / "ignitia_sync", copy / "ignitia_sync",
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
        for name in PROJECT_FILES:
            shutil.copy2(ROOT / name, copy / name)
        env = {**os.environ, "IGNITIA_SYNC_BUILD_EXTENSION": "yes",
               "CC": "/bin/false", "CXX": "/bin/false", "LDSHARED": "/bin/false"}
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir",
                   "--target", str(pathlib.Path(tmp) / "target"), str(copy)]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode == 0:
        print(f"check_no_compiler: pip installed without a compiler although IGNITIA_SYNC_BUILD_EXTENSION=yes:\n"
              f"{output[-4000:]}")
        return 1
    if "/bin/false" not in output:
        print(f"check_no_compiler: pip failed ({result.returncode}), but not at the compiler:\n{output[-4000:]}")
        return 1
    print(f"check_no_compiler: without a compiler, IGNITIA_SYNC_BUILD_EXTENSION=yes fails the install "
          f"(pip exited {result.returncode}), as it should")
    return 0


if __name__ == "__main__":
    sys.exit(main())
