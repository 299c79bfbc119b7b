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
    """``write`` raises :class:`~heapster_columnar.errors.SinkError` (or anything) on failure."""

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
