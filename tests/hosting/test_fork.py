"""A WSGI host made before a fork (gunicorn ``--preload``) starts afresh in the child.

The parent here has started its host's Redis backplane (its greenlets, its connections to
Redis, its process id on the backplane); the forked child must not use any of them: its first
broadcast starts a backplane of its own, under an id of its own. Real fork, real Redis.
"""

from __future__ import annotations

import os
import time

import gevent
import redis

from ignitia_sync import Message
from ignitia_sync.redis.envelope import _HEAD
from ignitia_sync.wsgi import WebSocketHost
from tests.redis_server import RedisServer


def test_a_child_process_gets_a_backplane_of_its_own(redis_server: RedisServer):
    host = WebSocketHost(backplane=redis_server.url)
    host.registry.attach()  # started in the parent, as a master that used it at import would
    parent_backplane = host.registry.backplane
    parent_uid = parent_backplane.uid  # type: ignore[attr-defined]
    subscriber = redis.Redis.from_url(redis_server.url).pubsub()
    subscriber.subscribe("ignitia:all")
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    try:
        pid = gevent.fork()
        if pid == 0:  # the child: broadcast, wait until it is published, leave without clean-up
            status = 1
            try:
                fresh = host.registry.backplane is not parent_backplane and not len(host.registry)
                host.registry.broadcast(Message.text("from the child"))
                deadline = time.monotonic() + 5
                while host.registry.backplane.stats()["published"] < 1 and time.monotonic() < deadline:
                    gevent.sleep(0.02)
                status = 0 if fresh and host.registry.backplane.stats()["published"] == 1 else 2
            finally:
                os._exit(status)
        message = None
        deadline = time.monotonic() + 10
        while message is None or message["type"] != "message":
            assert time.monotonic() < deadline, "the child's broadcast never reached Redis"
            message = subscriber.get_message(timeout=1)
        assert b"from the child" in message["data"]
        child_uid = message["data"][2:_HEAD]
        assert child_uid != parent_uid  # the child's own id on the backplane, not its parent's
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's registry and backplane go on as they were.
        assert host.registry.backplane is parent_backplane and host.registry._attached
    finally:
        subscriber.close()
        host.shutdown()
