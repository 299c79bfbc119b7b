"""A sink's backlog on local disk: windows it could not take yet, replayed oldest first.

Heapster dropped a window whenever InfluxDB was slow or down and nobody knew. Here a window a sink
cannot take (a retryable failure, or the sink falling behind) is written to this spool as one
Arrow IPC file per window, named by the window end so that name order is window order, and
replayed from the oldest when the sink answers again. The spool is bounded in bytes; only when the
bound is hit is the oldest window dropped, with an error line naming it and a counter. A restarted
collector finds the files and resumes.

Files appear atomically (written under a ``.tmp`` name, then renamed), so a crash leaves either a
whole window or none; leftover temporary files are removed on start.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from heapster_columnar.errors import SinkError
from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.window import Window

__all__ = ["Spool", "SpooledWindow"]

log = logging.getLogger(__name__)

_SUFFIX = ".arrow"
_START = b"heapster_columnar.window_start_ms"


@dataclass(frozen=True, slots=True)
class SpooledWindow:
    path: Path
    end: datetime
    size: int


class Spool:
    """One sink's spool directory. Thread-safe: the manager adds while the sink's worker replays."""

    def __init__(self, directory: Path, *, max_bytes: int, sink: str) -> None:
        self.directory, self.max_bytes, self.sink = directory, max_bytes, sink
        self._lock = threading.Lock()
        self._entries: list[SpooledWindow] = []  # sorted by window end
        self._opened = False
        self.dropped_windows = 0
        self.dropped_points = 0

    def _open(self) -> None:
        """Create the directory, drop half-written files, index what a previous run left."""
        if self._opened:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            entries = []
            for path in self.directory.iterdir():
                if path.name.startswith(".tmp"):
                    path.unlink(missing_ok=True)
                elif path.suffix == _SUFFIX and path.stem.isdigit():
                    entries.append(SpooledWindow(path, _end_of(path), path.stat().st_size))
        except OSError as exc:
            raise SinkError(self.sink, f"spool {self.directory}: {exc.strerror or exc}", retryable=False) from exc
        self._entries = sorted(entries, key=lambda e: e.end)
        self._opened = True
        if entries:
            log.warning("sink %s: resuming a spool of %d window(s) in %s", self.sink, len(entries), self.directory)

    def __len__(self) -> int:
        with self._lock:
            self._open()
            return len(self._entries)

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries)

    def add(self, window: Window) -> None:
        """Keep ``window``'s points until :meth:`remove`; drops the oldest windows if over the bound."""
        points = window.points
        start_ms = int(window.start.timestamp() * 1000)
        schema = points.schema.with_metadata({**(points.schema.metadata or {}), _START: str(start_ms).encode()})
        with self._lock:
            self._open()
            name = f"{int(window.end.timestamp() * 1000):015d}{_SUFFIX}"
            path = self.directory / name
            temporary = self.directory / f".tmp-{name}"
            try:
                with pa.OSFile(str(temporary), "wb") as sink, ipc.new_file(sink, schema) as writer:
                    writer.write_table(points.replace_schema_metadata(schema.metadata))
                os.replace(temporary, path)
                size = path.stat().st_size
            except OSError as exc:
                temporary.unlink(missing_ok=True)
                raise SinkError(
                    self.sink,
                    f"spool {path}: {exc.strerror or exc}: window {window.end.isoformat()} lost",
                    retryable=False,
                ) from exc
            self._entries = sorted(
                [e for e in self._entries if e.path != path] + [SpooledWindow(path, window.end, size)],
                key=lambda e: e.end,
            )
            self._enforce_bound()

    def _enforce_bound(self) -> None:
        total = sum(e.size for e in self._entries)
        while total > self.max_bytes and len(self._entries) > 1:
            oldest = self._entries.pop(0)
            total -= oldest.size
            points = _row_count(oldest.path)
            oldest.path.unlink(missing_ok=True)
            self.dropped_windows += 1
            self.dropped_points += points
            log.error(
                "sink %s: spool over its %d-byte bound: DROPPED window %s (%d points) — the sink has been failing or "
                "behind for too long; raise --spool_max_size or fix the sink",
                self.sink,
                self.max_bytes,
                oldest.end.isoformat(),
                points,
            )

    def oldest(self) -> tuple[SpooledWindow, Window] | None:
        """The oldest spooled window, read back; a file that cannot be read is moved aside and named."""
        while True:
            with self._lock:
                self._open()
                if not self._entries:
                    return None
                entry = self._entries[0]
            try:
                with pa.memory_map(str(entry.path)) as source:
                    table = ipc.open_file(source).read_all()
            except (OSError, pa.ArrowInvalid) as exc:
                broken = entry.path.with_suffix(".corrupt")
                log.error("sink %s: spooled window %s unreadable (%s), moved to %s", self.sink, entry.path, exc, broken)
                entry.path.replace(broken)
                with self._lock:
                    self._entries = [e for e in self._entries if e.path != entry.path]
                continue
            metadata = dict(table.schema.metadata or {})
            start_ms = int(metadata.pop(_START, b"0"))
            table = table.replace_schema_metadata(metadata or None)
            start = datetime.fromtimestamp(start_ms / 1000, UTC)
            return entry, Window(start, entry.end, MetricBatch.empty(), table, nodes=0)

    def remove(self, entry: SpooledWindow) -> None:
        with self._lock:
            entry.path.unlink(missing_ok=True)
            self._entries = [e for e in self._entries if e.path != entry.path]


def _end_of(path: Path) -> datetime:
    return datetime.fromtimestamp(int(path.stem) / 1000, UTC)


def _row_count(path: Path) -> int:
    try:
        with pa.memory_map(str(path)) as source:
            reader = ipc.open_file(source)
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (OSError, pa.ArrowInvalid):
        return 0
