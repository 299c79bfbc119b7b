"""The sink interface: a window in, an outcome out; slow or failing sinks never hold the others.

Sinks are synchronous (DuckDB, Parquet and most client libraries are); the manager runs each in
a worker thread under its own timeout and records the outcome, so a sink that hangs costs its own
window's data (reported as such), never another sink's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from heapster_columnar.model.window import Window


class Sink(Protocol):
    """One destination of windows.

    The contract every sink keeps:

    - built by ``from_uri(uri)`` (a classmethod taking :class:`~heapster_columnar.config.uri.Uri`)
      that validates every option **without I/O** — ``--sink`` errors are startup errors naming the
      option — and opens files, databases and connections lazily on the first ``write``;
    - ``write`` is called from one thread at a time, windows in order; it raises
      :class:`~heapster_columnar.errors.SinkError` (``retryable=True`` when trying the same window
      later can work: a server down, a timeout) or anything else on failure;
    - ``close`` flushes and releases everything; it is called once, at shutdown.
    """

    name: str

    def write(self, window: Window) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WriteResult:
    sink: str
    points: int
    seconds: float
    error: str | None = None  # None: written; else what went wrong ("timeout after 20 s", ...)

    @property
    def ok(self) -> bool:
        return self.error is None
