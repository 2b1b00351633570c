"""ignitia_sync.metrics under gunicorn -w 2 -k ignitia_sync.gunicorn.Worker in prometheus_client's
multiprocess mode: a scrape of either worker reports the figures of both.

The workload is spread over both workers (connections are opened until each worker has served
some: the route says its process id), and every scrape must show the totals of all of them.
"""

from __future__ import annotations

import contextlib
import os
import signal

from websockets.sync.client import connect

from tests.metrics_scrape import scraped
from tests.subprocess_server import free_port, host_command, running
from tests.waiting import wait_for


def test_a_scrape_of_any_worker_reports_both_workers(tmp_path):
    port = free_port()
    command = host_command("gunicorn", "tests.scripts.metrics_app:app", port, workers=2)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with running(command, port, env=env), contextlib.ExitStack() as stack:
        address = ("127.0.0.1", port)
        held = {}  # one open connection per worker
        opened = 0

        def one_more_worker_seen() -> bool:
            nonlocal opened
            ws = stack.enter_context(connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10))
            opened += 1
            pid = ws.recv(timeout=10)
            ws.send("hi")
            assert ws.recv(timeout=10) == "hi"
            if pid in held:
                ws.close()
            else:
                held[pid] = ws
            return len(held) == 2

        wait_for(one_more_worker_seen, "a connection served by each of the two workers", timeout=30)

        def totals_are(open_now: int, closed: int) -> bool:
            figures = scraped(address)
            return (
                figures.get("ignitia_sync_connections_opened_total", route="/echo") == opened
                and figures.get("ignitia_sync_connections_open", route="/echo") == open_now
                and figures.get("ignitia_sync_connections_closed_total", route="/echo", code="1000") == closed
            )

        wait_for(lambda: totals_are(open_now=2, closed=opened - 2), "both workers' figures while two are open")
        for ws in held.values():
            ws.close()
        wait_for(lambda: totals_are(open_now=0, closed=opened), "both workers' figures once all are closed")
        for _ in range(6):  # whichever worker answers, the same totals
            figures = scraped(address)
            assert figures.get("ignitia_sync_connections_opened_total", route="/echo") == opened
            assert figures.get("ignitia_sync_messages_received_total") == opened * 2  # "hi" and the Close
            assert figures.get("ignitia_sync_messages_sent_total") == opened * 2  # the pid and the echo
            assert figures.get("ignitia_sync_handler_duration_seconds_count", route="/echo") == opened
            assert figures.get("ignitia_sync_connections_open", route="/echo") == 0


def test_a_worker_that_exits_takes_its_live_gauges_with_it(tmp_path):
    port = free_port()
    command = host_command("gunicorn", "tests.scripts.metrics_app:app", port, workers=2)
    with running(command, port, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}) as master:

        def live_gauge_pids() -> set[str]:
            return {name.rsplit("_", 1)[1].removesuffix(".db") for name in os.listdir(tmp_path)
                    if name.startswith("gauge_livesum_")}

        wait_for(lambda: len(live_gauge_pids()) == 2, "both workers' live gauges written")  # by their sync loops
        master.send_signal(signal.SIGTTOU)  # one worker fewer: gunicorn stops one gracefully
        wait_for(lambda: len(live_gauge_pids()) == 1, "the stopped worker's live gauges removed")
        figures = scraped(("127.0.0.1", port))
        assert figures.get("ignitia_sync_connections_open", route="/echo") == 0
