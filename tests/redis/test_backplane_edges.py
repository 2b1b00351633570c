"""Edges of redis/backplane.py's rooms with positions, against a real redis-server: a join right after
the room's last member left, drops that keep their place in the room's order, a publish(timeout)
told of its drop at once, an oversized message refused, rooms left while Redis is away, and a
publisher that survives what is not Redis's fault.

The backplanes run in the test's own hub (``wait_for`` sleeps through gevent, so their greenlets
run); what several calls in a row do without a switch in between is one batch of the publisher.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest

from ignitia_sync import Message
from ignitia_sync.broadcast.positions import History, Position
from ignitia_sync.broadcast.registry import Registry
from ignitia_sync.exceptions import MessageDropped
from ignitia_sync.redis import RedisBackplane
from tests.redis.delaying_proxy import DelayingProxy
from tests.waiting import wait_for

Heard = list[tuple[str, Position, "str | None"]]


class Made:
    """Backplanes attached in this hub, each recording what it hears of rooms with positions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[RedisBackplane] = []

    def __call__(self, url: str | None = None, *, on_positioned: Callable[..., Any] | None = None,
                 **options: Any) -> tuple[RedisBackplane, Heard, list[str]]:
        options = {"reconnect_initial": 0.05, "reconnect_max": 0.2, **options}
        backplane = RedisBackplane(url or self.url, **options)
        backplane.attach(lambda message, room: None, lambda id, message: None)
        heard: Heard = []
        relistened: list[str] = []

        def record(room: str, position: Position, message: Message | None, token: Any) -> None:
            heard.append((room, position, None if message is None else str(message.data)))
            if on_positioned is not None:
                on_positioned(room, position, message, token)

        backplane.attach_positions(record, relistened.append)
        wait_for(lambda: backplane.stats()["up"], "the backplane's link to Redis")
        self.made.append(backplane)
        return backplane, heard, relistened


@pytest.fixture
def made(redis_server: Any) -> Iterator[Made]:
    factory = Made(redis_server.url)
    yield factory
    for backplane in factory.made:
        backplane.close(timeout=1)


def texts(heard: Heard) -> list[str | None]:
    return [text for _, _, text in heard]


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "ignitia_sync.redis"]


# -- 1: a join right after the room's last member left -----------------------------------------------

def test_a_join_while_the_rooms_unsubscribe_is_on_its_way_waits_for_the_fresh_subscription(redis_server, made):
    """The room's last member leaves (UNSUBSCRIBE sent) and a new one joins before Redis answered
    it: listen_now must wait for the new SUBSCRIBE's confirmation, or the broadcasts Redis
    publishes between the two commands are lost for a join that already returned."""
    proxy = DelayingProxy(redis_server.port, delay=0.3)  # each (UN)SUBSCRIBE reaches Redis 0.3 s late
    try:
        joiner, heard, _ = made(proxy.url)
        publisher, answered, _ = made()
        joiner.joined("r")
        assert joiner.listen_now("r", 10)
        before = proxy.delayed
        joiner.left("r")
        wait_for(lambda: proxy.delayed == before + 1, "the UNSUBSCRIBE held back on its way to Redis")
        joiner.joined("r")
        assert joiner.listen_now("r", 10)
        # From now on every message of the room must be heard. Publish one at a time until one
        # published after the fresh SUBSCRIBE went out (so after the UNSUBSCRIBE) has been heard.
        published: list[str] = []
        late: list[str] = []  # published once both commands were on their way
        while not any(text in late for text in texts(heard)):
            assert len(published) < 5000, "the room was never heard again"
            text = f"m{len(published)}"
            if proxy.delayed >= before + 2:
                late.append(text)
            publisher.publish_positioned(Message.text(text), "r", History())
            published.append(text)
            wait_for(lambda: published[-1] in texts(answered), "Redis to take it")  # one at a time
        wait_for(lambda: published[-1] in texts(heard), "the last one heard")
        assert [text for text in published if text not in texts(heard)] == []  # none lost after the join
    finally:
        proxy.close()  # its threads and sockets end with the test


