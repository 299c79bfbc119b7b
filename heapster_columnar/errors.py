"""The exception tree of heapster-columnar.

    HeapsterColumnarError
     ├── ConfigError            bad flag, URI or option; raised before any I/O
     ├── SourceError            something a source could not deliver
     │    ├── NodeScrapeError   one node's kubelet did not answer usefully
     │    └── PayloadError      a document arrived but cannot be decoded (names source and cause)
     ├── SinkError              a sink could not write (``retryable`` says whether to try again)
     ├── StoreError             stored history is unreadable (names the file)
     └── Gone                   (simulator) a watch or list asked for a resourceVersion no longer kept

Foreign errors (pyarrow, httpx, duckdb) are wrapped at the boundary that knows the context, with
the original chained as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "HeapsterColumnarError",
    "NodeScrapeError",
    "PayloadError",
    "SinkError",
    "SourceError",
    "StoreError",
]


class HeapsterColumnarError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(HeapsterColumnarError):
    """Invalid configuration: a flag, a source or sink URI, or one of its options."""


class SourceError(HeapsterColumnarError):
    """A source failed to deliver data for (part of) a window."""


class NodeScrapeError(SourceError):
    """One node could not be scraped (connect, timeout, HTTP status)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class PayloadError(SourceError):
    """A document could not be decoded. ``source`` names where it came from (node, URL or file)."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.source = source
        self.detail = detail


class SinkError(HeapsterColumnarError):
    """A sink failed to write a window."""

    def __init__(self, sink: str, detail: str, *, retryable: bool) -> None:
        super().__init__(f"{sink}: {detail}")
        self.sink = sink
        self.detail = detail
        self.retryable = retryable


class StoreError(HeapsterColumnarError):
    """Stored history cannot be read; the message names the file."""
