"""``Server`` and the OS threads: stop() from any thread, ``with`` on a started server.

tests/hosting/test_server.py stops a server started with ``start_in_thread()`` from the test's
thread; here the other way round (served in this thread's hub, stopped from another one),
a hub that has gone, and ``__enter__`` on a server that is already running.
"""

from __future__ import annotations

import threading

import gevent
from websockets.sync.client import connect

from ignitia_sync import Server
from ignitia_sync.connection.threads import real_get_ident
from tests.apps import ECHO


def test_a_server_served_in_this_thread_is_stopped_from_another_one():
    server = Server(ECHO, ("127.0.0.1", 0), handle_signals=False, shutdown_grace=0.1)
    server.start()
    host, port = server.address
    codes: list[int | None] = []
    stopped_from: list[int] = []

    def client_then_stop() -> None:
        with connect(f"ws://{host}:{port}/echo", open_timeout=5) as client:
            client.send("x")
            assert client.recv(timeout=5) == "x"
            stopped_from.append(real_get_ident())
            server.stop(timeout=5)  # blocks this thread until the server's hub has stopped it
            try:
                client.recv(timeout=5)
            except Exception:
                pass
            codes.append(client.protocol.close_rcvd.code if client.protocol.close_rcvd else None)

    thread = threading.Thread(target=client_then_stop)
    thread.start()
    server.serve_forever()  # returns once the other thread's stop() has run here
    thread.join(10)
    assert not thread.is_alive()
    assert stopped_from and stopped_from[0] != real_get_ident()
    assert codes == [1001]
    assert server._stream is not None and server._stream.closed
    server.stop()  # idempotent, here too


def test_stop_from_another_thread_returns_when_the_servers_hub_is_gone(caplog):
    server = Server(ECHO, ("127.0.0.1", 0), handle_signals=False)

    def start_then_vanish() -> None:
        server.start(listen=False)
        gevent.get_hub().destroy(destroy_loop=True)  # the thread ends without stopping it

    thread = threading.Thread(target=start_then_vanish)
    thread.start()
    thread.join(10)
    server.stop(timeout=60)  # returns at once: the wait for a stop that cannot run would be 60 s and more
    assert any("hub is gone" in record.getMessage() for record in caplog.records)


def test_with_on_a_started_server_does_not_start_it_again():
    server = Server(ECHO, ("127.0.0.1", 0), handle_signals=False)
    server.start_in_thread()
    thread = server._thread
    assert thread is not None and thread.is_alive()
    with server as same:
        assert same is server and server._thread is thread
        host, port = server.address
        with connect(f"ws://{host}:{port}/echo", open_timeout=5) as client:
            client.send("again")
            assert client.recv(timeout=5) == "again"
    thread.join(5)
    assert not thread.is_alive()  # __exit__ stopped it, from this thread


def test_with_on_a_new_server_serves_from_a_thread_of_its_own():
    with Server(ECHO, ("127.0.0.1", 0), handle_signals=False) as server:
        assert server._thread is not None and server._thread.is_alive()
        assert server._hub is not None and not server._hub.owns()
        assert server.registry._hub is not None and server.registry._hub.thread == server._hub.thread
    assert not server._thread.is_alive()
