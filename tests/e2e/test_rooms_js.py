"""ignitia-rooms.js (ignitia_sync/static/) in Debian's Chromium, against ``ignitia-sync tests.scripts.rooms_js_app:app``.

The page loads the file from ``javascript_app``; each test builds the client in it with
``page.evaluate`` and reads what its callbacks recorded (``window.events``) and showed (the
``#log`` list), waiting on those with Playwright's waits. The server is acted on through its
``/control`` route (tests/scripts/rooms_js_app.py): broadcasts, a close of the page's connection
(1012, 1008) with messages broadcast while the page is away, a gate that holds a reconnected
page before it joins. The backoff's waits are drawn in the page without waiting, and the frame
rules a server cannot easily show (gap, 1000 rooms) are played on a fake WebSocket. Marker
``browser``: ``tox -e browser`` (a missing Chromium fails).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from ignitia_sync._support.backoff import Backoff
from tests.subprocess_server import free_port, host_command, running

pytestmark = pytest.mark.browser

TARGET = "tests.scripts.rooms_js_app:app"
WAIT = 20_000  # ms: a reconnect waits a random backoff first
FAST = {"first": 0.2, "cap": 0.5}  # the tests' backoff: the defaults' shape, shorter waits

SETUP = """([url, options]) => {
  window.events = [];
  const log = document.getElementById("log");
  const record = (...event) => window.events.push(event);
  const shown = (data) => typeof data === "string" ? data : "bytes:" + Array.from(data).join(",");
  window.rooms = new IgnitiaRooms(url, Object.assign({}, options, {
    storage: {session: window.sessionStorage, fake: window.fakeStorage}[options.storage] || null,
    onMessage(room, data, position) {
      record("message", room, shown(data), position);
      const item = document.createElement("li");
      item.textContent = `${room} ${position.epoch}:${position.offset} ${shown(data)}`;
      log.append(item);
    },
    onDirect(data) { record("direct", shown(data)); },
    onJoined(room, recovery) { record("joined", room, recovery); },
    onGap(room, recovery) { record("gap", room, recovery); },
    onLeft(room) { record("left", room); },
    onStatus(status, detail) { record("status", status, detail); },
  }));
}"""


class RoomsServer:
    """The test app in its own process; stop (SIGTERM: every page gets 1001) and start it again, same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        self._stack: contextlib.ExitStack | None = None

    def start(self) -> RoomsServer:
        stack = contextlib.ExitStack()
        stack.enter_context(running(host_command("ignitia-sync", TARGET, self.port), self.port))
        self._stack = stack
        return self

    def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()

    def control(self, **command: Any) -> dict[str, Any]:
        with connect(f"{self.ws}/control", open_timeout=10) as ws:
            return self.command(ws, **command)

    @staticmethod
    def command(ws: ClientConnection, **command: Any) -> dict[str, Any]:
        ws.send(json.dumps(command))
        answer: dict[str, Any] = json.loads(ws.recv(timeout=20))
        return answer


@pytest.fixture
def server() -> Iterator[RoomsServer]:
    server = RoomsServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[RoomsServer], Any]]:
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(server: RoomsServer) -> Any:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.http}/")
        return page

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()
    assert errors == [], errors


def start_client(page: Any, path: str = "/rooms/lobby", **options: Any) -> None:
    page.evaluate(SETUP, [path, {"backoff": FAST, **options}])


def events(page: Any, kind: str) -> list[list[Any]]:
    return [event[1:] for event in page.evaluate("() => window.events") if event[0] == kind]


def wait_for_count(page: Any, kind: str, count: int) -> list[list[Any]]:
    page.wait_for_function("([kind, count]) => window.events.filter(e => e[0] === kind).length >= count",
                           arg=[kind, count], timeout=WAIT)
    return events(page, kind)


def messages(page: Any) -> list[tuple[str, int, str]]:
    """(text, offset, epoch) of every room message the page got, in order."""
    return [(text, position["offset"], position["epoch"]) for _, text, position in events(page, "message")]


