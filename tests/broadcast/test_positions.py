"""Room logs of one process: positions, bounded history, and what a member recovers (no I/O)."""

from __future__ import annotations

import pytest

from ignitia_sync.broadcast.positions import History, Position, Recovery, RoomLogs


def epochs(*names: str):
    """An epoch maker that hands out ``names`` in order."""
    given = iter(names)
    return lambda: next(given)


def offsets(found):
    return [(position.offset, message) for position, message in found]


def test_offsets_count_each_room_from_one_in_its_own_epoch():
    logs = RoomLogs(History(), epoch=epochs("a", "b"))
    assert logs.append("one", "x", now=0) == Position("a", 1)
    assert logs.append("two", "y", now=0) == Position("b", 1)
    assert logs.append("one", "z", now=0) == Position("a", 2)
    assert logs.position("one", now=0) == Position("a", 2)


def test_a_member_that_missed_messages_gets_exactly_those_after_its_position():
    logs = RoomLogs(History(max_messages=10), epoch=epochs("e"))
    for n in range(1, 6):
        logs.append("r", f"m{n}", now=0)
    recovery, found = logs.since("r", Position("e", 2), now=1)
    assert recovery == Recovery(True, None, Position("e", 5), 3)
    assert offsets(found) == [(3, "m3"), (4, "m4"), (5, "m5")]
    assert logs.since("r", Position("e", 5), now=1) == (Recovery(True, None, Position("e", 5)), [])
    assert logs.since("r", None, now=1) == (Recovery(True, None, Position("e", 5)), [])


def test_a_position_the_count_bound_trimmed_past_is_too_old():
    logs = RoomLogs(History(max_messages=3), epoch=epochs("e"))
    for n in range(1, 7):
        logs.append("r", n, now=0)
    assert logs.since("r", Position("e", 2), now=0)[0].reason == "too old"  # 3 is gone: a gap
    recovery, found = logs.since("r", Position("e", 3), now=0)  # 4, 5, 6 are all kept
    assert recovery.complete and offsets(found) == [(4, 4), (5, 5), (6, 6)]


def test_messages_older_than_max_age_are_trimmed():
    logs = RoomLogs(History(max_messages=100, max_age=10, meta_ttl=100), epoch=epochs("e"))
    logs.append("r", "old", now=0)
    logs.append("r", "new", now=8)
    assert logs.since("r", Position("e", 0), now=11)[0].reason == "too old"  # "old" is 11 s old
    recovery, found = logs.since("r", Position("e", 1), now=11)
    assert recovery.complete and offsets(found) == [(2, "new")]
    assert offsets(logs.recent("r", limit=5, now=11)) == [(2, "new")]


def test_a_room_idle_past_meta_ttl_starts_a_new_epoch_and_old_positions_say_so():
    logs = RoomLogs(History(max_age=10, meta_ttl=60), epoch=epochs("first", "second", "third"))
    logs.append("r", "m", now=0)
    assert logs.since("r", Position("first", 1), now=59)[0].complete  # within meta_ttl: nothing missed
    assert logs.append("other", "m", now=61) == Position("second", 1)  # "r" is forgotten on the way
    recovery, _ = logs.since("r", Position("first", 1), now=62)
    assert (recovery.complete, recovery.reason) == (False, "epoch changed")
    assert recovery.position == Position("third", 0)


def test_a_position_from_another_epoch_or_ahead_of_the_log_is_not_recovered():
    logs = RoomLogs(History(), epoch=epochs("now"))
    logs.append("r", "m", now=0)
    assert logs.since("r", Position("before", 1), now=0)[0].reason == "epoch changed"
    assert logs.since("r", Position("now", 7), now=0)[0].reason == "epoch changed"  # the log went back


def test_without_history_positions_still_count_and_a_gap_is_announced():
    logs = RoomLogs(History(max_messages=0), epoch=epochs("e"))
    logs.append("r", "m1", now=0)
    logs.append("r", "m2", now=0)
    assert logs.since("r", Position("e", 1), now=0)[0].reason == "no history"
    assert logs.since("r", Position("e", 2), now=0)[0].complete  # nothing missed: nothing needed
    assert logs.recent("r", limit=10, now=0) == []


def test_a_longer_gap_than_the_limit_is_too_old_rather_than_a_flood():
    logs = RoomLogs(History(), epoch=epochs("e"))
    for n in range(10):
        logs.append("r", n, now=0)
    assert logs.since("r", Position("e", 0), now=0, limit=5)[0].reason == "too old"
    assert logs.since("r", Position("e", 5), now=0, limit=5)[0].replayed == 5


@pytest.mark.parametrize("value", [None, [], {"epoch": "", "offset": 1}, {"epoch": "e" * 33, "offset": 1},
                                   {"epoch": "e", "offset": True}, {"epoch": "e", "offset": 1.0},
                                   {"epoch": "e", "offset": -1}, {"epoch": 7, "offset": 1}, {"offset": 1}])
def test_a_malformed_position_from_a_peer_is_refused(value):
    with pytest.raises(ValueError, match="a position is"):
        Position.from_json(value)


@pytest.mark.parametrize("kwargs", [{"max_messages": -1}, {"max_messages": 1.5}, {"max_bytes": -1}, {"max_total_bytes": 1.0}, {"max_age": 0},
                                    {"max_age": 100, "meta_ttl": 50}])
def test_history_bounds_are_checked(kwargs):
    with pytest.raises(ValueError):
        History(**kwargs)


def test_the_size_bound_drops_the_oldest_messages_first():
    logs = RoomLogs(History(max_messages=100, max_bytes=10), epoch=epochs("e"))
    for text in ("aaaa", "bbbb", "cccc"):
        logs.append("r", text, size=len(text), now=0)
    assert offsets(logs.recent("r", limit=10, now=0)) == [(2, "bbbb"), (3, "cccc")]  # 12 > 10: "aaaa" went
    assert logs.since("r", Position("e", 0), now=0)[0].reason == "too old"
    logs.append("r", "x" * 20, size=20, now=0)  # larger than the bound alone: not kept at all
    assert logs.recent("r", limit=10, now=0) == []
    assert logs.position("r", now=0).offset == 4  # but it has its position


def test_all_rooms_together_stay_within_max_total_bytes_the_least_recent_room_trimmed_first():
    logs = RoomLogs(History(max_bytes=100, max_total_bytes=10), epoch=epochs("a", "b"))
    logs.append("old", "1234", size=4, now=0)
    logs.append("old", "5678", size=4, now=1)
    logs.append("new", "abcd", size=4, now=2)  # 12 > 10: "old" loses "1234"
    assert offsets(logs.recent("old", limit=5, now=2)) == [(2, "5678")]
    assert offsets(logs.recent("new", limit=5, now=2)) == [(1, "abcd")]
    assert logs.size == 8
