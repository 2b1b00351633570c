"""gunicorn stopped while ``ignitia_sync.gunicorn.Worker``\\ s are still booting: they exit at once.

The arbiter forwards SIGTERM (a stop) or SIGQUIT (SIGINT/SIGQUIT: the quick stop) to every
worker it has forked, booted or not. Two moments of a worker's boot are held open here:

* ``fork``: ``tests/scripts/boot_gate_conf.py``'s ``post_fork`` holds each worker before its
  own signal handlers exist, until the signal has reached the handler it inherited from the
  arbiter (which only queues it for the arbiter's loop, in this process nobody's);
* ``import``: ``tests/scripts/boot_gate_app.py`` holds each worker in the app's import, its
  handlers in place, until the test opens the gate.

Either way the arbiter must exit long before ``--graceful-timeout`` (30 s: after it, the
arbiter SIGKILLs the workers and logs an [ERROR]), each worker on its own, with no traceback.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess

import pytest

from tests.subprocess_server import free_port, host_command, running
from tests.waiting import wait_for

TARGET = "tests.scripts.boot_gate_app:app"
GRACEFUL = 30
#: Far below GRACEFUL: an arbiter still alive then is waiting for a worker that never got the signal.
EXITED = 15
WORKERS = 2


def gunicorn(port: int, *options: str) -> list[str]:
    command = host_command("gunicorn", TARGET, port, workers=WORKERS)
    return [*command[:-1], "--graceful-timeout", str(GRACEFUL), *options, command[-1]]


@pytest.mark.parametrize("held_at", ["fork", "import"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT], ids=lambda sig: sig.name)
def test_a_signal_to_the_arbiter_while_its_workers_boot_stops_them_at_once(tmp_path, sig, held_at):
    port = free_port()
    gate = str(tmp_path)
    options = ["-c", "tests/scripts/boot_gate_conf.py"] if held_at == "fork" else []
    env = {"IGNITIA_TEST_BOOT_GATE": gate, "IGNITIA_TEST_HOLD_AT": held_at}
    stage = "forked" if held_at == "fork" else "importing"
    output: list[str] = []
    with running(gunicorn(port, *options), port, env=env, output=output) as process:
        wait_for(lambda: len(glob.glob(os.path.join(gate, f"{stage}.*"))) == WORKERS,
                 f"{WORKERS} workers held in their boot ({held_at})", timeout=30)
        workers = sorted(int(path.rsplit(".", 1)[1]) for path in glob.glob(os.path.join(gate, f"{stage}.*")))
        process.send_signal(sig)
        if held_at == "import":  # the workers' handlers are in place: let the import end
            with open(os.path.join(gate, "open"), "w"):
                pass
        try:
            process.wait(timeout=EXITED)
        except subprocess.TimeoutExpired:
            pytest.fail(f"gunicorn still runs {EXITED} s after {sig.name}: a booting worker missed it")
    for pid in workers:
        assert f"Worker exiting (pid: {pid})" in output[0], output[0]
