"""Issue 23: a user's mistake gets one line that says what to do.

A missing extra (redis-py, Flask, Django, gunicorn), ``ws.send(a_dict)``, the identity a
static token stands for, and the routes a script's ``run(app)`` serves. Missing packages are
made genuinely unimportable in a child process (``sys.modules[name] = None``: Python's import
system then refuses them, as when they are not installed).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
from websockets.sync.client import connect as websockets_connect

from ignitia_sync import AuthInfo, AuthMiddleware, Message, RateLimit, Router, SlidingWindow
from ignitia_sync.client import connect
from ignitia_sync.middleware import KeyedLimiter
from ignitia_sync.testing import TestClient
from tests.conftest import url
from tests.subprocess_server import ROOT, free_port, python
from tests.waiting import wait_for

# -- 1. a missing extra ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "hide", "says"),
    [
        ("ignitia_sync.redis", ("redis",), "ignitia_sync.redis needs redis-py: pip install 'ignitia_sync[redis]'"),
        ("ignitia_sync.redis.emitter", ("redis",),
         "ignitia_sync.redis needs redis-py: pip install 'ignitia_sync[redis]'"),
        ("ignitia_sync.flask", ("flask",), "ignitia_sync.flask needs Flask: pip install 'ignitia_sync[flask]'"),
        ("ignitia_sync.flask", ("werkzeug",), "ignitia_sync.flask needs Flask: pip install 'ignitia_sync[flask]'"),
        ("ignitia_sync.django", ("django",), "ignitia_sync.django needs Django: pip install 'ignitia_sync[django]'"),
        ("ignitia_sync.django.apps", ("django",),
         "ignitia_sync.django needs Django: pip install 'ignitia_sync[django]'"),
        ("ignitia_sync.gunicorn", ("gunicorn",),
         "ignitia_sync.gunicorn needs gunicorn and packaging: pip install 'ignitia_sync[gunicorn]'"),
        ("ignitia_sync.gunicorn", ("packaging",),
         "ignitia_sync.gunicorn needs gunicorn and packaging: pip install 'ignitia_sync[gunicorn]'"),
    ],
)
def test_a_missing_extra_is_one_line_saying_what_to_install(module, hide, says):
    result = python(f"import {module}", hide=hide)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"ModuleNotFoundError: {says}", result.stderr
    # Python's own display of one exception: no chained "During handling..." second traceback,
    # no bare "No module named", and at most the two frames of ours (the import, the helper).
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr
    assert "No module named" not in result.stderr and "during handling" not in result.stderr.lower()
    assert sum(line.startswith('  File "') and "ignitia_sync" in line for line in lines) <= 3, result.stderr


def test_the_missing_extra_error_is_a_module_not_found_error_naming_the_package():
    result = python(
        "try:\n    import ignitia_sync.redis\n"
        "except ModuleNotFoundError as exc:\n    print(exc.name, isinstance(exc, ImportError))",
        hide=("redis",),
    )
    assert result.returncode == 0 and result.stdout.split() == ["redis", "True"], result


def test_a_package_that_is_there_but_fails_on_its_own_keeps_its_own_error():
    from ignitia_sync._support.extras import needs

    with pytest.raises(ModuleNotFoundError) as info:
        with needs("ignitia_sync.redis", "redis-py", extra="redis", packages=("redis",)):
            import a_module_nobody_ships  # noqa: F401
    assert str(info.value) == "No module named 'a_module_nobody_ships'"


def test_the_cli_shows_a_missing_extra_in_one_line(tmp_path):
    # "redis_chat_app" starts with "redis": the CLI once took such an import failure for its own
    # module not being there ("no module named 'redis_chat_app'").
    (tmp_path / "redis_chat_app.py").write_text(textwrap.dedent("""\
        from ignitia_sync import Router
        from ignitia_sync.redis import RedisBackplane

        app = Router()
    """))
    code = ("import runpy\nsys.argv = ['ignitia-sync', 'redis_chat_app:app']\n"
            "runpy.run_module('ignitia_sync', run_name='__main__', alter_sys=True)")
    result = python(code, hide=("redis",), cwd=str(tmp_path))
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "ignitia-sync: importing redis_chat_app failed: ignitia_sync.redis needs redis-py: "
        "pip install 'ignitia_sync[redis]'"
    ]


# -- 2. send() of something that is not a message ------------------------------------------------


def sender(ws):
    """Try to send each kind of wrong object; tell the client what each error said."""
    for value in ({"secret": "hunter2"}, ["a", "b"], 42, None):
        try:
            ws.send(value)
        except TypeError as exc:
            ws.send_text(str(exc))
    for method in (ws.send_nowait, lambda value: ws.send_batch([value])):
        try:
            method({"secret": "hunter2"})
        except TypeError as exc:
            ws.send_text(str(exc))


JSON_HINT = "to send it as JSON use ws.send_json(...)"
TYPES_HINT = "send a str (text), bytes (binary) or a Message"


def test_sending_a_dict_says_use_send_json_and_other_objects_name_the_accepted_types():
    with TestClient(Router().websocket("/", sender)) as client:
        ws = client.connect("/")
        said = [ws.recv(timeout=5).data for _ in range(6)]
    assert said == [
        f"not a Message: dict; {JSON_HINT}",
        f"not a Message: list; {JSON_HINT}",
        f"not a Message: int; {TYPES_HINT}",
        f"not a Message: NoneType; {TYPES_HINT}",
        f"not a Message: dict; {JSON_HINT}",  # send_nowait
        f"not a Message: dict; {JSON_HINT}",  # send_batch
    ]
    assert not any("hunter2" in line for line in said)  # never the payload


def test_the_client_side_send_gives_the_same_hint(serve):
    class Name(str):
        pass

    server = serve(Router().websocket("/", lambda ws: ws.recv()))
    with TestClient(Router().websocket("/", lambda ws: ws.recv())) as client:
        test_ws = client.connect("/")
        with pytest.raises(TypeError, match=r"^not a Message: dict; to send it as JSON use ws\.send_json"):
            test_ws.send({"secret": "hunter2"})
    with connect(url(server, "/")) as ws:
        with pytest.raises(TypeError) as info:
            ws.send(("a", "tuple"))
        assert str(info.value) == f"not a Message: tuple; {JSON_HINT}"
        with pytest.raises(TypeError) as info:
            ws.send(Name("x"))
        assert str(info.value) == "not a Message: Name (a str subclass); send str(value) as text"
        ws.send(Message.text("still open"))  # the mistakes did not break the connection


# -- 3. the identity a static token stands for ---------------------------------------------------


def whoami(ws):
    info = ws.extensions.get(AuthInfo)
    ws.send_text("nobody" if info is None else info.user_id)


def test_a_static_token_is_nobody_in_particular_unless_named():
    app = (
        Router()
        .websocket("/anyone", whoami, middleware=[AuthMiddleware("s3cret")])
        .websocket("/admin", whoami, middleware=[AuthMiddleware("s3cret", user_id="admin")])
    )
    with TestClient(app) as client:
        assert client.connect("/anyone?token=s3cret").recv(timeout=5).data == "nobody"
        assert client.connect("/admin?token=s3cret").recv(timeout=5).data == "admin"


def test_a_missing_auth_info_is_a_key_error_naming_it():
    def strict(ws):
        try:
            ws.extension(AuthInfo)
        except KeyError as exc:
            ws.send_text(exc.args[0])

    with TestClient(Router().websocket("/", strict, middleware=[AuthMiddleware("s3cret")])) as client:
        assert client.connect("/?token=s3cret").recv(timeout=5).data == "no middleware attached AuthInfo to this connection"


def test_user_id_goes_with_a_static_token_only():
    with pytest.raises(TypeError, match="user_id= goes with a static token"):
        AuthMiddleware(lambda token: AuthInfo("x"), user_id="admin")


def test_a_per_user_limit_without_a_named_user_counts_per_address_not_for_everyone(serve):
    # Before: every static-token client was user "token", so all of them shared one bucket.
    limit = RateLimit(per_key=KeyedLimiter(lambda: SlidingWindow(1, 60.0)), key="user")

    def echo(ws):
        for message in ws:
            ws.send(message)

    server = serve(Router().websocket("/", echo, middleware=[AuthMiddleware("s3cret")], rate_limit=limit))
    for source in ("127.0.0.1", "127.0.0.2"):  # two client addresses: two buckets
        sock = socket.create_connection(server.address[:2], source_address=(source, 0))
        with websockets_connect(url(server, "/?token=s3cret"), sock=sock) as ws:
            ws.send("one")
            assert ws.recv(timeout=5) == "one"
            ws.send("two")
            assert ws.recv(timeout=5) == "Rate limit exceeded. Please slow down."


# -- 4. run(app) lists the routes --------------------------------------------------------------


def test_run_logs_the_routes_at_start_up(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""\
        from gevent import monkey

        monkey.patch_all()

        from ignitia_sync import Router, run

        app = Router().websocket("/echo", lambda ws: None).websocket("/chat/:room", lambda ws, room: None)
        run(app)
    """))
    port = free_port()
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:
        process = subprocess.Popen([sys.executable, str(script), "--port", str(port)], cwd=str(tmp_path),
                                   env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL, stderr=err,
                                   text=True)
    try:
        wait_for(lambda: "WebSocket routes" in stderr.read_text() or process.poll() is not None,
                 "the routes line", timeout=30)
    finally:
        process.terminate()
        process.wait(20)
    lines = [line for line in stderr.read_text().splitlines() if "WebSocket routes" in line]
    assert len(lines) == 1 and lines[0].endswith("INFO ignitia_sync.server: WebSocket routes: /echo, /chat/:room"), \
        stderr.read_text()


@pytest.mark.parametrize("answer", [None, False, 0, ""])
def test_a_verify_that_answers_false_refuses_the_token_instead_of_letting_it_in(answer):
    """verify(token) written as a boolean check (``return token == SECRET``) must fail closed."""
    from ignitia_sync.middleware import AuthMiddleware, Response
    from ignitia_sync.sansio.http import Headers, Request

    request = Request("GET", "/", {}, Headers([("Authorization", "Bearer wrong")]))
    refused = AuthMiddleware(lambda token: answer)(request)
    assert isinstance(refused, Response) and refused.status == 401


def test_broadcasting_a_dict_or_a_str_says_which_message_to_build():
    from ignitia_sync.broadcast.registry import Registry

    registry = Registry()
    with pytest.raises(TypeError, match=r"^only Text and Binary messages are broadcast, not dict; use Message\.json\(value\)$"):
        registry.broadcast({"text": "hi"})
    with pytest.raises(TypeError, match=r"^only Text and Binary messages are sent, not str; use Message\.text\(value\)$"):
        registry.send_to("alice", "hi")