# -- 4: a drop keeps its place in the room's order -----------------------------------------------------

def test_a_message_dropped_by_a_full_queue_starts_the_new_epoch_after_the_rooms_older_queued_messages(made):
    observer, heard, _ = made()
    observer.joined("r")
    assert observer.listen_now("r", 10)
    sender, _, _ = made(max_pending=2)
    sender.publish_positioned(Message.text("m0"), "r", History())
    wait_for(lambda: "m0" in texts(heard), "m0 heard")
    first = heard[0][1]
    for text in ("m1", "m2", "m3"):  # one batch: m1 and m2 fill the queue, m3 is dropped
        sender.publish_positioned(Message.text(text), "r", History())
    assert sender.stats()["dropped"] == 1
    wait_for(lambda: len(heard) == 4, "m1, m2 and the new epoch's notice")
    sender.publish_positioned(Message.text("m4"), "r", History())
    wait_for(lambda: len(heard) == 5, "m4")
    (_, one, t1), (_, two, t2), (_, notice, t3), (_, four, t4) = heard[1:]
    assert (t1, t2, t3, t4) == ("m1", "m2", None, "m4")
    assert (one, two) == (Position(first.epoch, 2), Position(first.epoch, 3))  # queued before the drop
    assert notice.epoch != first.epoch and notice.offset == 0  # the gap, after them
    assert four == Position(notice.epoch, 1)


# -- 5: publish(timeout) raises at once for a dropped message -------------------------------------------

def test_publish_with_a_timeout_raises_message_dropped_at_once_when_the_queue_drops_it(made):
    backplane, _, _ = made(max_pending=1)
    registry = Registry(backplane)
    registry.attach()
    registry.broadcast(Message.text("fills the queue"), room="news")  # no switch: the publisher waits
    with pytest.raises(MessageDropped, match="1 messages already wait to be published") as raised:
        registry.publish(Message.text("dropped"), room="news", timeout=10)  # not a TimeoutError after 10 s
    assert raised.value.reason == "1 messages already wait to be published"
    wait_for(lambda: backplane.stats()["published"] == 1, "the queued one published")
    assert registry.publish(Message.text("after"), room="news", timeout=10).offset == 1  # the drop's new epoch


def test_publish_with_a_timeout_raises_message_dropped_when_its_message_waited_past_max_pending_age(
        redis_server, made):
    backplane, _, _ = made(max_pending_age=0.2, publish_timeout=0.5)
    registry = Registry(backplane)
    registry.attach()
    redis_server.kill()
    wait_for(lambda: not backplane.stats()["up"], "the link down")
    answers: list[Any] = []

    def waits() -> None:
        try:
            answers.append(registry.publish(Message.text("too late"), room="news", timeout=30))
        except Exception as exc:
            answers.append(exc)

    waiting = gevent.spawn(waits)
    wait_for(lambda: backplane.stats()["pending"] == 1, "the message kept while Redis is away")
    kept_at = time.monotonic()
    wait_for(lambda: time.monotonic() - kept_at > 0.3, "the message older than max_pending_age")
    redis_server.start()  # back, past max_pending_age: dropped when the publisher takes it
    waiting.join(20)
    assert len(answers) == 1 and isinstance(answers[0], MessageDropped), answers
    assert "max_pending_age 0.2" in answers[0].reason


# -- 6: an oversized message to a positioned room is refused to its caller -----------------------------

def test_an_oversized_message_to_a_room_with_positions_is_refused_with_no_epoch_change(redis_server, made):
    observer, heard, _ = made()
    observer.joined("r")
    assert observer.listen_now("r", 10)
    sender, _, _ = made(max_message_size=1000)
    sender.publish_positioned(Message.text("y" * 1000), "r", History())
    wait_for(lambda: len(heard) == 1, "the first one")
    epoch = heard[0][1].epoch
    with pytest.raises(ValueError, match=r"^a message of 1001 bytes is over the backplane's max_message_size "
                                         r"\(1000 bytes\)$"):
        sender.publish_positioned(Message.text("y" * 1001), "r", History())
    sender.publish_positioned(Message.text("after"), "r", History())
    wait_for(lambda: len(heard) == 2, "the next one")
    assert heard[1][1:] == (Position(epoch, 2), "after")  # same epoch, no notice, nothing in between
    assert sender.stats()["dropped"] == 0
    assert redis_server.client().hget("{ignitia:room:r}:m", "e").decode() == epoch


