"""Rooms with positions over a real redis-server, seen from a process with no member in the room
(an HTTP view, a background worker): it publishes, and keeps nothing per room for it."""

from __future__ import annotations

from ignitia_sync import Message
from ignitia_sync.broadcast.registry import Registry
from ignitia_sync.redis import Emitter, RedisBackplane


def test_a_process_without_members_keeps_no_ordering_state_and_reads_no_log(redis_server):
    reads = []

    class Counting(RedisBackplane):
        def read_log(self, room, after, history, limit):
            reads.append(room)
            return super().read_log(room, after, history, limit)

    backplane = Counting(redis_server.url, reconnect_initial=0.05, reconnect_max=0.2)
    registry = Registry(backplane)
    emitter = Emitter(redis_server.url)  # another process, publishing in between
    try:
        positions = []
        for n in range(3):
            positions.append(registry.publish(Message.text(f"view {n}"), room="orders", timeout=5))
            emitter.broadcast(f"worker {n}", room="orders")
        assert [p.offset for p in positions] == [1, 3, 5]  # this process heard only its own: gaps
        ordered = registry._ordered
        assert ordered.sequencer.last("orders") is None  # nothing ordered for a room without members
        assert "orders" not in ordered._filling and reads == []  # no gap to fill: no log read
        assert "orders" not in backplane._seen  # no window of positions kept for it
        assert registry.history("orders", limit=10)[0].position.offset == 6  # the log has them all
    finally:
        emitter.close()
        backplane.close(timeout=1)
