"""Run the Autobahn|Testsuite against our server (wstest fuzzingclient) or our client (fuzzingserver).

    tox -e autobahn                        # every case, in three chunks
    tox -e autobahn-gunicorn               # groups 1-10, the same route under gunicorn
    tox -e autobahn-client                 # every case against our client
    python tests/autobahn/run.py --chunks core
    python tests/autobahn/run.py --cases "5.*" "7.1.*"
    python tests/autobahn/run.py --host gunicorn --chunks core
    python tests/autobahn/run.py --mode client --cases "9.*"

``--mode client`` starts ``wstest -m fuzzingserver`` on a free port of 127.0.0.1 and runs the
client agent examples/autobahn_client.py (our ``ignitia_sync.client.connect``) against it:
every case in one run (the fuzzing server writes its report when the agent asks for it).
Its gate is stricter: NON-STRICT fails too, and every closing behaviour must be OK. The
whole run is bounded by ``--timeout``; the fuzzing server and the agent are killed at the end.

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
import re
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
CLIENT_REPORTS = ROOT / "reports" / "autobahn-client"
AGENT = "ignitia_sync"
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
    """Until a plain GET gets an HTTP answer: gunicorn's arbiter listens before its worker serves
    (and wstest's fuzzing server answers a plain GET too)."""
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
    return read_results(outdir)


def read_results(outdir: pathlib.Path) -> dict[str, dict[str, object]]:
    """The agent's verdicts from wstest's ``index.json``, each with its case's description."""
    index = json.loads((outdir / "index.json").read_text())
    results: dict[str, dict[str, object]] = index[AGENT]
    for result in results.values():
        report = outdir / str(result["reportfile"])
        result["description"] = json.loads(report.read_text()).get("description", "") if report.exists() else ""
    return results


def gate(results: dict[str, dict[str, object]], label: str, reports: str, *, strict: bool = False) -> int:
    """Print the counts per verdict and every non-OK case; 1 when a case fails the gate.

    Every run fails on FAILED and UNIMPLEMENTED and on a closing behaviour other than OK or
    INFORMATIONAL. ``strict`` (the client's gate) fails on NON-STRICT too, and takes an
    INFORMATIONAL closing behaviour only where the case itself is INFORMATIONAL: the suite
    sets both verdicts to INFORMATIONAL, whatever happens, in 7.1.6, 7.13.1 and 7.13.2.
    """
    failing = {"FAILED", "UNIMPLEMENTED"} | ({"NON-STRICT"} if strict else set())
    verdicts = collections.Counter(str(r["behavior"]) for r in results.values())
    closes = collections.Counter(str(r["behaviorClose"]) for r in results.values())
    print(f"autobahn: {len(results)} cases {label}; behavior: {dict(sorted(verdicts.items()))}; "
          f"behaviorClose: {dict(sorted(closes.items()))}")
    bad = []
    for case in sorted(results, key=lambda c: [int(p) for p in c.split(".")]):
        result = results[case]
        behavior, close = result["behavior"], result["behaviorClose"]
        if behavior != "OK" or close != "OK":
            line = f"  {case}: {behavior} / close {close}: {result['description']}"
            print(line[:300])
            close_ok = close == "OK" or (close == "INFORMATIONAL" and (not strict or behavior == "INFORMATIONAL"))
            if behavior in failing or not close_ok:
                bad.append(case)
    print(f"autobahn: report in {reports}")
    if not results:
        print("autobahn: no case ran")
        return 1
    if bad:
        print(f"autobahn: {len(bad)} case(s) fail the gate: {', '.join(bad[:20])}")
        return 1
    return 0


def run_client(wstest: pathlib.Path, cases: list[str], timeout: float) -> dict[str, dict[str, object]]:
    """wstest's fuzzing server on a free port, and our client agent against it, within ``timeout``."""
    deadline = time.monotonic() + timeout
    port = free_port()
    outdir = CLIENT_REPORTS
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    spec = {
        "url": f"ws://127.0.0.1:{port}",
        "outdir": str(outdir),
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_file = outdir / "fuzzingserver.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    log = outdir / "fuzzingserver.log"
    agent_log = outdir / "agent.log"
    start = time.monotonic()
    with log.open("wb") as log_file:
        server = subprocess.Popen([str(wstest), "-m", "fuzzingserver", "-s", str(spec_file), "--webport", "0"], cwd=outdir,
                                  stdout=log_file, stderr=subprocess.STDOUT)
    agent: subprocess.Popen[bytes] | None = None
    try:
        wait_until_serving(server, port, log)
        with agent_log.open("wb") as agent_file:
            agent = subprocess.Popen([sys.executable, str(ROOT / "examples" / "autobahn_client.py"),
                                      "--url", f"ws://127.0.0.1:{port}", "--agent", AGENT],
                                     cwd=ROOT, stdout=agent_file, stderr=subprocess.STDOUT)
        try:
            code = agent.wait(max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            raise SystemExit(f"autobahn: the client run passed its {timeout:.0f} s; the agent's log ends:\n"
                             f"{agent_log.read_text()[-4000:]}") from None
        if code != 0:
            raise SystemExit(f"autobahn: the client agent exited with {code}; its log:\n{agent_log.read_text()[-4000:]}")
        if server.poll() is not None:
            raise SystemExit(f"autobahn: the fuzzing server exited ({server.returncode}) during the run; its log:\n"
                             f"{log.read_text()[-4000:]}")
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        stop(server)
    print(f"autobahn: the client agent ran {', '.join(cases)} in {time.monotonic() - start:.0f} s", flush=True)
    results = read_results(outdir)
    announced = re.search(r"running (\d+)", agent_log.read_text())
    if announced is None or len(results) < int(announced.group(1)):
        raise SystemExit(f"autobahn: the agent announced {announced and announced.group(1)} cases, "
                         f"the reports hold {len(results)}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="server", choices=["server", "client"],
                        help="test our server (wstest fuzzingclient) or our client (wstest fuzzingserver)")
    parser.add_argument("--chunks", nargs="*", default=list(CHUNKS), choices=list(CHUNKS))
    parser.add_argument("--cases", nargs="*", help="run just these case patterns (one chunk)")
    parser.add_argument("--host", default="standalone", choices=list(HOSTS),
                        help="the example's own server, or its WSGI app under gunicorn's gevent worker")
    parser.add_argument("--timeout", type=float, default=3000,
                        help="seconds for the whole client run (--mode client)")
    args = parser.parse_args()
    wstest = ensure_wstest()
    if args.mode == "client":
        results = run_client(wstest, args.cases or ["*"], args.timeout)
        return gate(results, "against our client", f"{CLIENT_REPORTS}/index.html", strict=True)
    plan = {"selected": args.cases} if args.cases else {name: CHUNKS[name] for name in args.chunks}
    results = {}
    for name, cases in plan.items():
        results.update(run_chunk(wstest, args.host, name, cases, TIMEOUTS.get(name, 2400)))
    return gate(results, f"under {args.host}", f"{HOSTS[args.host]}/*/index.html")


if __name__ == "__main__":
    sys.exit(main())
