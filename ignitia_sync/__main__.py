"""The ``ignitia-sync MODULE:ATTR [--host H] [--port P]`` command (also ``python -m ignitia_sync``).

``ATTR`` is a :class:`~ignitia_sync.router.Router`, or any WSGI application (a Flask app,
Django's ``application``): plain HTTP then goes to it through gevent's pywsgi, and its
WebSocket routes (``Sock``, ``websocket_view``, ``WebSocketMiddleware``) are upgraded on the
same port.

It calls ``gevent.monkey.patch_all()`` before importing the application's module, as
gunicorn's gevent worker does, so blocking libraries used by handlers cooperate. A mistake
(a module that is not there, a target that is neither a Router nor a WSGI app, a port in
use, a bad option) is one line on stderr and exit status 2; ``--debug`` adds the traceback.

Example::

    ignitia-sync examples.echo:app --port 3000
"""

from __future__ import annotations

import argparse
import errno
import importlib
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

PROG = "ignitia-sync"
#: How handlers name their connection; a WSGI app's first parameter is the environ.
_HANDLER_FIRST_PARAMETERS = frozenset({"ws", "websocket", "conn", "connection", "socket", "sock"})


class UsageError(Exception):
    """A mistake on the command line: the message says what to do."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and status 2 instead of argparse's usage block."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, with every default shown by ``--help``."""
    parser = _Parser(
        prog=PROG,
        description="Serve an ignitia_sync Router, or a WSGI application with WebSocket routes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("target", help="MODULE:ATTR, for example examples.echo:app")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=int, default=3000, help="the port to listen on")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        type=str.upper, help="the lowest level logged")
    parser.add_argument("--metrics", nargs="?", const="/metrics", default=None, metavar="PATH",
                        help="serve Prometheus metrics at PATH (/metrics without one) to loopback addresses; "
                        "needs pip install 'ignitia_sync[metrics]'")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a start-up error")
    args = parser.parse_args(argv)
    module_name, _, attr = args.target.partition(":")
    if not module_name or not attr:
        parser.error(f"target must look like MODULE:ATTR, not {args.target!r}")
    args.module_name, args.attr = module_name, attr
    return args


def load(module_name: str, attr: str) -> Any:
    """Import ``module_name`` and return its ``attr``.

    Raises:
        UsageError: the module or the attribute is not there.
    """
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(
                f"no module named {module_name!r} (run from the folder that holds it, or set PYTHONPATH)"
            ) from exc
        # a missing extra of ours already says what to install (_support.extras)
        hint = "" if "pip install" in str(exc) else " (pip install it?)"
        raise UsageError(f"importing {module_name} failed: {exc}{hint}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        found = sorted(name for name, value in vars(module).items() if _kind(value) and not name.startswith("_"))
        hint = f"; it has {', '.join(found)}" if found else ""
        raise UsageError(f"module {module_name!r} has no attribute {attr!r}{hint}") from None


def _kind(value: Any) -> str | None:
    """``"router"``, ``"wsgi"`` (a callable taking environ and start_response), or None."""
    from .router import Router

    if isinstance(value, Router):
        return "router"
    if not callable(value) or isinstance(value, type):
        return None
    try:
        signature = inspect.signature(value)
        signature.bind(object(), object())
    except TypeError:
        return None
    except ValueError:  # no signature to read (a builtin): give it the benefit of the doubt
        return "wsgi"
    first = next(iter(signature.parameters), "")
    return None if first in _HANDLER_FIRST_PARAMETERS else "wsgi"


def check_target(target: str, app: Any) -> str:
    """What ``app`` is (``"router"`` or ``"wsgi"``).

    Raises:
        UsageError: neither: a handler function, a module, a number...
    """
    kind = _kind(app)
    if kind is not None:
        return kind
    what = type(app).__name__
    if callable(app):
        raise UsageError(
            f"{target} is a function that does not take (environ, start_response): a WebSocket handler? "
            "Serve the Router it is registered on (Router().websocket(path, handler)), or a WSGI app"
        )
    raise UsageError(f"{target} is a {what}, not a Router or a WSGI application")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, monkey-patch, import the app and serve it until signalled."""
    args = parse(argv)
    try:
        return _serve(args)
    except UsageError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from gevent import monkey

    monkey.patch_all()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = load(args.module_name, args.attr)
    except UsageError:
        raise
    except Exception as exc:  # the application's own module failed while importing
        if args.debug:
            raise
        raise UsageError(
            f"importing {args.module_name} raised {type(exc).__name__}: {exc} (--debug shows the traceback)"
        ) from exc
    kind = check_target(args.target, app)

    from .hosting.server import Server, routes_line
    from .router import Router

    router, wsgi_app = (app, None) if kind == "router" else (Router(), app)
    try:
        server = Server(router, (args.host, args.port), wsgi_app=wsgi_app, metrics=args.metrics or False)
    except (ModuleNotFoundError, ValueError) as exc:  # the metrics extra missing, or a bad --metrics path
        raise UsageError(str(exc)) from exc
    try:
        server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {args.port} on {args.host} is in use: stop what holds it, or pick --port") from exc
        if exc.errno == errno.EACCES:
            raise UsageError(f"not allowed to listen on {args.host}:{args.port}: pick a port above 1023") from exc
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    host, port = server.address
    print(f"WebSocket server running on ws://{host}:{port}", flush=True)
    print(routes_line(app, wsgi=kind == "wsgi"), flush=True)
    if args.metrics:
        print(f"Prometheus metrics at http://{host}:{port}{args.metrics} (loopback addresses only)", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