def test_messages_arrive_in_order_with_positions_and_both_ways_in_envelopes(server, open_page):
    page = open_page(server)
    start_client(page)
    [(room, recovery)] = wait_for_count(page, "joined", 1)
    assert room == "lobby" and recovery["complete"] is True and recovery["replayed"] == 0
    assert recovery["position"]["offset"] == 0
    epoch = recovery["position"]["epoch"]
    server.control(op="broadcast", room="lobby", texts=["one", "two", "three"], binary=[[0, 255, 7]])
    wait_for_count(page, "message", 4)
    assert messages(page) == [("one", 1, epoch), ("two", 2, epoch), ("three", 3, epoch), ("bytes:0,255,7", 4, epoch)]
    assert page.locator("#log li").all_text_contents() == [
        f"lobby {epoch}:1 one", f"lobby {epoch}:2 two", f"lobby {epoch}:3 three", f"lobby {epoch}:4 bytes:0,255,7"]
    # What the page sends: in the message envelope (the handler broadcasts it), binary as base64.
    assert page.evaluate("() => [rooms.send('from the page'), rooms.sendBinary(new Uint8Array([1, 2, 250]))]") == [
        True, True]
    wait_for_count(page, "message", 6)
    assert messages(page)[4:] == [("from the page", 5, epoch), ("bytes:1,2,250", 6, epoch)]
    page.evaluate("() => rooms.send('direct:hi')")  # answered to this client alone: no room, no position
    assert wait_for_count(page, "direct", 1) == [["you said hi"]]
    assert page.evaluate("() => rooms.lastPositions()") == {"lobby": {"epoch": epoch, "offset": 6}}
    page.evaluate("() => rooms.close()")
    assert events(page, "status")[-1] == ["closed", {"code": 1000, "reason": "", "final": True}]
    assert page.evaluate("() => rooms.send('after close')") is False


def test_a_dropped_page_reconnects_by_itself_and_gets_what_it_missed_once_in_order(server, open_page):
    page = open_page(server)
    start_client(page)
    epoch = wait_for_count(page, "joined", 1)[0][1]["position"]["epoch"]
    server.control(op="broadcast", texts=["m1", "m2", "m3"])
    wait_for_count(page, "message", 3)
    with connect(f"{server.ws}/control", open_timeout=10) as control:
        # The server closes the page's connection (1012: service restart) and holds it before
        # its next join; m4..m8 are broadcast once its handler is gone: while the page is away.
        kicked = server.command(control, op="kick", code=1012, reason="restart", hold=True,
                                texts=[f"m{n}" for n in range(4, 9)])
        assert kicked["position"]["offset"] == 8
        page.wait_for_function("() => rooms.connections === 2", timeout=WAIT)  # back, by itself
        server.command(control, op="broadcast", texts=["m9"])  # reconnected, not joined yet: replayed too
        server.command(control, op="gate", open=True)
        joined = wait_for_count(page, "joined", 2)[1]
        assert joined == ["lobby", {"complete": True, "reason": None, "replayed": 6,
                                    "position": {"epoch": epoch, "offset": 9}}]
        server.command(control, op="broadcast", texts=["m10", "m11"])  # live again
    wait_for_count(page, "message", 11)
    assert messages(page) == [(f"m{n}", n, epoch) for n in range(1, 12)]  # every one, once, in order
    assert page.locator("#log li").all_text_contents() == [f"lobby {epoch}:{n} m{n}" for n in range(1, 12)]
    reconnecting = [detail for status, detail in events(page, "status") if status == "reconnecting"]
    assert len(reconnecting) == 1 and (reconnecting[0]["code"], reconnecting[0]["reason"]) == (1012, "restart")
    assert 0 <= reconnecting[0]["delay"] <= FAST["first"]  # the first wait of the backoff
    assert page.evaluate("() => rooms.status") == "open"


@pytest.mark.parametrize(("code", "reason"), [(1008, "revoked"), (4003, "forbidden"), (1003, "no bytes")])
def test_a_policy_close_stops_the_client_instead_of_hammering(server, open_page, code, reason):
    page = open_page(server)
    start_client(page)
    wait_for_count(page, "joined", 1)
    server.control(op="kick", code=code, reason=reason)
    page.wait_for_function("() => rooms.status === 'closed'", timeout=WAIT)
    assert events(page, "status")[-1] == ["closed", {"code": code, "reason": reason, "wasClean": True,
                                                      "final": True}]
    assert page.evaluate("() => rooms._timer") is None  # no attempt planned


@pytest.mark.parametrize(("code", "reason"), [(1008, "slow consumer"), (1001, "going away"), (1000, "")])
def test_a_passing_close_is_followed_by_a_reconnect_and_a_resume(server, open_page, code, reason):
    page = open_page(server)
    start_client(page)
    wait_for_count(page, "joined", 1)
    server.control(op="kick", code=code, reason=reason, hold=True, texts=["while away"])
    page.wait_for_function("() => rooms.connections === 2", timeout=WAIT)
    server.control(op="gate", open=True)
    room, recovery = wait_for_count(page, "joined", 2)[1]
    assert (room, recovery["complete"], recovery["replayed"]) == ("lobby", True, 1)
    assert [text for text, _, _ in messages(page)] == ["while away"]
    assert next(detail for status, detail in events(page, "status") if status == "reconnecting")["code"] == code


