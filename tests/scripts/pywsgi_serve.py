"""Serve a WSGI app ``MODULE:ATTR`` with gevent's pywsgi as its users do (monkey-patched, pywsgi's own access log).

    python tests/scripts/pywsgi_serve.py PORT tests.scripts.flask_app:app
"""

from __future__ import annotations

import sys

from gevent import monkey

monkey.patch_all()

import importlib  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

if __name__ == "__main__":
    module, attr = sys.argv[2].split(":")
    app = getattr(importlib.import_module(module), attr)
    print("serving", flush=True)
    WSGIServer(("127.0.0.1", int(sys.argv[1])), app).serve_forever()  # log: pywsgi's default (stderr)
