"""ignitia_sync.metrics on the standalone server: /metrics scraped over HTTP after a known workload.

The families are process-wide and cumulative (every host of the test process adds to them),
so each test scrapes before and after its workload and checks the difference, exactly.
"""

from __future__ import annotations

import gevent
import gevent.monkey
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ignitia_sync import ConnectionClosed, Message, Router, WebSocketConnection
from ignitia_sync.metrics import METRICS
from ignitia_sync.middleware import OriginCheck
from tests.apps import echo
from tests.conftest import url
from tests.metrics_scrape import figures, scrape, scraped
from tests.subprocess_server import python
from tests.waiting import wait_for
from tests.wire import Peer

_real_sleep = gevent.monkey.get_original("time", "sleep")


def flood(ws: WebSocketConnection) -> None:
    """Queue far more than the peer reads: past outbox_limit, the server closes it with 1008."""
    chunk = Message.binary(bytes(64 * 1024))
    try:
        for _ in range(4096):
            ws.send_nowait(chunk)
    except ConnectionClosed:
        pass


def room(ws: WebSocketConnection) -> None:
    """Every message goes to every connection of the route (the sender included)."""
    for message in ws:
        if isinstance(message, Message.Text):
            ws.registry.broadcast(message)


def workload_router() -> Router:
    router = Router().websocket("/echo", echo)
    router.websocket("/flood", flood)
    router.websocket("/room", room)
    router.websocket("/guarded", echo, middleware=[OriginCheck(["https://example.com"])])
    return router


def test_a_known_workload_is_counted_exactly(serve):
    # close_timeout: the flooded peer never answers the 1008, so the server's close timer ends it
    server = serve(workload_router(), metrics=True, outbox_limit=256 * 1024, close_timeout=0.5)
    before = scraped(server.address)
    stats_before = server.stats()

    for _ in range(3):  # 3 connections, 2 messages each way, closed by the client (1000)
        with connect(url(server, "/echo")) as ws:
            for text in ("one", "two"):
                ws.send(text)
                assert ws.recv(timeout=5) == text
    with pytest.raises(InvalidStatus) as refused:  # OriginCheck: 403
        connect(url(server, "/echo").replace("/echo", "/guarded"), origin="https://evil.example")
    assert refused.value.response.status_code == 403

    slow = Peer(server.address)  # never reads: closed with 1008 "slow consumer" (after close_timeout)
    slow.upgrade("/flood")
    wait_for(lambda: server.stats()["slow_consumers"] == stats_before["slow_consumers"] + 1, "the slow consumer cut")
    slow.sock.close()
    with connect(url(server, "/room")) as first, connect(url(server, "/room")) as second:
        wait_for(lambda: len(server.registry) == 2, "both room members registered")
        first.send("to all")  # one broadcast, queued to both
        assert first.recv(timeout=5) == second.recv(timeout=5) == "to all"
        held = scraped(server.address) - before
        assert held.get("ignitia_sync_connections_open", route="/room") == 2
    wait_for(lambda: sum(server.stats()["close_codes"].values()) == 3 + 1 + 2, "every connection accounted for")

    after = scraped(server.address)
    change = after - before
    stats_after = server.stats()
    assert change.get("ignitia_sync_connections_opened_total", route="/echo") == 3
    assert change.get("ignitia_sync_connections_closed_total", route="/echo", code="1000") == 3
    assert change.get("ignitia_sync_connections_open", route="/echo") == 0
    assert change.get("ignitia_sync_connections_opened_total", route="/flood") == 1
    assert change.get("ignitia_sync_connections_closed_total", route="/flood", code="1008") == 1
    assert change.get("ignitia_sync_slow_consumer_closes_total") == 1
    assert change.get("ignitia_sync_connections_opened_total", route="/room") == 2
    assert change.get("ignitia_sync_connections_opened_total", route="/guarded") == 0
    assert change.get("ignitia_sync_handshakes_refused_total", status="403") == 1
    # what ws.messages_in counts: the data messages and the Close (each echo client sends 2 and a
    # Close, the room member that broadcasts 1 and a Close, the other one a Close)
    assert change.get("ignitia_sync_messages_received_total") == 3 * 3 + 2 + 1
    assert change.get("ignitia_sync_messages_received_total") == stats_after["messages_in"] - stats_before["messages_in"]
    assert change.get("ignitia_sync_messages_sent_total") == stats_after["messages_out"] - stats_before["messages_out"]
    assert change.get("ignitia_sync_messages_sent_total") >= 3 * 2 + 2  # the echoes, the broadcast's two, the flood's
    assert change.get("ignitia_sync_broadcasts_total") == 1
    assert change.get("ignitia_sync_broadcast_deliveries_total") == 2
    for name, key in (("ignitia_sync_received_bytes_total", "bytes_in"), ("ignitia_sync_sent_bytes_total", "bytes_out")):
        assert change.get(name) == stats_after[key] - stats_before[key] > 0
    assert change.get("ignitia_sync_handler_duration_seconds_count", route="/echo") == 3
    assert change.get("ignitia_sync_handler_duration_seconds_bucket", route="/echo", le="+Inf") == 3
    assert after.get("ignitia_sync_outbox_bytes") == 0
    assert {name.removesuffix("_total") for name in METRICS if not name.startswith("ignitia_sync_backplane")} <= {
        name.removesuffix("_total").removesuffix("_count").removesuffix("_sum").removesuffix("_bucket")
        .removesuffix("_created") for name in after.names()}


