"""The floor: the least CPU per message any blocking-style WebSocket server on gevent can cost.

Not a WebSocket server anyone should run, and not a contestant: a reference row for the echo
scenarios (E1-E3). After a fixed 101 it echoes masked text and binary frames under 64 KiB
with no checks at all (no UTF-8, no limits, no control frames, no close handshake), in one
greenlet per connection woken straight from the socket's io watcher: one greenlet switch
each way and nothing in Python but the frame loop below. Like a handler that calls
``ws.send(ws.receive())``, it makes one send() per message, on a TCP_NODELAY socket as ours
and gunicorn's are. What a real server costs above this row is its own work; what this row
costs is gevent's hub and the kernel.
"""

import argparse
import base64
import hashlib
import os
import socket

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402
from websockets.speedups import apply_mask  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def handle(sock, address):
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            return
        head += data
    head, buffer = head.split(b"\r\n\r\n", 1)
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    raw = sock._sock  # the non-blocking OS socket under gevent's
    hub = gevent.get_hub()
    watcher = hub.loop.io(raw.fileno(), 1)
    wake = gevent.getcurrent().switch
    watcher.start(wake)
    try:
        while True:
            hub.switch()  # back here only from the watcher: the socket is readable
            try:
                data = raw.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            buffer += data
            while len(buffer) >= 6:
                length, start = buffer[1] & 0x7F, 6
                if length == 126:
                    if len(buffer) < 8:
                        break
                    length, start = int.from_bytes(buffer[2:4], "big"), 8
                if len(buffer) < start + length:
                    break
                head = bytes((buffer[0], length)) if length < 126 else bytes((buffer[0], 126)) + length.to_bytes(2, "big")
                reply = head + apply_mask(buffer[start : start + length], buffer[start - 4 : start])
                buffer = buffer[start + length :]
                try:
                    sent = raw.send(reply)
                except BlockingIOError:
                    sent = 0
                if sent < len(reply):  # the rest waits in gevent's sendall, with the watcher off meanwhile
                    watcher.stop()
                    sock.sendall(reply[sent:])
                    watcher.start(wake)
    except OSError:
        return
    finally:
        watcher.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    print(f"listening on ws://127.0.0.1:{port} (pid {os.getpid()})", flush=True)
    StreamServer(("127.0.0.1", port), handle).serve_forever()
