"""A server run as its users run it: its own process on a free port, checked on the way out."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python(
    code: str, *, hide: tuple[str, ...] = (), cwd: str = ROOT, drop_env: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the packages ``hide`` cannot be imported.

    ``sys.modules[name] = None`` makes Python's import raise ``ModuleNotFoundError`` for it, as
    if it were not installed: how a missing extra is shown without uninstalling anything.
    ``drop_env``: prefixes of environment variables the interpreter does not inherit.
    """
    prelude = f"import sys\nfor name in {hide!r}:\n    sys.modules[name] = None\n"
    env = {name: value for name, value in os.environ.items() if not name.startswith(drop_env)}
    env["PYTHONPATH"] = ROOT
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def host_command(host: str, target: str, port: int, workers: int = 1) -> list[str]:
    """How ``target`` (``MODULE:ATTR``) is served by ``host``: ``ignitia-sync``, ``gunicorn`` or ``werkzeug``."""
    if host == "ignitia-sync":
        return [sys.executable, "-m", "ignitia_sync", target, "--port", str(port)]
    if host == "werkzeug":  # what `flask run` serves with: threaded, not monkey-patched
        return [sys.executable, "-m", "flask", "--app", target, "run", "--host", "127.0.0.1", "--port", str(port)]
    from gunicorn.config import KNOWN_SETTINGS

    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
    # gunicorn 25.1+ opens one control socket per user: two test servers at once (tox -p)
    # would collide on it and log an [ERROR].
    private = ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []
    return [gunicorn, "-k", "ignitia_sync.gunicorn.Worker", "-w", str(workers), "-b", f"127.0.0.1:{port}",
            "--graceful-timeout", "10", *private, target]


@contextlib.contextmanager
def running(
    command: list[str], port: int, env: dict[str, str] | None = None, *, output: list[str] | None = None,
    allow_500: bool = False, allow_traceback: bool = False,
) -> Iterator[subprocess.Popen[str]]:
    """Start ``command``, wait until ``port`` accepts, stop it at the end (SIGTERM).

    Its output must hold no traceback (unless ``allow_traceback``: the test makes a handler
    raise), no HTTP 500 (unless ``allow_500``) and no gunicorn ``[ERROR]`` line; it is
    appended to ``output`` when given.
    """
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    process = subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError("the server did not start:\n" + process.communicate()[0]) from None
            time.sleep(0.1)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        text = process.communicate(timeout=20)[0]
        if output is not None:
            output.append(text)
        assert allow_traceback or "Traceback" not in text, text
        assert (allow_500 or " 500 " not in text) and "[ERROR]" not in text, text
