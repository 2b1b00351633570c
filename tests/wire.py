"""A raw-socket WebSocket peer for tests: exact bytes in, exact frames out, no library between."""

from __future__ import annotations

import base64
import os
import socket
import struct
import zlib

_KEY = base64.b64encode(b"0123456789abcdef").decode()


def handshake_bytes(path: str = "/echo", extra: str = "", key: str = _KEY, version: str = "13") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False, mask: bool = True,
          length: int | None = None) -> bytes:
    """One frame as a client sends it (masked unless told otherwise)."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    bit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def deflate(payload: bytes) -> bytes:
    """permessage-deflate body of one message (no context takeover)."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


class Peer:
    """A connected raw client. ``frames()`` parses what the server sends."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_head(self) -> tuple[int, str]:
        """Read an HTTP response head; returns (status, whole head text)."""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a response head: {self.buffer!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        text = head.decode("latin-1")
        return int(text.split(" ", 2)[1]), text

    def read_body(self) -> bytes:
        """Everything until EOF (for refusals, which close the connection)."""
        data = self.buffer
        while chunk := self.sock.recv(65536):
            data += chunk
        self.buffer = b""
        return data

    def upgrade(self, path: str = "/echo", extra: str = "") -> str:
        self.send(handshake_bytes(path, extra))
        status, head = self.read_head()
        assert status == 101, head
        return head

    def _need(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_frame(self) -> tuple[int, bytes, int]:
        """Returns (opcode, payload, first byte) of the next server frame."""
        b0, b1 = self._need(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._need(8))
        return b0 & 0x0F, self._need(n), b0

    def read_close(self) -> tuple[int, str]:
        """Skip data frames until a Close; returns its code and reason."""
        while True:
            opcode, payload, _ = self.read_frame()
            if opcode == 8:
                code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                return code, payload[2:].decode()

    def at_eof(self) -> bool:
        """True when the server closed the TCP connection with nothing more sent before it.

        False when any byte came first (a frame after the Close, say): what was buffered
        counts too. A reset counts as closed.
        """
        if self.buffer:
            return False
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()
