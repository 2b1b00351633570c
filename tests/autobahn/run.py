"""Run the Autobahn|Testsuite (wstest fuzzingclient) against examples/autobahn.py.

    tox -e autobahn                        # every case, in three chunks
    tox -e autobahn-gunicorn               # groups 1-10, the same route under gunicorn
    python tests/autobahn/run.py --chunks core
    python tests/autobahn/run.py --cases "5.*" "7.1.*"
    python tests/autobahn/run.py --host gunicorn --chunks core

``--host standalone`` (the default) runs the example's own server; ``--host gunicorn``
serves the same route (``examples.autobahn:wsgi_app``, WebSocketMiddleware) with
``gunicorn -k ignitia_sync.gunicorn.Worker -w 1``, so that taking the socket over from
gunicorn is tested case by case too.

wstest is Python 2.7 code: it is installed once into a virtualenv (``.autobahn/venv``) made
with CPython 2.7 and pinned by ``constraints-py27.txt``; later runs reuse it. The run fails
on any FAILED or UNIMPLEMENTED case and on any case whose closing behaviour is not OK. The
HTML report stays in ``reports/autobahn/`` (``reports/autobahn-gunicorn/`` under gunicorn;
git-ignored), beside the server's log.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
HERE = pathlib.Path(__file__).resolve().parent
CONSTRAINTS = HERE / "constraints-py27.txt"
STATE = ROOT / ".autobahn"
HOSTS = {"standalone": ROOT / "reports" / "autobahn", "gunicorn": ROOT / "reports" / "autobahn-gunicorn"}
CHUNKS = {
    # wstest writes its report only when a whole run ends, so the suite runs in chunks.
    "core": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"],
    "compression-12": ["12.*"],
    "compression-13": ["13.*"],
}
TIMEOUTS = {"core": 900, "compression-12": 2400, "compression-13": 2400}


def python27() -> str:
    candidates = [os.environ.get("PYTHON27", ""),
                  str(pathlib.Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions/2.7.18/bin/python"),
                  shutil.which("python2.7") or ""]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (2, 7)"],
                                        capture_output=True).returncode == 0:
            return candidate
    raise SystemExit("autobahn: CPython 2.7 is needed for wstest (set PYTHON27=/path/to/python2.7)")


def ensure_wstest() -> pathlib.Path:
    """Install wstest into a Python 2.7 virtualenv once; skip when the pins are unchanged."""
    venv = STATE / "venv"
    wstest = venv / "bin" / "wstest"
    stamp = STATE / "installed.sha256"
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    if wstest.exists() and stamp.exists() and stamp.read_text() == digest:
        return wstest
    print("autobahn: installing wstest (Python 2.7) into", venv, flush=True)
    shutil.rmtree(STATE, ignore_errors=True)
    tool = STATE / "virtualenv"
    py27 = python27()
    subprocess.run([py27, "-m", "pip", "install", "-q", "--target", str(tool), "virtualenv==20.15.1"], check=True)
    subprocess.run([py27, "-m", "virtualenv", "-q", str(venv)], check=True, env={**os.environ, "PYTHONPATH": str(tool)})
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(CONSTRAINTS), "autobahntestsuite"], check=True)
    stamp.write_text(digest)
    return wstest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(host: str, port: int) -> list[str]:
    """How the echo route of examples/autobahn.py is served by ``host``."""
    if host == "gunicorn":
        from gunicorn.config import KNOWN_SETTINGS

        # gunicorn 25.1+ opens a control socket shared by every gunicorn of the user
        # (~/.gunicorn/gunicorn.ctl); a test server needs none.
        private = ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []
        return [sys.executable, "-m", "gunicorn", "-k", "ignitia_sync.gunicorn.Worker", "-w", "1",
                "--bind", f"127.0.0.1:{port}", "--chdir", str(ROOT), "--graceful-timeout", "10", *private,
                "examples.autobahn:wsgi_app"]
    return [sys.executable, str(ROOT / "examples" / "autobahn.py"), "--port", str(port)]


def wait_until_serving(server: subprocess.Popen[bytes], port: int, log: pathlib.Path, timeout: float = 30) -> None:
    """Until a plain GET gets an HTTP answer: gunicorn's arbiter listens before its worker serves."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
                probe.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if probe.recv(16).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"autobahn: the server did not start; its log:\n{log.read_text()}")
        time.sleep(0.1)


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL if it is still there after 30 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        print("autobahn: the server ignored SIGTERM for 30 s; killed", flush=True)
        server.kill()
        server.wait()


def run_chunk(wstest: pathlib.Path, host: str, name: str, cases: list[str], timeout: float) -> dict[str, dict[str, object]]:
    port = free_port()
    outdir = HOSTS[host] / name
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": "ignitia_sync", "url": f"ws://127.0.0.1:{port}"}],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_file = outdir / "fuzzingclient.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    log = outdir / "server.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(server_command(host, port), cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    start = time.monotonic()
    try:
        wait_until_serving(server, port, log)
        subprocess.run([str(wstest), "-m", "fuzzingclient", "-s", str(spec_file)], cwd=outdir, check=True,
                       timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if server.poll() is not None:
            raise SystemExit(f"autobahn: the server exited ({server.returncode}) during the run; its log:\n"
                             f"{log.read_text()}")
    finally:
        stop(server)
    print(f"autobahn: {name} ({', '.join(cases)}) under {host} took {time.monotonic() - start:.0f} s", flush=True)
    index = json.loads((outdir / "index.json").read_text())
    results: dict[str, dict[str, object]] = index["ignitia_sync"]
    for result in results.values():
        report = outdir / str(result["reportfile"])
        result["description"] = json.loads(report.read_text()).get("description", "") if report.exists() else ""
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", nargs="*", default=list(CHUNKS), choices=list(CHUNKS))
    parser.add_argument("--cases", nargs="*", help="run just these case patterns (one chunk)")
    parser.add_argument("--host", default="standalone", choices=list(HOSTS),
                        help="the example's own server, or its WSGI app under gunicorn's gevent worker")
    args = parser.parse_args()
    wstest = ensure_wstest()
    plan = {"selected": args.cases} if args.cases else {name: CHUNKS[name] for name in args.chunks}
    results: dict[str, dict[str, object]] = {}
    for name, cases in plan.items():
        results.update(run_chunk(wstest, args.host, name, cases, TIMEOUTS.get(name, 2400)))
    verdicts = collections.Counter(str(r["behavior"]) for r in results.values())
    closes = collections.Counter(str(r["behaviorClose"]) for r in results.values())
    print(f"autobahn: {len(results)} cases under {args.host}; behavior: {dict(sorted(verdicts.items()))}; "
          f"behaviorClose: {dict(sorted(closes.items()))}")
    bad = []
    for case in sorted(results, key=lambda c: [int(p) for p in c.split(".")]):
        result = results[case]
        if result["behavior"] != "OK" or result["behaviorClose"] not in ("OK", "INFORMATIONAL"):
            line = f"  {case}: {result['behavior']} / close {result['behaviorClose']}: {result['description']}"
            print(line[:300])
            if result["behavior"] in ("FAILED", "UNIMPLEMENTED") or result["behaviorClose"] not in ("OK", "INFORMATIONAL"):
                bad.append(case)
    print(f"autobahn: report in {HOSTS[args.host]}/*/index.html")
    if bad:
        print(f"autobahn: {len(bad)} case(s) fail the gate: {', '.join(bad[:20])}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
