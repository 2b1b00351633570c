"""The guide's chat room as a Flask app: a page, login by name, rooms, history, presence, stats.

History, replay after a reconnect, presence and the browser's reconnecting client are the
library's: each room keeps its recent messages with positions (``HostSettings.history``), a
page that reconnects resumes where it was (``ws.join`` replays what it missed), presence is
``presence=True`` with ``registry.set_user``, and the page uses the shipped ``ignitia-rooms.js``.
With ``CHAT_REDIS_URL`` the Redis backplane does all of that across workers. What is left here:
the pages, the session, the guards, the rate limit and the dashboard's statistics (``store.py``).

Run (one process, pages and WebSockets on one port):

    ignitia-sync examples.chat_app:app --port 8000

Run with two gunicorn workers sharing one Redis (rooms, history and presence span workers):

    CHAT_REDIS_URL=redis://127.0.0.1:6379/0 CHAT_SECRET_KEY=... \\
        gunicorn -k ignitia_sync.gunicorn.Worker -w 2 -b 127.0.0.1:8000 examples.chat_app:app

(``-k gevent`` works as well; our worker adds the 1001 "going away" close on stop and reload,
which makes the pages reconnect at once instead of after a dropped TCP connection.)

Open http://127.0.0.1:8000/, pick a name and a room. ``/stats`` is a live dashboard.

Environment:
    CHAT_SECRET_KEY: signs the session cookie (the name); the same on every worker and host.
        Unset (development): a key drawn once and kept in ``instance/chat_secret_key``.
    CHAT_REDIS_URL: Redis for the backplane (rooms, history, presence) and the statistics.
    CHAT_ALLOWED_ORIGINS: comma-separated origins allowed besides the app's own host
        (``https://chat.example.com``), for pages served from another name.
    CHAT_RATE: chat messages a second per connection once the burst of 8 is spent (2 by default).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import Flask, abort, jsonify, redirect, render_template, request, send_file, session, url_for
from werkzeug.wrappers import Response

from ignitia_sync import Message, TokenBucket
from ignitia_sync.broadcast.rooms_protocol import SUBPROTOCOL
from ignitia_sync.flask import FlaskWebSocket, Sock
from ignitia_sync.javascript import javascript_path

from .store import LocalStats, RedisStats, Stats

log = logging.getLogger("chat_app")

MAX_MESSAGE_BYTES = 4096  # one WebSocket message; the library closes bigger ones with 1009
MAX_TEXT_CHARS = 1000  # one chat message, after JSON decoding
PING_INTERVAL = 25.0  # keepalive pings: well inside nginx's 60 s proxy_read_timeout
RATE = float(os.environ.get("CHAT_RATE", "2"))  # chat messages per second per connection (after the burst)
BURST = 8  # how many may come at once
MAX_STRIKES = 40  # rejected messages in a row before the connection is closed with 1008
NAME_MAX = 24
HISTORY_LIMIT = 50  # messages a page shows when it (re)loads a room; the room keeps the library's default
ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
WORKER = f"{os.uname().nodename}:{os.getpid()}"  # refreshed per process in _ensure_background

F = TypeVar("F", bound=Callable[..., Any])


def development_key(folder: str) -> str:
    """The key that signs sessions in development: drawn once, kept in ``folder``, read after.

    Flask's instance folder (``instance/`` next to the package, never committed) holds it, so
    a restart keeps everyone signed in and open pages reconnect as the same user. Two
    processes starting at once end up with the same key (the first file linked in place wins).

    Example::

        app.secret_key = os.environ.get("CHAT_SECRET_KEY") or development_key(app.instance_path)
    """
    path = os.path.join(folder, "chat_secret_key")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        draft = f"{path}.{os.getpid()}"
        with open(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)  # atomic, and never over another process's key
        os.unlink(draft)
    with open(path) as file:
        return file.read().strip()


app = Flask(__name__)
# Never a key written in the source (anyone could sign any name with it). Production sets
# CHAT_SECRET_KEY (the same on every worker and host); without it, development uses a key
# drawn once and kept in the instance folder, which survives restarts.
app.secret_key = os.environ.get("CHAT_SECRET_KEY") or development_key(app.instance_path)
app.config.update(
    SESSION_COOKIE_SAMESITE="Lax",
    SESSION_COOKIE_HTTPONLY=True,
    # Every WebSocket of the app: small messages, pings within a proxy's idle limit, and who
    # is in each room (presence). Each room keeps its history by default (History()).
    IGNITIA_SYNC={"max_message_size": MAX_MESSAGE_BYTES, "ping_interval": PING_INTERVAL, "ping_timeout": 20.0,
                  "presence": True},
)
REDIS_URL = os.environ.get("CHAT_REDIS_URL") or None
if REDIS_URL:
    app.config["IGNITIA_SYNC_BACKPLANE"] = REDIS_URL  # rooms, positions, history and presence span workers
stats_store: Stats = RedisStats(REDIS_URL) if REDIS_URL else LocalStats()
if not REDIS_URL and "gunicorn" in sys.modules:
    log.warning("no CHAT_REDIS_URL: each gunicorn worker keeps its own rooms, history and presence")
if not os.environ.get("CHAT_SECRET_KEY"):
    log.warning("CHAT_SECRET_KEY is not set: the development key in the instance folder signs sessions")
EXTRA_ORIGINS = {o.strip().lower().rstrip("/") for o in os.environ.get("CHAT_ALLOWED_ORIGINS", "").split(",") if o.strip()}

sock = Sock(app)  # the chat: its stats() are the dashboard's figures
monitor = Sock(app)  # the dashboard's own feed, counted apart from the chat


# -- pages ---------------------------------------------------------------------------------


@app.after_request
def security_headers(response: Response) -> Response:
    # No inline script anywhere, so even an escaping mistake could not run injected code.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def clean_name(raw: str) -> str | None:
    name = " ".join(raw.split())  # no control characters, no runs of spaces
    return name if 0 < len(name) <= NAME_MAX and name.isprintable() else None


@app.route("/", methods=["GET", "POST"])
def index() -> str | Response:
    error = None
    room = request.values.get("room", "lobby")
    if request.method == "POST":
        name = clean_name(request.form.get("name", ""))
        if name is None:
            error = f"A name is 1 to {NAME_MAX} printable characters."
        elif not ROOM_RE.fullmatch(room):
            error = "A room name is 1 to 32 letters, digits, '-' or '_'."
        else:
            session["name"] = name
            return redirect(url_for("room_page", room=room))
    return render_template("index.html", name=session.get("name", ""), room=room, error=error)


@app.route("/room/<room>")
def room_page(room: str) -> str | Response:
    if not ROOM_RE.fullmatch(room):
        abort(404)
    if "name" not in session:
        return redirect(url_for("index", room=room))
    # A WebSocket rule's url_for is always absolute (ws://...); the page wants the path, and
    # picks ws: or wss: from its own location (right behind a TLS-terminating proxy too).
    ws_path = urlsplit(url_for("room_socket", room=room)).path
    return render_template(
        "room.html", room=room, name=session["name"], ws_path=ws_path, max_bytes=MAX_MESSAGE_BYTES,
        max_chars=MAX_TEXT_CHARS,
    )


@app.route("/ignitia-rooms.js")
def ignitia_rooms_js() -> Response:
    """The library's browser client, served from the installed package (304 while unchanged)."""
    return send_file(javascript_path(), mimetype="text/javascript")