def test_a_scrape_changes_nothing_by_itself(serve):
    server = serve(Router().websocket("/echo", echo), metrics=True)
    with connect(url(server, "/echo")) as ws:
        ws.send("x")
        ws.recv(timeout=5)
    # accounted for (its close code counted), not only out of the registry: until then a scrape may
    # see its figures neither live nor in the totals, for a moment
    wait_for(lambda: server.stats()["close_codes"] == {1000: 1}, "the closed connection accounted for")
    first = scraped(server.address)
    second = scraped(server.address) - first
    assert second.get("ignitia_sync_connections_opened_total", route="/echo") == 0
    assert second.get("ignitia_sync_messages_received_total") == 0


def test_metrics_are_refused_to_an_address_outside_the_allowed_networks(serve):
    server = serve(Router().websocket("/echo", echo), metrics="/internal/metrics", metrics_allow=("127.0.0.1",))
    assert scrape(server.address, "/internal/metrics", source="127.0.0.2") == (
        403, "metrics are not served to this address\n")
    status, text = scrape(server.address, "/internal/metrics", source="127.0.0.1")
    assert status == 200 and "ignitia_sync_connections_open" in text
    assert scrape(server.address, "/metrics")[0] == 404  # only the path asked for
    with connect(url(server, "/echo")) as ws:  # the WebSocket routes are as they were
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


def test_the_default_allows_loopback_only(serve):
    server = serve(Router().websocket("/echo", echo), metrics=True)
    assert scrape(server.address, source="127.0.0.2")[0] == 200  # 127.0.0.0/8 is loopback
    assert server.settings.metrics_allow == ("127.0.0.0/8", "::1/128")


def test_without_metrics_there_is_no_metrics_path(serve):
    server = serve(Router().websocket("/echo", echo))
    status, _ = scrape(server.address)
    assert status == 404


def test_a_blocked_hub_is_counted_with_its_duration(serve):
    def blocks(ws: WebSocketConnection) -> None:
        ws.recv(timeout=5)
        _real_sleep(0.6)  # the workload: an unpatched sleep that holds the hub (what the watch measures)
        ws.send("done")

    server = serve(Router().websocket("/block", blocks), metrics=True, blocking_warning=0.2)
    before = scraped(server.address)
    with connect(url(server, "/block")) as ws:
        ws.send("go")
        assert ws.recv(timeout=5) == "done"
    wait_for(lambda: (scraped(server.address) - before).get("ignitia_sync_hub_blocked_seconds_total") > 0,
             "the episode's end counted")
    change = scraped(server.address) - before
    # At least this episode: a loaded CI machine can starve the hub past 0.2 s besides (one run
    # counted 2), so neither the count nor the seconds have an upper bound here.
    assert change.get("ignitia_sync_hub_blocked_total") >= 1
    assert change.get("ignitia_sync_hub_blocked_seconds_total") > 0.2


def test_a_bad_metrics_setting_is_refused_at_once():
    from ignitia_sync import Server

    with pytest.raises(ValueError, match="must be True or a path"):
        Server(Router(), metrics="metrics")
    with pytest.raises(ValueError):
        Server(Router(), metrics=True, metrics_allow=("127.0.0.300",))
    with pytest.raises(TypeError):
        Server(Router(), metrics=True, metrics_allow="127.0.0.1")


def test_without_the_extra_enabling_metrics_says_what_to_install_in_one_line():
    result = python("from ignitia_sync import Router, Server\nServer(Router(), metrics=True)\n",
                    hide=("prometheus_client",))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: ignitia_sync.metrics needs prometheus_client: pip install 'ignitia_sync[metrics]'")


def test_the_scraped_text_parses_and_names_every_family_once(serve):
    server = serve(Router().websocket("/echo", echo), metrics=True)
    status, text = scrape(server.address)
    assert status == 200
    figures(text)  # parses
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ignitia_sync_")]
    assert len(helps) == len(set(helps))


def test_metrics_next_to_a_wsgi_app_leave_its_other_paths_to_it(serve):
    def page(environ, start_response):
        body = f"page {environ['PATH_INFO']}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    server = serve(Router().websocket("/echo", echo), wsgi_app=page, metrics=True)
    assert scrape(server.address, "/other") == (200, "page /other")
    status, text = scrape(server.address)
    assert status == 200 and "# TYPE ignitia_sync_connections_opened_total counter" in text
    assert scrape(server.address, source="127.0.0.2")[0] == 200


def test_the_command_serves_metrics_with_the_metrics_option():
    from tests.subprocess_server import free_port, host_command, running

    port = free_port()
    with running([*host_command("ignitia-sync", "tests.scripts.cli_targets:app", port), "--metrics"], port) as process:
        with connect(f"ws://127.0.0.1:{port}/room/lobby", open_timeout=10):
            pass
        wait_for(lambda: scraped(("127.0.0.1", port)).get("ignitia_sync_connections_opened_total",
                                                          route="/room/:name") == 1, "the connection counted")
        assert process.poll() is None


def test_the_command_says_in_one_line_that_metrics_need_their_extra():
    result = python("from ignitia_sync.__main__ import main\n"
                    "sys.exit(main(['tests.scripts.cli_targets:app', '--port', '0', '--metrics']))\n",
                    hide=("prometheus_client",))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ignitia-sync: ignitia_sync.metrics needs prometheus_client: pip install 'ignitia_sync[metrics]'"]
