"""The outbox at its edges: empty slots, the WRITE_CHUNK boundary, cuts of one written byte."""

from __future__ import annotations

from ignitia_sync.connection.outbox import CONTROL, WRITE_CHUNK, Outbox


def test_a_fresh_or_cleared_outbox_is_empty_with_empty_slots():
    outbox = Outbox(limit=10)
    assert (len(outbox), outbox.ping, outbox.pong, outbox.next_chunk()) == (0, b"", b"", b"")
    outbox.append(b"x", 1)
    outbox.clear()
    assert (len(outbox), outbox.counted, outbox.mark_sent(1)) == (0, 0, False)


def test_a_control_slot_is_emptied_once_its_frame_is_queued():
    outbox = Outbox(limit=10)
    outbox.pong = b"PONG"
    outbox.ping = b"PING"
    assert bytes(outbox.next_chunk()) == b"PONGPING"
    assert (outbox.ping, outbox.pong, list(outbox.queue or ())) == (
        b"",
        b"",
        [(b"PONG", CONTROL), (b"PING", CONTROL)],
    )
    assert outbox.mark_sent(8) is False  # control frames are no data frames
    assert (outbox.next_chunk(), outbox.popped, len(outbox)) == (b"", 0, 0)


def test_two_small_frames_leave_in_one_chunk():
    outbox = Outbox(limit=10)
    outbox.append(b"ab", 2)
    outbox.append(b"cd", 2)
    assert outbox.next_chunk() == b"abcd"


def test_a_lone_or_large_head_frame_is_written_without_a_copy():
    outbox = Outbox(limit=1 << 20)
    lone = b"x" * 10
    outbox.append(lone, 10)
    assert outbox.next_chunk() is lone
    outbox.mark_sent(10)
    big = b"y" * WRITE_CHUNK  # exactly WRITE_CHUNK: already a full chunk
    outbox.append(big, WRITE_CHUNK)
    outbox.append(b"z", 1)
    assert outbox.next_chunk() is big


def test_small_frames_are_joined_up_to_write_chunk_and_no_further():
    outbox = Outbox(limit=1 << 20)
    outbox.append(b"a" * (WRITE_CHUNK - 1), 0)
    outbox.append(b"b", 0)  # reaches WRITE_CHUNK exactly: the chunk ends here
    outbox.append(b"c", 0)
    assert outbox.next_chunk() == b"a" * (WRITE_CHUNK - 1) + b"b"
    assert outbox.mark_sent(WRITE_CHUNK) is True and outbox.next_chunk() == b"c"


def test_a_cut_keeps_a_head_frame_of_which_one_byte_is_out():
    outbox = Outbox(limit=100)
    outbox.append(b"aaaa", 4)
    outbox.append(b"bbbb", 4)
    outbox.mark_sent(1)
    outbox.cut()
    assert (list(outbox.queue or ()), outbox.counted, outbox.pushed) == ([(b"aaaa", 4)], 4, 1)
    assert bytes(outbox.next_chunk()) == b"aaa"


def test_a_cut_keeps_what_a_writer_has_in_flight_and_counts_it():
    outbox = Outbox(limit=100)
    outbox.append(b"a", 1)
    outbox.append(b"bb", 2)
    outbox.append(b"cc", 2)
    outbox.inflight = 2  # a writer greenlet is writing "a" and the first byte of "bb"
    outbox.cut()
    assert (list(outbox.queue or ()), outbox.counted, outbox.pushed) == ([(b"a", 1), (b"bb", 2)], 3, 2)