@app.route("/session")
def session_state() -> Response:
    """Who the session cookie says this is: the page asks when its WebSocket cannot open.

    An upgrade without a valid session gets 401 before the 101, which a browser page never
    sees (its WebSocket just closes with 1006); this answer tells it to sign in again (the
    cookie expired, or the server's key changed) instead of retrying forever.
    """
    answer = jsonify(name=session.get("name"))
    answer.headers["Cache-Control"] = "no-store"
    return answer


@app.route("/logout", methods=["POST"])
def logout() -> Response:
    session.pop("name", None)
    return redirect(url_for("index"))


@app.route("/stats")
def stats_page() -> str:
    return render_template("stats.html", ws_path=urlsplit(url_for("stats_socket")).path)


# -- WebSocket guards (Flask view decorators: they answer before the 101) -------------------


def same_origin(view: F) -> F:
    """403 for an upgrade sent by a page of another site (cross-site WebSocket hijacking).

    The session cookie goes with every WebSocket a browser opens, whoever's page opens it,
    so the Origin is what tells our page from theirs. Clients without an Origin (not
    browsers) carry no victim's cookie and pass.
    """

    def checked(**params: Any) -> Any:
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower().rstrip("/") not in EXTRA_ORIGINS:
            if urlsplit(origin).netloc.lower() != request.host.lower():
                log.info("refused an upgrade from origin %r", origin)
                return Response("cross-origin WebSocket refused\n", status=403, mimetype="text/plain")
        return view(**params)

    return cast(F, _named_like(checked, view))


