"""An Autobahn|Testsuite client agent: our client against ``wstest -m fuzzingserver``.

It asks the fuzzing server how many cases it has (``/getCaseCount``), runs each one
(``/runCase?case=N&agent=...``: every text and binary message echoed back until the
server closes), then asks it to write its reports (``/updateReports``).

The settings mirror the server agent's (examples/autobahn.py): compression on and a
32 MiB message limit, for the 16 MiB messages of group 9. Keepalive pings are off: the
suite is the one that tests pings, and ours would only add frames to its wire logs.

Run: python examples/autobahn_client.py [--url ws://127.0.0.1:9001] [--agent NAME] [--cases 1 2 ...]
(``tests/autobahn/run.py --mode client`` starts the fuzzing server and runs this.)
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.parse

from ignitia_sync import Message
from ignitia_sync.client import ClientConnection, connect
from ignitia_sync.exceptions import ConnectionClosed

MAX_MESSAGE_SIZE = 32 * 1024 * 1024
AGENT = "ignitia_sync"


def open_ws(url: str) -> ClientConnection:
    return connect(url, compression="deflate", max_message_size=MAX_MESSAGE_SIZE, ping_interval=None,
                   open_timeout=30)


def case_count(base: str) -> int:
    with open_ws(f"{base}/getCaseCount") as ws:
        message = ws.recv(timeout=30)
    if not isinstance(message, Message.Text):
        raise SystemExit(f"autobahn client: no case count from {base} (got {message!r})")
    return int(message.data)


def run_case(base: str, case: int, agent: str) -> None:
    """Echo every data message of one case until the fuzzing server closes."""
    with open_ws(f"{base}/runCase?case={case}&agent={urllib.parse.quote(agent)}") as ws:
        for message in ws:
            if isinstance(message, (Message.Text, Message.Binary)):
                try:
                    ws.send(message)
                except ConnectionClosed:
                    break  # the server closed (or the connection failed) while we answered


def update_reports(base: str, agent: str) -> None:
    with open_ws(f"{base}/updateReports?agent={urllib.parse.quote(agent)}") as ws:
        for _message in ws:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:9001", help="the fuzzing server")
    parser.add_argument("--agent", default=AGENT, help="the agent name in the reports")
    parser.add_argument("--cases", nargs="*", type=int, help="case numbers (default: every case)")
    args = parser.parse_args()
    base = args.url.rstrip("/")
    count = case_count(base)
    cases = args.cases or range(1, count + 1)
    print(f"autobahn client: {count} cases on the fuzzing server; running {len(cases)}", flush=True)
    start = time.monotonic()
    errors = 0
    for done, case in enumerate(cases, 1):
        try:
            run_case(base, case, args.agent)
        except Exception as exc:  # the report says what went wrong; the run goes on
            errors += 1
            print(f"autobahn client: case {case}: {type(exc).__name__}: {exc}", flush=True)
        if done % 50 == 0:
            print(f"autobahn client: {done}/{len(cases)} cases in {time.monotonic() - start:.0f} s", flush=True)
    update_reports(base, args.agent)
    print(f"autobahn client: {len(cases)} cases in {time.monotonic() - start:.0f} s; reports updated", flush=True)
    return 1 if errors else 0  # every case must run to its end (the gate then reads the verdicts)


if __name__ == "__main__":
    sys.exit(main())
