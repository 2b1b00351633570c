"""A RedisBackplane in a process of its own, driven line by line: ``python -m tests.redis.backplane_process URL``.

For the tests of the cluster-wide id directory (``test_directory.py``): two of these are two
servers' processes, and SIGKILL of one is a crashed worker. The backplane runs in a thread and
hub of its own (``attach(threaded=True)``, as under a threaded WSGI server); the commands come
from this main thread, so every call is handed over to the backplane's hub.

Options (``--id-ttl SECONDS``) go to the constructor when it has them. Commands on stdin, one a
line; each answer is one line on stdout:

* ``claim ID`` / ``take ID``: ``claim ID True|False`` (``take`` asks to take over);
  ``claim ID unsupported`` when the backplane has no ``claim``;
* ``identified ID`` / ``forgotten ID``: ``ok``;
* ``stats``: ``stats {json}``.

A direct message for an id prints ``direct ID TEXT``; ``ready UID`` comes first.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from typing import Any

from ignitia_sync import Message
from ignitia_sync.redis import RedisBackplane


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--id-ttl", type=float)
    args = parser.parse_args()
    options: dict[str, Any] = {"reconnect_initial": 0.05, "reconnect_max": 0.2}
    if args.id_ttl is not None and "id_ttl" in inspect.signature(RedisBackplane).parameters:
        options["id_ttl"] = args.id_ttl
    backplane = RedisBackplane(args.url, **options)

    def on_direct(id: str, message: Message) -> None:
        say(f"direct {id} {message.data}")

    backplane.attach(lambda message, room: None, on_direct, threaded=True)
    say(f"ready {backplane.uid.decode()}")
    for line in sys.stdin:
        command, _, id = line.strip().partition(" ")
        if command in ("claim", "take"):
            claim = getattr(backplane, "claim", None)
            result = "unsupported" if claim is None else claim(id, take_over=command == "take")
            say(f"claim {id} {result}")
        elif command in ("identified", "forgotten"):
            getattr(backplane, command)(id)
            say("ok")
        elif command == "stats":
            say("stats " + json.dumps(backplane.stats()))
    backplane.close()


if __name__ == "__main__":
    main()
