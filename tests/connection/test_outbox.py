"""The outbox's bookkeeping, without a socket: order, control slots, the byte budget, cuts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ignitia_sync.connection.outbox import CONTROL, WRITE_CHUNK, Outbox


def drain(outbox: Outbox, step: int) -> bytes:
    """Write everything, ``step`` bytes at a time, as a socket that takes little would."""
    out = bytearray()
    while chunk := outbox.next_chunk():
        taken = bytes(chunk[:step])
        out += taken
        outbox.mark_sent(len(taken))
    return bytes(out)


def test_frames_leave_whole_and_in_order_and_are_counted_once_written():
    outbox = Outbox(limit=1000)
    outbox.append(b"one", 3)
    outbox.append(b"two", 0)  # a blocking send: not counted against the limit
    assert (outbox.counted, outbox.pushed, outbox.popped, len(outbox)) == (3, 2, 0, 2)
    assert drain(outbox, 1) == b"onetwo"
    assert (outbox.counted, outbox.popped, outbox.head_sent, len(outbox)) == (0, 2, 0, 0)


def test_control_frames_wait_for_the_frame_boundary_then_go_first():
    outbox = Outbox(limit=1000)
    outbox.append(b"data", 4)
    assert bytes(outbox.next_chunk()) == b"data"
    outbox.mark_sent(2)  # "da" is out: the ping may not cut into the frame
    outbox.ping = b"PING"
    assert bytes(outbox.next_chunk()) == b"ta"
    outbox.mark_sent(2)
    outbox.append(b"more", 4)
    outbox.pong = b"PONG"
    assert bytes(outbox.next_chunk()) == b"PONGPINGmore"  # pong, then ping, then data
    assert outbox.mark_sent(12) and outbox.popped == 2 and outbox.counted == 0


def test_a_newer_pong_replaces_the_one_still_waiting():
    outbox = Outbox(limit=1000)
    outbox.pong = b"old"
    outbox.pong = b"new"
    assert bytes(outbox.next_chunk()) == b"new"


def test_control_frames_are_not_data_for_blocked_senders():
    outbox = Outbox(limit=1000)
    outbox.ping = b"P"
    assert bytes(outbox.next_chunk()) == b"P"
    assert outbox.mark_sent(1) is False and outbox.popped == 0  # nobody waits for a ping
    assert list(outbox.queue or []) == []


def test_the_budget_refuses_only_what_would_pass_it_and_lets_a_lone_large_frame_go():
    outbox = Outbox(limit=10)
    assert not outbox.refuses(50)  # nothing queued: even a frame over the limit goes
    outbox.append(b"x" * 8, 8)
    assert not outbox.refuses(2)  # exactly at the limit
    assert outbox.refuses(3)
    outbox.append(b"y", 0)  # blocking sends do not count
    assert outbox.counted == 8


def test_small_frames_are_joined_up_to_the_write_chunk():
    outbox = Outbox(limit=1 << 30)
    frame = b"z" * 1000
    for _ in range(100):
        outbox.append(frame, len(frame))
    chunk = outbox.next_chunk()
    assert WRITE_CHUNK <= len(chunk) < WRITE_CHUNK + len(frame)
    big = Outbox(limit=1 << 30)
    big.append(b"b" * (WRITE_CHUNK + 1), 0)
    big.append(b"c", 0)
    assert len(big.next_chunk()) == WRITE_CHUNK + 1  # a large head goes alone


def test_a_cut_keeps_the_partly_written_frame_and_what_is_in_flight_only():
    outbox = Outbox(limit=1000)
    for frame in (b"aaaa", b"bbbb", b"cccc", b"dddd"):
        outbox.append(frame, 4)
    outbox.mark_sent(2)  # half of "aaaa"
    outbox.inflight = 4  # a writer greenlet is sending the next 4 bytes (the rest of a, half of b)
    outbox.cut()
    assert list(outbox.queue or []) == [(b"aaaa", 4), (b"bbbb", 4)]
    assert (outbox.counted, outbox.pushed, outbox.popped) == (8, 2, 0)


def test_a_cut_of_an_idle_outbox_keeps_nothing_and_counts_nothing():
    outbox = Outbox(limit=1000)
    outbox.append(b"aaaa", 4)
    outbox.mark_sent(4)
    outbox.append(b"bbbb", 4)
    outbox.cut()
    assert (len(outbox), outbox.counted, outbox.pushed, outbox.popped) == (0, 0, 1, 1)


def test_cleared_it_counts_nothing_and_marks_nothing():
    outbox = Outbox(limit=1000)
    outbox.append(b"aaaa", 4)
    outbox.clear()
    assert outbox.counted == 0 and outbox.mark_sent(4) is False and outbox.next_chunk() == b""


@given(
    frames=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=30),
    step=st.integers(min_value=1, max_value=700),
    ping_after=st.integers(min_value=0, max_value=40),
)
def test_any_write_pattern_delivers_every_frame_whole_and_a_ping_only_between_frames(frames, step, ping_after):
    outbox = Outbox(limit=1 << 20)
    for frame in frames:
        outbox.append(frame, len(frame))
    boundaries = {0}
    for frame in frames:
        boundaries.add(max(boundaries) + len(frame))
    out = bytearray()
    ping_at = None
    for writes in range(10_000):
        if writes == ping_after:
            outbox.ping = b"\x89\x00"
        before = len(out)
        chunk = outbox.next_chunk()
        if not chunk:
            break
        if ping_at is None and bytes(chunk[:2]) == b"\x89\x00" and outbox.ping == b"" and writes >= ping_after:
            ping_at = before
        taken = bytes(chunk[:step])
        out += taken
        outbox.mark_sent(len(taken))
    if ping_at is not None:
        assert ping_at in boundaries  # never inside a frame
        del out[ping_at : ping_at + 2]
    assert bytes(out) == b"".join(frames)
    assert outbox.counted == 0 and outbox.popped == outbox.pushed == len(frames)
    assert CONTROL == -1
