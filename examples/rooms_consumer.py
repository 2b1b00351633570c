"""A consumer of rooms that resumes where it stopped: after a drop, a server restart, or its own restart.

Run: python examples/rooms_consumer.py ws://127.0.0.1:8000/rooms positions.json
     (against `ignitia-sync tests.client_rooms_server:router --port 8000`, whose handler joins
     "lobby" and broadcasts there what each client sends)

It speaks the rooms wire format (``reconnecting(url, rooms=True)``): after each reconnect the
server replays what it missed, or says it cannot (then the program would reload the room's
state from elsewhere). The last position it received in each room is saved to the file at
exit and read at start, so a restarted consumer resumes too (a process killed hard resumes
from its last save and sees some messages again). Ctrl-C or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

import gevent

from ignitia_sync.client import Backoff, Gap, Joined, Left, RoomMessage, reconnecting


def load(path: str) -> dict[str, dict[str, object]]:
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        saved: dict[str, dict[str, object]] = json.load(file)
    return saved


def save(path: str, positions: dict[str, dict[str, object]]) -> None:
    with open(path + ".new", "w") as file:
        json.dump(positions, file)
    os.replace(path + ".new", path)  # never half a file


def main(url: str, path: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    feed = reconnecting(url, rooms=True, positions=load(path), backoff=Backoff(first=0.5, factor=2.0, cap=5.0))
    for signum in (signal.SIGTERM, signal.SIGINT):  # run in the hub, between two of our steps
        gevent.signal_handler(signum, feed.stop)
    try:
        for ws in feed:
            for event in ws:
                if isinstance(event, Joined) and event.recovery.complete:
                    print(f"joined {event.room}: {event.recovery.replayed} missed message(s) follow", flush=True)
                elif isinstance(event, (Joined, Gap)):  # reload the room's state here, then go on
                    print(f"reload {event.room} ({event.recovery.reason})", flush=True)
                elif isinstance(event, RoomMessage):
                    print(f"{event.room} #{event.position.offset}: {event.data!r}", flush=True)
                elif isinstance(event, Left):
                    print(f"left {event.room}", flush=True)
    finally:
        save(path, {room: position.as_json() for room, position in feed.positions.items()})
    print("stopped", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