# -- 8: rooms left while Redis is away are forgotten -----------------------------------------------------

def test_a_room_left_while_redis_is_away_and_joined_again_later_is_not_a_return(redis_server, made):
    backplane, _, relistened = made()
    backplane.joined("r")
    assert backplane.listen_now("r", 10)
    redis_server.kill()
    wait_for(lambda: not backplane.stats()["up"], "the link down")
    backplane.left("r")  # its last member left during the outage
    redis_server.start()
    wait_for(lambda: backplane.stats()["up"], "the link back")
    backplane.joined("r")  # a new first member: a first subscription, nothing to catch up
    assert backplane.listen_now("r", 10)
    backplane.joined("kept")
    assert backplane.listen_now("kept", 10)  # confirmed after "r": any return of "r" was told by now
    assert relistened == []


def test_a_room_left_and_joined_again_at_once_still_catches_up_after_an_outage(redis_server, made):
    """No unsubscribe was sent (the listener never ran between): the room stays one that returns."""
    backplane, _, relistened = made()
    backplane.joined("r")
    assert backplane.listen_now("r", 10)
    backplane.left("r")  # the last member leaves and a new one joins, in one go
    backplane.joined("r")
    assert backplane.listen_now("r", 10)
    redis_server.kill()
    wait_for(lambda: not backplane.stats()["up"], "the link down")
    redis_server.start()
    wait_for(lambda: relistened == ["r"], "the room's return told: its members catch up from the log")


# -- 11: what is not Redis's fault does not stop the publisher --------------------------------------------

@pytest.mark.expect_errors  # the callback's traceback is logged
def test_a_callback_that_raises_on_a_batchs_answer_neither_stops_the_publisher_nor_loses_the_rest(made):
    downs: list[object] = []

    def raises(*args: Any) -> None:
        raise RuntimeError("a bug in the application's callback")

    backplane, heard, _ = made(on_positioned=raises, on_backplane_down=downs.append)
    acks: list[Any] = []
    backplane.publish_positioned(Message.text("one"), "r", History())  # one batch with the send_to below
    backplane.send_to_acked("nobody", Message.text("x"), acks.append)
    wait_for(lambda: acks == [False], "the send_to's answer, after the failed callback")
    assert texts(heard) == ["one"]
    stats = backplane.stats()
    assert stats["up"] and stats["reconnects"] == 0 and downs == []


def test_a_batch_that_fails_on_something_not_redis_is_counted_logged_and_its_waiters_told(made, caplog):
    downs: list[object] = []
    backplane, heard, _ = made(on_backplane_down=downs.append)

    class Waiting:  # what a publish(timeout) gives its message (broadcast/ordered_rooms.py's _Acked)
        def __init__(self) -> None:
            self.answers: list[Any] = []
            self.ack = self.answers.append

    waiting = Waiting()
    acks: list[Any] = []
    # One batch: a room whose name cannot be encoded (no registry would pass it) breaks the batch.
    backplane.publish_positioned(Message.text("secret payload"), "\ud800", History(), waiting)
    backplane.send_to_acked("nobody", Message.text("x"), acks.append)
    wait_for(lambda: acks and waiting.answers, "both waiting callers told")
    # only the message that broke is dropped: the rest of its batch goes (the send_to is answered)
    assert acks == [False] and isinstance(waiting.answers[0], MessageDropped)
    assert waiting.answers[0].reason == "the publisher failed on it (UnicodeEncodeError)"
    assert backplane.stats()["dropped"] == 1
    said = [line for line in lines(caplog) if "dropped" in line]
    assert said == ["backplane: dropped 1 message(s) and 1 new epoch(s) the publisher failed on (UnicodeEncodeError, "
                    "room(s) '\\ud800'); the rest of the batch goes on (1 dropped so far)"]
    assert not any("secret payload" in line for line in lines(caplog))
    backplane.publish_positioned(Message.text("after"), "r", History())  # the publisher goes on, link up
    wait_for(lambda: "after" in texts(heard), "the next message published")
    assert backplane.stats()["reconnects"] == 0 and downs == []
    assert backplane._tokens == {}  # nothing kept for messages never heard back


