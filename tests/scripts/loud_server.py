"""A script as a user writes one: no logging set up, no monkey-patching, a handler that raises
and one that blocks the event loop with the stdlib's sleep."""

import sys
import time

from ignitia_sync import Router, run


def boom(ws):
    raise RuntimeError("the handler's own bug")


def sleepy(ws):
    time.sleep(1.5)  # not gevent's: every other connection waits
    ws.send_text("woke up")


app = Router().websocket("/boom", boom).websocket("/sleepy", sleepy)

if __name__ == "__main__":
    run(app, sys.argv[1:], blocking_warning=0.5)
