"""The sequencer: a room's messages heard in any order and any number of times, delivered once in order."""

from __future__ import annotations

from ignitia_sync.broadcast.positions import Position
from ignitia_sync.broadcast.sequencer import Sequencer


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
