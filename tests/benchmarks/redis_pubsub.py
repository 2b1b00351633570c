"""Redis's own pub/sub rate on this machine: the ceiling line of run.py's R1.

    python redis_pubsub.py sub URL CHANNEL COUNT redis-py|raw
    python redis_pubsub.py pub URL CHANNEL COUNT SIZE

``sub`` subscribes, prints ``ready``, then waits for COUNT messages and prints one JSON
line: how many it got and when (``time.monotonic()``, comparable across the processes of
one machine) the first and the last arrived. ``redis-py`` reads them as the backplane does
(a plain blocking redis-py PubSub, ``get_message(timeout=...)`` per message, RESP2, the
pure-Python parser unless hiredis is installed); ``raw`` reads the socket in 1 MiB chunks
and only counts the message frames (what Redis itself can push, with next to no client
cost). ``pub`` publishes COUNT messages of SIZE bytes as fast as it can, in pipelines of
256 as the backplane's publisher does, and prints when it started and ended.

A subscriber that gets nothing for 10 s stops and reports what it had.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from urllib.parse import urlsplit

import redis

IDLE_S = 10.0
BATCH = 256


def sub_redis_py(url: str, channel: str, count: int) -> dict[str, float | int]:
    pubsub = redis.Redis.from_url(url, protocol=2).pubsub()
    pubsub.subscribe(channel)
    while (reply := pubsub.get_message(timeout=IDLE_S)) is None or reply["type"] != "subscribe":
        pass
    print("ready", flush=True)
    got, first, last = 0, 0.0, 0.0
    while got < count:
        message = pubsub.get_message(timeout=IDLE_S)
        if message is None:
            break
        if message["type"] == "message":
            last = time.monotonic()
            if not got:
                first = last
            got += 1
    return {"count": got, "first": first, "last": last}


def sub_raw(url: str, channel: str, count: int) -> dict[str, float | int]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
    name = channel.encode()
    sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(name), name))
    ack = b""
    while not ack.endswith(b":1\r\n"):  # *3 $9 subscribe $N channel :1
        ack += sock.recv(4096)
    print("ready", flush=True)
    sock.settimeout(IDLE_S)
    frame = b"*3\r\n$7\r\nmessage\r\n"
    keep = len(frame) - 1  # a frame split between two chunks is counted once
    got, first, last, tail = 0, 0.0, 0.0, b""
    while got < count:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            break
        if not chunk:
            break
        data = tail + chunk
        found = data.count(frame)
        tail = data[-keep:]  # shorter than a frame: never counted twice
        if found:
            last = time.monotonic()
            if not got:
                first = last
            got += found
    return {"count": got, "first": first, "last": last}


def pub(url: str, channel: str, count: int, size: int) -> dict[str, float | int]:
    client = redis.Redis.from_url(url, protocol=2)
    payload = b"p" * size
    start = time.monotonic()
    sent = 0
    while sent < count:
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH, count - sent)):
            pipe.publish(channel, payload)
        pipe.execute()
        sent += min(BATCH, count - sent)
    return {"count": sent, "start": start, "end": time.monotonic()}


def main(argv: list[str]) -> int:
    mode, url, channel, count, option = argv
    if mode == "sub":
        result = (sub_raw if option == "raw" else sub_redis_py)(url, channel, int(count))
    else:
        result = pub(url, channel, int(count), int(option))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
