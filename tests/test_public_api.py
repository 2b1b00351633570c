"""The public API is exactly ``ignitia_sync.__all__``; every public name is documented."""

from __future__ import annotations

import inspect

import ignitia_sync

EXPECTED = {
    "AuthInfo", "AuthMiddleware", "KeyedLimiter", "OriginCheck", "RateLimit", "Response",
    "SlidingWindow", "TokenBucket", "Backplane", "BatchHandler", "CloseFrame", "LocalBackplane", "Registry", "ConnectionClosed",
    "ConnectionSettings", "HandshakeError", "Handler", "Headers",
    "IgnitiaError", "InvalidHandshake", "Message", "MessageDecodeError", "MessageDropped", "MessageHandler", "ProtocolError",
    "Request",
    "Route", "Router", "Server", "ServerSettings", "WebSocketConnection", "__version__", "native_speedups", "run",
    "websocket_batch_handler", "websocket_handler", "websocket_message_handler",
}


def test_all_is_the_public_api():
    assert set(ignitia_sync.__all__) == EXPECTED
    for name in ignitia_sync.__all__:
        assert hasattr(ignitia_sync, name)


def test_every_public_name_and_method_has_a_docstring():
    missing = []
    for name in ignitia_sync.__all__:
        obj = getattr(ignitia_sync, name)
        if name.startswith("__"):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member) and not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert not missing


def test_exceptions_share_one_root():
    for name in ("ConnectionClosed", "HandshakeError", "InvalidHandshake", "MessageDecodeError", "MessageDropped",
                 "ProtocolError"):
        assert issubclass(getattr(ignitia_sync, name), ignitia_sync.IgnitiaError)
    assert issubclass(ignitia_sync.ConnectionClosed, ConnectionError)


def test_the_client_and_testing_modules_document_every_public_name():
    from ignitia_sync import client, testing

    for module in (client, testing):
        for name in module.__all__:
            obj = getattr(module, name)
            assert inspect.getdoc(obj), f"{module.__name__}.{name}"
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    assert attr.startswith("_") or not callable(member) or inspect.getdoc(member), f"{name}.{attr}"


def test_importing_does_not_monkey_patch():
    import socket

    import gevent.socket

    assert socket.socket is not gevent.socket.socket
