"""The one OpenTelemetry tracer provider of the test process, with an in-memory exporter.

OpenTelemetry lets a process set its global provider once: :func:`spans` sets it the first
time it is called (from whichever test module comes first) and hands out the same exporter
after, cleared. The spans ignitia_sync makes in a server's thread land there too.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_exporter: InMemorySpanExporter | None = None


def spans() -> InMemorySpanExporter:
    """The process's in-memory exporter, emptied; the global provider is set on first use."""
    global _exporter
    if _exporter is None:
        _exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
        assert trace.get_tracer_provider() is provider, "another global tracer provider was set first"
    _exporter.clear()
    return _exporter


def named(exporter: InMemorySpanExporter, name: str) -> list:
    """The finished spans called ``name``, oldest first."""
    return [span for span in exporter.get_finished_spans() if span.name == name]
