"""Scraping ``/metrics`` over HTTP in the metrics tests, and reading the figures out of the text.

``scrape(("127.0.0.1", port))`` → (status, text); ``figures(text)`` → a :class:`Figures`:
``figures.get("ignitia_sync_connections_opened_total", route="/echo")`` (0 when absent), and
``after - before`` for what a workload changed.
"""

from __future__ import annotations

import http.client

from prometheus_client.parser import text_string_to_metric_families


def scrape(address: tuple[str, int], path: str = "/metrics", source: str = "127.0.0.1") -> tuple[int, str]:
    """GET ``path`` from ``address`` out of the ``source`` address: (status, body)."""
    connection = http.client.HTTPConnection(address[0], address[1], timeout=10, source_address=(source, 0))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


class Figures:
    """Every sample of a scrape, by name and labels."""

    def __init__(self, samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> None:
        self.samples = samples

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def __sub__(self, before: Figures) -> Figures:
        keys = self.samples.keys() | before.samples.keys()
        return Figures({key: self.samples.get(key, 0.0) - before.samples.get(key, 0.0) for key in keys})

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def figures(text: str) -> Figures:
    """The samples of a scrape's text."""
    return Figures({
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    })


def scraped(address: tuple[str, int], path: str = "/metrics") -> Figures:
    """The figures of one scrape that must succeed."""
    status, text = scrape(address, path)
    assert status == 200, text
    return figures(text)