def test_a_server_restart_is_a_new_epoch_reported_through_on_joined(open_page):
    server = RoomsServer().start()
    try:
        page = open_page(server)
        start_client(page)
        old_epoch = wait_for_count(page, "joined", 1)[0][1]["position"]["epoch"]
        server.control(op="broadcast", texts=["before"])
        wait_for_count(page, "message", 1)
        server.stop()  # SIGTERM: 1001, and the room's in-memory log is gone with the process
        page.wait_for_function("() => rooms.status === 'reconnecting'", timeout=WAIT)
        server.start()
        room, recovery = wait_for_count(page, "joined", 2)[1]
        assert room == "lobby"
        assert (recovery["complete"], recovery["reason"], recovery["replayed"]) == (False, "epoch changed", 0)
        new_epoch = recovery["position"]["epoch"]
        assert new_epoch != old_epoch and recovery["position"]["offset"] == 0
        server.control(op="broadcast", texts=["after"])
        wait_for_count(page, "message", 2)
        assert messages(page) == [("before", 1, old_epoch), ("after", 1, new_epoch)]
        assert page.evaluate("() => rooms.lastPositions()") == {"lobby": {"epoch": new_epoch, "offset": 1}}
        assert next(detail["code"] for status, detail in events(page, "status") if status == "reconnecting") == 1001
    finally:
        server.stop()


def test_a_page_reload_resumes_from_session_storage(server, open_page):
    page = open_page(server)
    start_client(page, storage="session")
    epoch = wait_for_count(page, "joined", 1)[0][1]["position"]["epoch"]
    server.control(op="broadcast", texts=["a", "b", "c"])
    wait_for_count(page, "message", 3)
    page.reload()  # the page and its client are gone; sessionStorage stays with the tab
    server.control(op="broadcast", texts=["d", "e"])
    start_client(page, storage="session")
    joined = wait_for_count(page, "joined", 1)[0]
    assert joined == ["lobby", {"complete": True, "reason": None, "replayed": 2,
                                "position": {"epoch": epoch, "offset": 5}}]
    wait_for_count(page, "message", 2)
    assert messages(page) == [("d", 4, epoch), ("e", 5, epoch)]


def test_a_refused_upgrade_is_retried_with_longer_and_longer_waits(server, open_page):
    """A route without the subprotocol: the browser fails the handshake (1006, never open), as for a 403."""
    page = open_page(server)
    start_client(page, "/plain/lobby")
    page.wait_for_function("() => rooms.retries.failures >= 3", timeout=WAIT)
    page.evaluate("() => rooms.close()")
    waits = [detail for status, detail in events(page, "status") if status == "reconnecting"][:3]
    assert [(detail["code"], detail["retry"]) for detail in waits] == [(1006, 1), (1006, 2), (1006, 3)]
    ceilings = page.evaluate("(backoff) => [0, 1, 2].map(n => IgnitiaRooms.backoffCeiling(n, backoff))", FAST)
    assert all(0 <= detail["delay"] <= ceiling for detail, ceiling in zip(waits, ceilings, strict=True))
    assert page.evaluate("() => rooms.connections") == 0


MULBERRY32 = """(seed) => () => {
  seed = (seed + 0x6D2B79F5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}"""


def test_the_backoff_is_the_python_clients(server, open_page):
    """The waits, drawn without waiting: the defaults, the ceilings, full jitter, the count and its reset."""
    page = open_page(server)
    python = Backoff()
    assert page.evaluate("() => IgnitiaRooms.DEFAULT_BACKOFF") == {
        "first": python.first, "factor": python.factor, "cap": python.cap, "resetAfter": python.reset_after}
    ceilings = page.evaluate("() => Array.from({length: 16}, (_, n) => IgnitiaRooms.backoffCeiling(n))")
    assert ceilings == pytest.approx([python.ceiling(n) for n in range(16)])
    draws = page.evaluate(f"""() => {{
        const random = ({MULBERRY32})(20251205);
        return Array.from({{length: 400}}, (_, i) => [i % 12, IgnitiaRooms.backoffDelay(i % 12, undefined, random)]);
    }}""")
    assert all(0 <= delay <= python.ceiling(n) for n, delay in draws)
    assert max(delay for n, delay in draws if n == 0) > python.first / 2  # spread over the range, not a constant
    assert len({delay for _, delay in draws}) == len(draws)
    # The count: each failed attempt and each short connection lengthen the next wait; a
    # connection that lasted resetAfter seconds starts again from the first (random() = 1: the ceilings).
    waits = page.evaluate("""() => {
        const retries = new IgnitiaRooms.Retries(undefined, () => 1);
        return [retries.failed(), retries.failed(), retries.dropped(29.9), retries.dropped(30), retries.failed()];
    }""")
    assert waits == pytest.approx([python.ceiling(0), python.ceiling(1), python.ceiling(2), python.ceiling(0),
                                   python.ceiling(1)])
    assert page.evaluate("() => { try { new IgnitiaRooms.Retries({first: 0}); } catch (e) { return e.name; } }") == (
        "RangeError")


