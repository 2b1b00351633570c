"""Prometheus metrics of every host in the process (``pip install 'ignitia_sync[metrics]'``).

Most figures are read at scrape time from what the hosts count anyway (``host.stats()``,
the registry's broadcast counters, the backplane's counters, the blocking watch); only the
handler-duration histogram is fed per connection, when it closes. Nothing is added per message.

* the standalone server: ``Server(router, metrics=True)`` (``/metrics``; or a path);
* a WSGI app (Flask, Django, gunicorn): mount :func:`wsgi_app` (see :func:`mount`);
* several gunicorn workers: set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
  multiprocess mode); a scrape of any worker then reports all of them.

Without prometheus_client, importing this package raises ``ModuleNotFoundError`` with one
line: "ignitia_sync.metrics needs prometheus_client: pip install 'ignitia_sync[metrics]'".

Example:
    >>> from ignitia_sync.metrics import render
    >>> body, content_type = render()
    >>> b"ignitia_sync_connections_opened_total" in body or b"# HELP ignitia_sync_connections_open " in body
    True
"""

from __future__ import annotations

from .._support.extras import needs

with needs("ignitia_sync.metrics", "prometheus_client", extra="metrics", packages=("prometheus_client",)):
    from .exposition import DEFAULT_ALLOW, allowed, mount, render, wsgi_app
    from .families import METRICS, sync

__all__ = ["DEFAULT_ALLOW", "METRICS", "allowed", "mount", "render", "sync", "wsgi_app"]
