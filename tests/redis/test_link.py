"""redis/link.py: the backplane's one link state and its table, checked against the booleans it replaced."""

from __future__ import annotations

import itertools

import pytest

from ignitia_sync.redis.link import TRANSITIONS, LinkEvent, LinkState, transition

S, E = LinkState, LinkEvent
LOST = (E.LISTENER_LOST, E.PUBLISHER_LOST)


class OldBooleans:
    """The link as five booleans, as RedisBackplane kept it before the state machine (the oracle)."""

    def __init__(self) -> None:
        self.listening = self.publishing = self.up = self.down = self.closed = False

    def can(self, event: LinkEvent) -> bool:
        """What the old greenlets could report: "up" only for a connection that was not up."""
        return not ((event is E.LISTENER_UP and self.listening) or (event is E.PUBLISHER_UP and self.publishing))

    def apply(self, event: LinkEvent) -> None:
        listening = {E.LISTENER_UP: True, E.LISTENER_LOST: False}.get(event)
        publishing = {E.PUBLISHER_UP: True, E.PUBLISHER_LOST: False}.get(event)
        if listening is not None:
            self.listening = listening
        if publishing is not None:
            self.publishing = publishing
        up = self.listening and self.publishing
        if listening is False or publishing is False:
            self.down = True
        elif up:
            self.down = False
        self.up = up


@pytest.mark.parametrize("length", [1, 3, 6])
def test_every_run_the_old_booleans_allowed_reads_the_same(length):
    """up, drops, listening and publishing (and so every up/down edge: log lines, callbacks) agree."""
    events = [E.LISTENER_UP, E.LISTENER_LOST, E.PUBLISHER_UP, E.PUBLISHER_LOST]
    runs = 0
    for sequence in itertools.product(events, repeat=length):
        old, state = OldBooleans(), S.CONNECTING
        for event in sequence:
            if not old.can(event):
                break
            old.apply(event)
            state = transition(state, event)
            facts = (state.up, state.drops, state.listening, state.publishing)
            assert facts == (old.up, old.down, old.listening, old.publishing), (sequence, state)
        else:
            runs += 1
    assert runs > 0


def test_the_table_names_every_state_and_only_reachable_ones():
    assert set(TRANSITIONS) == set(S)
    seen, todo = {S.CONNECTING}, [S.CONNECTING]
    while todo:
        for target in TRANSITIONS[todo.pop()].values():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert seen == set(S)


@pytest.mark.parametrize("state", [state for state in S if state is not S.CLOSED])
def test_up_is_missing_exactly_where_that_connection_is_up_already(state):
    allowed = set(TRANSITIONS[state])
    assert {*LOST, E.CLOSE} <= allowed
    assert (E.LISTENER_UP in allowed) is not state.listening
    assert (E.PUBLISHER_UP in allowed) is not state.publishing


@pytest.mark.parametrize("state", [S.CONNECTING_LISTENING, S.UP, S.DOWN_LISTENING])
def test_an_impossible_transition_raises(state):
    with pytest.raises(RuntimeError, match=f"impossible backplane link transition: LISTENER_UP in {state.name}"):
        transition(state, E.LISTENER_UP)


def test_closed_is_the_end_and_every_state_can_close():
    assert all(transition(state, E.CLOSE) is S.CLOSED for state in S)
    assert all(transition(S.CLOSED, event) is S.CLOSED for event in E)
    assert not (S.CLOSED.up or S.CLOSED.drops or S.CLOSED.listening or S.CLOSED.publishing)


def test_only_up_is_up_and_a_failure_drops_until_both_are_back():
    assert [state for state in S if state.up] == [S.UP]
    state = S.CONNECTING
    for event in (E.LISTENER_UP, E.LISTENER_LOST):  # one failure before the link was ever up
        state = transition(state, event)
    assert state is S.DOWN and state.drops
    state = transition(state, E.LISTENER_UP)
    assert state is S.DOWN_LISTENING and state.drops  # still dropping: the publisher is not back
    assert transition(state, E.PUBLISHER_UP) is S.UP
    assert not any(state.drops for state in (S.CONNECTING, S.CONNECTING_LISTENING, S.CONNECTING_PUBLISHING))