FAKE_SOCKET = """(saved) => {
  window.sockets = [];
  window.WebSocket = class {
    constructor(url, protocols) {
      Object.assign(this, {url, protocols, protocol: protocols[0], readyState: 0, sent: []});
      window.sockets.push(this);
    }
    send(data) { this.sent.push(JSON.parse(data)); }
    close() { this.readyState = 3; }
    open() { this.readyState = 1; this.onopen({}); }
    receive(frame) { this.onmessage({data: JSON.stringify(frame)}); }
  };
  window.fakeStorage = {
    items: {"positions": JSON.stringify(saved)},
    getItem(key) { return this.items[key] ?? null; },
    setItem(key, value) { this.items[key] = value; },
  };
}"""


def test_the_frames_rules_without_a_server(server, open_page):
    """A fake WebSocket in the page: the hello's 1000 rooms, "not resumed", gap, left, duplicates, direct."""
    page = open_page(server)
    saved = [[f"room{n}", {"epoch": "e1", "offset": n + 1}] for n in range(1001)]  # room0 is the oldest
    page.evaluate(FAKE_SOCKET, saved)
    start_client(page, storage="fake", storageKey="positions")
    page.evaluate("() => sockets[0].open()")
    [hello] = page.evaluate("() => sockets[0].sent")
    assert hello["type"] == "hello" and len(hello["resume"]) == 1000 and "room0" not in hello["resume"]
    assert hello["resume"]["room1000"] == {"epoch": "e1", "offset": 1001}
    assert page.evaluate("() => sockets[0].protocols") == ["ignitia.rooms.v1"]
    frames = [
        {"type": "joined", "room": "room0", "recovery": {"complete": True, "reason": None, "replayed": 0,
                                                         "position": {"epoch": "e1", "offset": 5}}},
        {"type": "joined", "room": "room7", "recovery": {"complete": True, "reason": None, "replayed": 1,
                                                         "position": {"epoch": "e1", "offset": 9}}},
        {"type": "message", "room": "room7", "position": {"epoch": "e1", "offset": 8}, "text": "seen already"},
        {"type": "message", "room": "room7", "position": {"epoch": "e1", "offset": 9}, "text": "replayed"},
        {"type": "gap", "room": "room7", "recovery": {"complete": False, "reason": "too old", "replayed": 0,
                                                      "position": {"epoch": "e1", "offset": 20}}},
        {"type": "message", "room": "room7", "position": {"epoch": "e1", "offset": 21}, "binary": "AP8="},
        {"type": "message", "text": "to you alone"},
        {"type": "shiny-new-frame", "room": "room7"},
        {"type": "left", "room": "room9"},
    ]
    page.evaluate("(frames) => frames.forEach(frame => sockets[0].receive(frame))", frames)
    # room0's position did not fit in the hello: the server's "complete" cannot be true for it.
    assert events(page, "joined")[0] == ["room0", {"complete": False, "reason": "not resumed", "replayed": 0,
                                                   "position": {"epoch": "e1", "offset": 5}}]
    assert messages(page) == [("replayed", 9, "e1"), ("bytes:0,255", 21, "e1")]
    assert events(page, "gap") == [["room7", frames[4]["recovery"]]]
    assert events(page, "direct") == [["to you alone"]] and events(page, "left") == [["room9"]]
    positions = page.evaluate("() => rooms.lastPositions()")
    assert positions["room7"] == {"epoch": "e1", "offset": 21} and positions["room0"]["offset"] == 5
    assert "room9" not in positions and len(positions) == 1000
    stored = dict(json.loads(page.evaluate("() => fakeStorage.items.positions")))
    assert stored == positions
