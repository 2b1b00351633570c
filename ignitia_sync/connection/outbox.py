"""What one connection has to write, in order: whole frames, two control slots, a byte budget.

No I/O: the :class:`~ignitia_sync.connection.transport.Transport` asks :meth:`Outbox.next_chunk`
what to write, writes it, and tells :meth:`Outbox.mark_sent` how much the socket took.
Everything here is plain bookkeeping, so it is unit-tested without a socket.

* Frames leave whole and in order; the head may be partly written (``head_sent``).
* A keepalive ping and a pong wait in their own slots and enter the queue at the next frame
  boundary, never inside a partly written frame (the latest pong replaces a waiting one).
* Each frame carries what it counts against ``limit`` (``outbox_limit``): its size for
  non-blocking sends and broadcasts, 0 for blocking sends (their sender waits instead),
  :data:`CONTROL` for control frames moved in from the slots.
* ``pushed`` and ``popped`` count data frames queued and fully written: a blocking sender
  waits until ``popped`` reaches its frame's number.

Example:
    >>> outbox = Outbox(limit=100)
    >>> outbox.append(b"abc", 3)
    >>> outbox.pong = b"P"
    >>> bytes(outbox.next_chunk())
    b'Pabc'
    >>> outbox.mark_sent(2)  # the pong and one byte of "abc": no data frame written yet
    False
    >>> outbox.counted, outbox.head_sent, outbox.popped
    (3, 1, 0)
    >>> outbox.mark_sent(2)
    True
"""

from __future__ import annotations

from collections import deque

__all__ = ["CONTROL", "WRITE_CHUNK", "Outbox"]

#: The "counted" mark of a control frame moved from its slot into the queue.
CONTROL = -1
#: The largest chunk :meth:`Outbox.next_chunk` joins small frames into.
WRITE_CHUNK = 65536


class Outbox:
    """The ordered frames of one connection, its ping and pong slots, and its byte budget.

    Attributes:
        queue: ``(frame, counted)`` pairs, made on first use (an empty deque takes ~760
            bytes and most connections are idle); None after :meth:`clear`.
        head_sent: bytes of the first frame already written.
        inflight: bytes of the chunk being written by a writer greenlet right now.
        counted: bytes counted against ``limit`` and not yet written.
        pushed: data frames ever queued; ``popped``: those fully written.
        ping, pong: the waiting control frames (``b""``: none).
        limit: the byte budget of non-blocking sends (``outbox_limit``).
    """

    __slots__ = ("counted", "head_sent", "inflight", "limit", "ping", "pong", "popped", "pushed", "queue")

    def __init__(self, limit: int) -> None:
        self.queue: deque[tuple[bytes, int]] | None = None
        self.head_sent = 0
        self.inflight = 0
        self.counted = 0
        self.pushed = 0
        self.popped = 0
        self.ping = b""
        self.pong = b""
        self.limit = limit

    def refuses(self, counted: int) -> bool:
        """True when ``counted`` more bytes would pass the limit (a lone large frame still goes).

        Example:
            >>> outbox = Outbox(limit=10)
            >>> outbox.refuses(50), outbox.append(b"x" * 8, 8), outbox.refuses(3)
            (False, None, True)
        """
        return bool(self.counted) and self.counted + counted > self.limit

    def append(self, frame: bytes, counted: int) -> None:
        """Queue ``frame`` after everything else; ``counted`` bytes count against the limit."""
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        queue.append((frame, counted))
        self.pushed += 1
        self.counted += counted

    def next_chunk(self) -> bytes | memoryview:
        """The next bytes to write: a partly written frame's rest, else control frames and data.

        Small frames are joined up to :data:`WRITE_CHUNK` bytes; ``b""`` when nothing waits.
        """
        queue = self.queue
        if self.head_sent:
            assert queue is not None
            return memoryview(queue[0][0])[self.head_sent :]
        if self.ping or self.pong:
            if queue is None:
                queue = self.queue = deque()
            if self.ping:
                queue.appendleft((self.ping, CONTROL))
                self.ping = b""
            if self.pong:
                queue.appendleft((self.pong, CONTROL))
                self.pong = b""
        if not queue:
            return b""
        first = queue[0][0]
        if len(queue) == 1 or len(first) >= WRITE_CHUNK:
            return first
        parts = []
        size = 0
        for frame, _ in queue:
            parts.append(frame)
            size += len(frame)
            if size >= WRITE_CHUNK:
                break
        return b"".join(parts)

    def mark_sent(self, sent: int) -> bool:
        """Account for ``sent`` bytes of the last chunk; True when data frames were fully written."""
        queue = self.queue
        if queue is None:  # cleared meanwhile
            return False
        sent += self.head_sent
        popped = self.popped
        while queue and sent >= len(queue[0][0]):
            frame, counted = queue.popleft()
            sent -= len(frame)
            if counted != CONTROL:
                popped += 1
                self.counted -= counted
        self.head_sent = sent
        if popped == self.popped:
            return False
        self.popped = popped
        return True

    def cut(self) -> None:
        """Drop every whole frame not yet on the wire (a slow consumer); keep partly written ones.

        Example:
            >>> outbox = Outbox(limit=100)
            >>> for frame in (b"aaaa", b"bbbb", b"cccc"):
            ...     outbox.append(frame, 4)
            >>> outbox.mark_sent(2)
            False
            >>> outbox.cut()
            >>> list(outbox.queue), outbox.counted, outbox.pushed
            ([(b'aaaa', 4)], 4, 1)
        """
        queue = self.queue
        if queue is None:
            return
        kept: list[tuple[bytes, int]] = []
        covered = self.head_sent + self.inflight
        while queue and covered > 0:
            entry = queue.popleft()
            kept.append(entry)
            covered -= len(entry[0])
        queue.clear()
        queue.extend(kept)
        self.counted = sum(counted for _, counted in kept if counted > 0)
        self.pushed = self.popped + sum(1 for _, counted in kept if counted != CONTROL)

    def clear(self) -> None:
        """Forget everything queued (the connection is torn down)."""
        self.queue = None
        self.counted = 0

    def __len__(self) -> int:
        """Frames queued (control frames moved in included)."""
        return len(self.queue) if self.queue else 0
