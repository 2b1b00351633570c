"""The sequencer: a room's messages heard in any order and any number of times, delivered once in order."""

from __future__ import annotations

from ignitia_sync.broadcast.positions import Position
from ignitia_sync.broadcast.sequencer import NEW_EPOCH, Sequencer


def offsets(offered):
    return [position.offset for position, _ in offered.ready]


def test_the_first_message_heard_starts_the_room_and_duplicates_are_dropped():
    sequencer = Sequencer()
    assert offsets(sequencer.offer("r", Position("e", 7), "a")) == [7]
    assert offsets(sequencer.offer("r", Position("e", 7), "a again")) == []
    assert offsets(sequencer.offer("r", Position("e", 3), "older")) == []
    assert offsets(sequencer.offer("r", Position("e", 8), "b")) == [8]
    assert sequencer.last("r") == Position("e", 8)


def test_early_messages_wait_and_are_released_in_order_once_the_gap_fills():
    sequencer = Sequencer()
    sequencer.start("r", Position("e", 0))
    assert offsets(sequencer.offer("r", Position("e", 3), "c")) == []
    assert offsets(sequencer.offer("r", Position("e", 3), "c again")) == []  # waits once
    assert offsets(sequencer.offer("r", Position("e", 5), "e")) == []
    assert sequencer.missing("r") == (1, 2)
    assert offsets(sequencer.offer("r", Position("e", 1), "a")) == [1]
    assert sequencer.missing("r") == (2, 2)
    assert offsets(sequencer.offer("r", Position("e", 2), "b")) == [2, 3]
    assert sequencer.missing("r") == (4, 4)
    assert [item for _, item in sequencer.skip_to("r", 4)] == ["e"]  # 4 is lost: 5 goes on
    assert sequencer.missing("r") is None and sequencer.last("r") == Position("e", 5)


def test_another_epoch_starts_from_its_offset_one_and_says_so():
    sequencer = Sequencer()
    sequencer.start("r", Position("old", 40))
    offered = sequencer.offer("r", Position("new", 2), "second of the new epoch")
    assert offered.new_epoch == Position("new", 0) and offsets(offered) == []
    assert sequencer.missing("r") == (1, 1)  # its first message may still come (or be read)
    assert offsets(sequencer.offer("r", Position("new", 1), "first")) == [1, 2]


def test_start_moves_forward_only_and_drops_what_it_passes():
    sequencer = Sequencer()
    sequencer.start("r", Position("e", 5))
    sequencer.offer("r", Position("e", 9), "i")
    sequencer.start("r", Position("e", 3))  # backwards: ignored
    assert sequencer.last("r") == Position("e", 5)
    sequencer.start("r", Position("e", 9))
    assert sequencer.missing("r") is None and sequencer.last("r") == Position("e", 9)
    sequencer.forget("r")
    assert sequencer.last("r") is None


def test_what_may_wait_is_bounded():
    sequencer = Sequencer(max_waiting=2)
    sequencer.start("r", Position("e", 0))
    for offset in (3, 4, 5):
        sequencer.offer("r", Position("e", offset), offset)
    assert [item for _, item in sequencer.skip_to("r", 2)] == [3, 4]  # 5 did not fit: it is read again


def test_a_late_message_of_an_old_epoch_does_not_leave_the_room_deaf_to_the_logs_epoch():
    sequencer = Sequencer()
    sequencer.hold("r")
    sequencer.offer("r", Position("A", 7), "late, of the old epoch")  # held
    sequencer.start("r", Position("B", 0))  # the log is in B: A:7 is replayed (A is taken as new)
    sequencer.notice("r", Position("B", 0))
    assert offsets(sequencer.offer("r", Position("B", 1), "b1")) == []  # B was left for A: ignored
    sequencer.start("r", Position("B", 0))  # the fill: the log is in B, and B is the room's again
    assert offsets(sequencer.offer("r", Position("B", 2), "b2")) == []  # waits for 1
    assert sequencer.missing("r") == (1, 1)
    assert offsets(sequencer.offer("r", Position("B", 1), "b1, read from the log")) == [1, 2]
    assert sequencer.last("r") == Position("B", 2)


def test_start_goes_back_to_a_left_epoch_when_the_log_is_in_it():
    sequencer = Sequencer()
    sequencer.start("r", Position("A", 3))
    assert sequencer.offer("r", Position("B", 1), "b1").new_epoch == Position("B", 0)  # A is left
    assert offsets(sequencer.offer("r", Position("A", 4), "late a4")) == []  # ignored
    sequencer.start("r", Position("A", 3))  # the log says A: authoritative
    assert offsets(sequencer.offer("r", Position("A", 4), "a4")) == [4]
    assert offsets(sequencer.offer("r", Position("B", 2), "late b2")) == []  # B is left now
    assert sequencer.last("r") == Position("A", 4)


def test_a_late_duplicate_of_the_logs_epoch_does_not_drop_what_was_held_after_its_first():
    sequencer = Sequencer()
    sequencer.hold("r")
    sequencer.offer("r", Position("B", 1), "b1")
    sequencer.notice("r", Position("C", 0))
    sequencer.offer("r", Position("C", 1), "c1")
    sequencer.offer("r", Position("B", 1), "b1 again (a late publish answer)")
    assert sequencer.start("r", Position("B", 1)) == [(Position("C", 0), NEW_EPOCH), (Position("C", 1), "c1")]
    assert sequencer.last("r") == Position("C", 1)


def test_an_epoch_held_before_the_logs_is_older_and_a_late_message_of_it_is_ignored():
    sequencer = Sequencer()
    sequencer.hold("r")
    sequencer.offer("r", Position("A", 5), "a5")
    sequencer.offer("r", Position("B", 1), "b1")
    assert [item for _, item in sequencer.start("r", Position("B", 0))] == ["b1"]  # A:5 is older: dropped
    late = sequencer.offer("r", Position("A", 6), "a6, late")
    assert late.new_epoch is None and offsets(late) == []  # not a switch back to A
    assert sequencer.notice("r", Position("A", 0)).new_epoch is None
    assert offsets(sequencer.offer("r", Position("B", 2), "b2")) == [2]


def test_an_epoch_started_after_the_logs_read_and_heard_before_a_late_answer_is_kept():
    """The log read says B:3; a new epoch C began since (its notice and C:1 held), then the late
    answer of this process's own B:3: C is newer than the read, not older, and the room goes on in it."""
    sequencer = Sequencer()
    sequencer.hold("r")
    sequencer.notice("r", Position("C", 0))
    sequencer.offer("r", Position("C", 1), "c1")
    sequencer.offer("r", Position("B", 3), "b3, a late publish answer")
    assert sequencer.start("r", Position("B", 3)) == [(Position("C", 0), NEW_EPOCH), (Position("C", 1), "c1")]
    assert offsets(sequencer.offer("r", Position("C", 2), "c2")) == [2]  # not deaf to C
