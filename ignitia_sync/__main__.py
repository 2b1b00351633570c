"""The ``ignitia-sync MODULE:ATTR [--host H] [--port P]`` command (also ``python -m ignitia_sync``).

``ATTR`` is a :class:`~ignitia_sync.router.Router`, or any WSGI application (a Flask app,
Django's ``application``): plain HTTP then goes to it through gevent's pywsgi, and its
:class:`~ignitia_sync.wsgi.WebSocketMiddleware` routes are upgraded on the same port.

It calls ``gevent.monkey.patch_all()`` before importing the application's module, as
gunicorn's gevent worker does, so blocking libraries used by handlers cooperate.

Example::

    ignitia-sync examples.echo:app --port 3000
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, monkey-patch, import the app and serve it until signalled."""
    parser = argparse.ArgumentParser(
        prog="ignitia-sync", description="Serve an ignitia_sync Router, or a WSGI application with WebSocket routes."
    )
    parser.add_argument("target", help="MODULE:ATTR, for example examples.echo:app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    module_name, _, attr = args.target.partition(":")
    if not module_name or not attr:
        parser.error("target must look like MODULE:ATTR")

    from gevent import monkey

    monkey.patch_all()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, os.getcwd())
    app = getattr(importlib.import_module(module_name), attr)

    from .hosting.server import run
    from .router import Router

    if isinstance(app, Router):
        run(app, ["--host", args.host, "--port", str(args.port)])
    elif callable(app):  # a WSGI application: a Flask app, Django's, any callable
        run(Router(), ["--host", args.host, "--port", str(args.port)], wsgi_app=app)
    else:
        parser.error(f"{args.target} is a {type(app).__name__}, not a Router or a WSGI application")
    return 0


if __name__ == "__main__":
    sys.exit(main())