def signed_in(view: F) -> F:
    """401 for an upgrade without a name in the session: the name is never the client's say."""

    def checked(**params: Any) -> Any:
        if "name" not in session:
            return Response("sign in first\n", status=401, mimetype="text/plain")
        return view(**params)

    return cast(F, _named_like(checked, view))


def _named_like(wrapper: Callable[..., Any], view: Callable[..., Any]) -> Callable[..., Any]:
    wrapper.__name__ = view.__name__  # Flask names the endpoint after the view
    wrapper.__doc__ = view.__doc__
    return wrapper


# -- the chat WebSocket --------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


@sock.route("/ws/room/<room>", decorators=[same_origin, signed_in], subprotocols=[SUBPROTOCOL])
def room_socket(ws: FlaskWebSocket, room: str) -> None:
    """One member of a room: messages both ways until the socket closes.

    The page speaks the rooms wire format (``ignitia-rooms.js``): ``ws.join`` replays what it
    missed since the position its hello gave, and presence frames follow who comes and goes.
    """
    if not ROOM_RE.fullmatch(room):
        ws.close(1008, "no such room")
        return
    user: str = session["name"]  # from the signed cookie of the upgrade request
    _ensure_background()
    sock.registry.set_user(ws, user)  # presence counts this connection as the user's (two tabs: one user)
    ws.send_json({"type": "hello", "user": user, "room": room, "worker": os.getpid(), "ts": now_ms(),
                  "limits": {"max_bytes": MAX_MESSAGE_BYTES, "max_chars": MAX_TEXT_CHARS, "rate": RATE, "burst": BURST}})
    ws.join(room)  # what this client missed since its last position comes first (Redis: on any worker)
    # Who is here now; the page follows arrivals and departures from its presence frames.
    ws.send_json({"type": "present", "users": sorted(sock.registry.presence(room)), "ts": now_ms()})
    _serve(ws, room, user)  # when it returns, the library takes the connection out of the room and its presence


def _serve(ws: FlaskWebSocket, room: str, user: str) -> None:
    limiter = TokenBucket(rate=RATE, burst=BURST)
    strikes = 0
    last_warning = 0.0
    for message in ws:
        if not isinstance(message, Message.Text):
            if isinstance(message, Message.Binary):
                ws.send_json({"type": "error", "code": "text_only", "text": "Only text messages.", "ts": now_ms()})
            continue
        text = message.data.strip()  # the chat text itself; the user is the session's
        if not 0 < len(text) <= MAX_TEXT_CHARS:
            ws.send_json({"type": "error", "code": "bad_message",
                          "text": f"A message is 1 to {MAX_TEXT_CHARS} characters.", "ts": now_ms()})
            continue
        if not limiter.allow():
            strikes += 1
            if strikes >= MAX_STRIKES:  # a client that ignores "slow down"
                ws.close(1008, "rate limit exceeded")
                return
            if time.monotonic() - last_warning >= 1.0:  # one warning a second, not one per message
                last_warning = time.monotonic()
                ws.send_json({"type": "error", "code": "rate_limited", "ts": now_ms(),
                              "text": f"Slow down: {BURST} messages at once, then {RATE:g} a second. "
                                      "That message was not sent."})
            continue
        strikes = 0
        # The room's history keeps it (positions, replay after a reconnect); the sender gets it too.
        sock.registry.broadcast(Message.json({"type": "message", "user": user, "text": text, "ts": now_ms()}),
                                room=room)


