"""What the test suite needs besides Python packages, installed if missing: run by tox first.

The suite runs real peers: its own ``redis-server`` (the backplane tests), Node's ``ws``
(the client's interop tests; pinned by ``tests/benchmarks/package-lock.json``) and, for
``tox -e browser``, Chromium. On a Debian machine where we are root (CI, a fresh VM),
a missing one is installed with apt; elsewhere this stops with one line saying what to
install. Nothing is faked: without them the tests that need them would fail, not skip.

    python tests/prepare.py            # redis-server, node + npm, npm ci
    python tests/prepare.py --browser  # and chromium
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys

BENCHMARKS = pathlib.Path(__file__).resolve().parent / "benchmarks"


def missing_packages(browser: bool) -> list[str]:
    """The Debian packages whose commands are not on PATH."""
    wanted = {"redis-server": ["redis-server"], "npm": ["nodejs", "npm"]}
    if browser:
        wanted["chromium"] = ["chromium"]
    return [package for command, packages in wanted.items() if shutil.which(command) is None for package in packages]


def install(packages: list[str]) -> None:
    """``apt-get install`` them, or exit with one line that says what to do."""
    can_apt = shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0
    if not can_apt:
        sys.exit(f"tests/prepare.py: the tests need {', '.join(packages)}; install them (Debian: "
                 f"sudo apt-get install -y {' '.join(packages)}) and run again")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", *packages], check=True, env=env, stdout=subprocess.DEVNULL)


def node_modules() -> None:
    """``npm ci`` in tests/benchmarks when its node_modules is missing or older than the lock file."""
    modules, lock = BENCHMARKS / "node_modules", BENCHMARKS / "package-lock.json"
    marker = modules / ".package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCHMARKS, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    """Install what is missing; exit 0 when everything is there."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browser", action="store_true", help="also chromium (tox -e browser)")
    args = parser.parse_args()
    packages = missing_packages(args.browser)
    if packages:
        install(packages)
    node_modules()
    return 0


if __name__ == "__main__":
    sys.exit(main())
