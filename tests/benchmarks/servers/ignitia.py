"""ignitia_sync under benchmark: /echo returns every message, /broadcast forwards to all others.

With ``IGNITIA_BENCH_REDIS`` set to a Redis URL, the server has a RedisBackplane on it, so
/broadcast's room spans every process on that Redis (run.py's R1); unset, it is the
single-process server of every other scenario. With ``IGNITIA_BENCH_METRICS=1`` it serves
Prometheus metrics at /metrics (run.py's ignitia_sync-metrics variant scrapes them); with
``IGNITIA_BENCH_HISTORY=0`` rooms keep no positions (R1's history=None setup); with
``IGNITIA_BENCH_PRESENCE=1`` presence is on and each /echo connection is a user in one room;
with ``IGNITIA_BENCH_COALESCE=0`` every send() is written before it returns (run.py's
ignitia_sync-no-coalesce: what write coalescing saves).
"""

import os

from gevent import monkey

monkey.patch_all()

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402

PRESENCE = os.environ.get("IGNITIA_BENCH_PRESENCE") == "1"  # run.py's ignitia_sync-presence (I1)


def echo(ws: WebSocketConnection) -> None:
    if PRESENCE:  # each connection a user in one room: what presence costs an idle connection
        registry = ws.registry
        assert registry is not None
        registry.set_user(ws, "u" + ws.id[1:])
        ws.join("idle")
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


def broadcast(ws: WebSocketConnection) -> None:
    """Forward every text to all other /broadcast connections through the registry."""
    registry = ws.registry
    assert registry is not None
    ws.join("broadcast")
    for message in ws:
        if isinstance(message, Message.Text):
            registry.broadcast(message, room="broadcast", exclude=ws)


app = Router().websocket("/echo", echo).websocket("/broadcast", broadcast)

if __name__ == "__main__":
    redis_url = os.environ.get("IGNITIA_BENCH_REDIS")
    options = {
        "compression": None,
        "metrics": os.environ.get("IGNITIA_BENCH_METRICS") == "1",  # run.py's ignitia_sync-metrics: /metrics served
        "presence": PRESENCE,
        "coalesce_writes": os.environ.get("IGNITIA_BENCH_COALESCE") != "0",
    }
    if os.environ.get("IGNITIA_BENCH_HISTORY") == "0":  # R1's history=None setup: no positions, no log
        options["history"] = None
    if redis_url:
        from ignitia_sync.redis import RedisBackplane

        run(app, backplane=RedisBackplane(redis_url, prefix="bench"), **options)
    else:
        run(app, **options)