def room_document(room: str, read: Callable[[], dict[str, Any]]) -> Response:
    """A room's JSON for a signed-in user (404 for a name that is not a room), never cached."""
    if not ROOM_RE.fullmatch(room):
        abort(404)
    if "name" not in session:
        return Response("sign in first\n", status=401, mimetype="text/plain")
    answer = jsonify(room=room, **read())
    answer.headers["Cache-Control"] = "no-store"
    return answer


@app.route("/room/<room>/history")
def room_history(room: str) -> Response:
    """The room's last messages with their positions: the page reloads with it when it cannot resume."""

    def read() -> dict[str, Any]:
        recovery, found = sock.registry.history(room, limit=HISTORY_LIMIT)
        position = recovery.position
        return {
            "position": None if position is None else {"epoch": position.epoch, "offset": position.offset},
            "messages": [{"position": {"epoch": at.epoch, "offset": at.offset}, **message.decode_json()}
                         for at, message in found],
        }

    return room_document(room, read)


@app.route("/room/<room>/presence")
def room_presence(room: str) -> Response:
    """Who is in the room (every worker's, with Redis) and how many connections each has."""
    return room_document(room, lambda: {"users": sock.registry.presence(room)})


# -- statistics ------------------------------------------------------------------------------

_background_pid: int | None = None
_background_lock = threading.Lock()


def local_snapshot(previous: dict[str, Any] | None) -> dict[str, Any]:
    """This worker's chat counters (``sock.stats()``), with rates since ``previous``."""
    figures = sock.stats()
    ts = time.time()
    snapshot: dict[str, Any] = {
        "worker": WORKER, "pid": os.getpid(), "ts": ts,
        "open_connections": figures["open_connections"],
        "messages_in": figures["messages_in"],
        "messages_out": figures["messages_out"],
        "close_codes": {str(code): count for code, count in figures["close_codes"].items()},
        "in_per_s": 0.0, "out_per_s": 0.0,
    }
    if previous is not None and ts > previous["ts"]:
        elapsed = ts - previous["ts"]
        snapshot["in_per_s"] = max(0.0, (snapshot["messages_in"] - previous["messages_in"]) / elapsed)
        snapshot["out_per_s"] = max(0.0, (snapshot["messages_out"] - previous["messages_out"]) / elapsed)
    return snapshot


def cluster_snapshot() -> dict[str, Any]:
    """Every worker's snapshot summed (one worker's without Redis)."""
    snapshots = stats_store.cluster_stats()
    close_codes: Counter[str] = Counter()
    for each in snapshots:
        close_codes.update(each["close_codes"])
    return {
        "type": "stats", "ts": now_ms(), "workers": sorted(each["worker"] for each in snapshots),
        **{key: sum(each[key] for each in snapshots)
           for key in ("open_connections", "messages_in", "messages_out", "in_per_s", "out_per_s")},
        "close_codes": dict(close_codes),
    }


def _ensure_background() -> None:
    """Start this process's statistics publisher once (in the worker, after gunicorn forked)."""
    global _background_pid, WORKER
    with _background_lock:
        if _background_pid == os.getpid():
            return
        _background_pid = os.getpid()
        WORKER = f"{os.uname().nodename}:{os.getpid()}"
        threading.Thread(target=_publish_stats, daemon=True, name="chat-stats").start()


def _publish_stats() -> None:
    """Each second: publish this worker's statistics for the dashboard (history and presence are the library's)."""
    previous: dict[str, Any] | None = None
    tick = 0
    while True:
        try:
            previous = local_snapshot(previous)
            stats_store.publish(WORKER, previous)
        except Exception as exc:  # Redis down: try again next second; the chat itself goes on
            if tick % 30 == 0:  # one line in 30 s, not one a second
                log.warning("publishing statistics failed: %s", exc)
        tick += 1
        time.sleep(1.0)


@monitor.route("/ws/stats", decorators=[same_origin])
def stats_socket(ws: FlaskWebSocket) -> None:
    """The dashboard's feed: the cluster's counters each second until the page goes."""
    _ensure_background()
    while not ws.closed:
        ws.send_json(cluster_snapshot())
        message = ws.recv_timeout(1.0)
        if isinstance(message, Message.Close):
            break
