"""An echo server for the Autobahn|Testsuite: every text and binary message back unchanged.

Compression is on and the message limit is 32 MiB, for the 16 MiB cases of group 9.

wstest connects to paths such as /runCase?case=1, so the route takes every path.

Run: python examples/autobahn.py [--port N]   or   ignitia-sync examples.autobahn:app
"""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import Message, Router, WebSocketConnection, run  # noqa: E402

MAX_MESSAGE_SIZE = 32 * 1024 * 1024


def echo(ws: WebSocketConnection, path: str = "") -> None:
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


app = Router().websocket("/*path", echo, max_message_size=MAX_MESSAGE_SIZE, compression="deflate")

if __name__ == "__main__":
    run(app)