def test_a_room_whose_commands_cannot_be_built_loses_only_its_own_message_not_the_other_rooms(made, caplog):
    """One message to a room whose name is not UTF-8, then 599 to "r", in one go (three batches):
    only the bad one is dropped; every message to "r" is heard once, in order, in one epoch (else
    a new epoch would announce the gap); the bad room's new epoch is never asked again."""
    observer, heard, _ = made()
    observer.joined("r")
    assert observer.listen_now("r", 10)
    sender, _, _ = made()
    told: list[Any] = []

    class Waiting:  # what a publish(timeout) gives its message (broadcast/ordered_rooms.py's _Acked)
        ack = told.append

    sender.publish_positioned(Message.text("secret payload"), "\ud800", History(), Waiting())
    published = [f"m{k}" for k in range(599)]
    for text in published:
        sender.publish_positioned(Message.text(text), "r", History())
    wait_for(lambda: sender.stats()["pending"] == 0 and sender.stats()["published"] + sender.stats()["dropped"] >= 600,
             "every message published or dropped")
    sender.publish_positioned(Message.text("after"), "r", History())
    published.append("after")
    wait_for(lambda: "after" in texts(heard), "the last one heard")
    assert len(told) == 1 and isinstance(told[0], MessageDropped)
    assert sender.stats()["dropped"] == 1
    in_r = [(position, text) for room, position, text in heard if room == "r"]
    assert [text for _, text in in_r] == published  # each once, in order, no notice: nothing lost
    assert [position.offset for position, _ in in_r] == list(range(1, 601))
    assert len({position.epoch for position, _ in in_r}) == 1
    assert not any("secret payload" in line for line in lines(caplog))
    assert sender._new_epochs == {}  # the bad room's new epoch is not asked again and again


def test_max_pending_age_must_stay_under_the_hour_redis_keeps_what_was_applied():
    with pytest.raises(ValueError, match=r"^max_pending_age must be under 3600 s \(how long Redis keeps what each "
                                         r"process applied\), not 3600$"):
        RedisBackplane(max_pending_age=3600)
    assert RedisBackplane(max_pending_age=3599).max_pending_age == 3599


def test_presence_of_a_user_id_that_is_not_utf8_is_refused_and_the_publisher_goes_on(made, caplog):
    """Not through the registry (it checks ids): straight to the backplane, which must not loop on it."""
    observer, heard, _ = made()
    observer.joined("r")
    assert observer.listen_now("r", 10)
    backplane, _, _ = made()
    backplane.joined("r")
    assert backplane.listen_now("r", 10)
    backplane.presence_changed("r", "\ud800", 1)
    backplane.publish_positioned(Message.text("after"), "r", History())
    wait_for(lambda: texts(heard) == ["after"], "the message after it")
    assert backplane.stats()["dropped"] == 0
    assert any("presence of room 'r'" in line or "presence of room r" in line for line in lines(caplog))


def test_an_id_that_is_not_utf8_is_refused_to_the_caller_and_the_publisher_goes_on(made):
    """Not through the registry (it checks ids): straight to the backplane, which must not loop on it."""
    observer, heard, _ = made()
    observer.joined("r")
    assert observer.listen_now("r", 10)
    backplane, _, _ = made()
    with pytest.raises(UnicodeEncodeError):
        backplane.identified("\ud800")
    with pytest.raises(UnicodeEncodeError):
        backplane.claim("\ud800")
    backplane.publish_positioned(Message.text("after"), "r", History())
    wait_for(lambda: texts(heard) == ["after"], "the message after it")
    assert backplane.stats()["dropped"] == 0
