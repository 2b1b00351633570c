"""Targets for the command-line tests: a router, a handler mistaken for one, a broken thing."""

from ignitia_sync import Router


def room(ws, name):
    ws.send_text(name)


app = Router().websocket("/room/:name", room)
number = 42
