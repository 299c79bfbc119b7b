"""The DuckDB sink: ``--sink=duckdb:/data/metrics.duckdb?retention=30d&snapshot=5m``.

One database file holds ``points`` (the points contract, ``docs/schema.md``: a view over the
``metric_sets`` and ``point_rows`` tables, which store each entity's labels once per window and
each label string once, as an id) and the ``pods``,
``containers``, ``namespaces`` and ``nodes`` tables, versioned only when the API state changes.
Each window is one transaction; old windows are deleted by age every few minutes; a read-only copy
(``<stem>.snapshot.duckdb``) is refreshed for readers, since DuckDB admits no other process while
one writes. Design and measurements: ``docs/design/duckdb-store.md``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from heapster_columnar.config.uri import Uri
from heapster_columnar.errors import ConfigError, SinkError
from heapster_columnar.manager.clock import parse_duration
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.schema import POINTS_SCHEMA
from heapster_columnar.model.window import Window
from heapster_columnar.sinks._duckdb_schema import DIMENSIONS, SchemaMismatch, extra_labels
from heapster_columnar.sinks._duckdb_snapshot import remove_stale_temporaries, snapshot_path, write_snapshot
from heapster_columnar.sinks._duckdb_store import Store

__all__ = ["OPTIONS", "DuckDBConfig", "DuckDBSink", "snapshot_path"]

log = logging.getLogger("heapster_columnar.sinks.duckdb")

OPTIONS = ("retention", "snapshot", "threads")
RETENTION_EVERY = timedelta(minutes=5)  # a DELETE + CHECKPOINT per window would cost more than the window
DEFAULT_SNAPSHOT = timedelta(minutes=5)

# Errors that say the window itself is wrong: retrying it cannot help, and the connection is fine.
_DATA_ERRORS = (
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.ConstraintException,
    duckdb.ConversionException,
    duckdb.InvalidInputException,
    duckdb.OutOfRangeException,
    duckdb.TypeMismatchException,
    pa.ArrowException,
    KeyError,
    TypeError,
    ValueError,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DuckDBConfig:
    """What ``duckdb:PATH?options`` asks for; times are in window time (``Window.end``)."""

    path: Path  # the database file; its directory is created on the first write
    retention: timedelta = timedelta(0)  # delete points stamped more than this before the newest window; 0 = keep all
    snapshot: timedelta = DEFAULT_SNAPSHOT  # refresh the readers' copy this often; 0 = no copy
    threads: int | None = None  # DuckDB worker threads; None = one per core

    @classmethod
    def from_uri(cls, uri: Uri) -> DuckDBConfig:
        """Every option checked, every problem named in one ConfigError, no file touched."""
        problems: list[str] = []
        try:
            uri.check(OPTIONS)
        except ConfigError as error:
            problems.append(str(error))
        target = uri.target.strip()
        if not target:
            problems.append(f"{uri.kind}: no database file in {uri.text!r} (example: duckdb:/data/metrics.duckdb)")
        elif target == ":memory:" or target.endswith(("/", os.sep)):
            problems.append(f"{uri.kind}: {target!r} is not a database file path")
        retention = _duration(uri, "retention", timedelta(0), problems)
        snapshot = _duration(uri, "snapshot", DEFAULT_SNAPSHOT, problems)
        threads: int | None = None
        try:
            threads = uri.integer("threads", 0, minimum=1) or None
        except ConfigError as error:
            problems.append(str(error))
        if problems:
            raise ConfigError("; ".join(problems))
        path = Path(os.path.abspath(os.path.expanduser(target)))
        return cls(path=path, retention=retention, snapshot=snapshot, threads=threads)


def _duration(uri: Uri, option: str, default: timedelta, problems: list[str]) -> timedelta:
    value = uri.options.get(option)
    if value is None or value == "":
        return default
    try:
        return parse_duration(value)
    except ConfigError:
        problems.append(f"{uri.kind}: option {option}={value!r} is not a duration (examples: 0, 15m, 30d)")
        return default


@dataclass(slots=True)
class _State:
    """What the sink remembers between windows (all of it rebuilt after a restart)."""

    store: Store | None = None
    written: dict[str, pa.Table] = field(default_factory=dict)  # dimension tables as last stored, by identity
    retention_ran: datetime | None = None
    snapshot_taken: datetime | None = None
    unsnapshotted: bool = False
    closed: bool = False


class DuckDBSink:
    """Appends each window to one DuckDB file; see the module docstring."""

    name = "duckdb"

    def __init__(self, config: DuckDBConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._state = _State()

    @classmethod
    def from_uri(cls, uri: Uri) -> DuckDBSink:
        return cls(DuckDBConfig.from_uri(uri))

    @property
    def path(self) -> Path:
        return self.config.path

    @property
    def snapshot_path(self) -> Path:
        """The copy readers open with ``duckdb.connect(..., read_only=True)``."""
        return snapshot_path(self.config.path)

    def write(self, window: Window) -> None:
        """Points and changed dimension tables in one transaction; then retention and the snapshot."""
        with self._lock:
            state = self._state
            if state.closed:
                raise SinkError(self.name, f"{self.path}: write after close", retryable=False)
            _check_columns(self.name, self.path, window)
            store = self._open()
            changed = _changed(state.written, window.dimensions)
            try:
                store.append(window.points, window.end, changed, window.point_entities)
            except Exception as error:
                if not isinstance(error, _DATA_ERRORS):
                    self._drop(store)  # the connection may be invalidated: reopen on the next window
                action = f"window ending {window.end.isoformat()} not written (nothing of it was kept)"
                raise self._error(action, error) from error
            state.written.update(changed)
            self._retention(store, window.end)
            self._refresh_snapshot(store, window.end)

    def snapshot(self) -> Path:
        """Refresh the readers' copy now (also done every ``snapshot`` of window time and at close)."""
        with self._lock:
            if self._state.closed:
                raise SinkError(self.name, f"{self.path}: snapshot after close", retryable=False)
            store = self._open()
            try:
                self._copy(store)
            except (duckdb.Error, OSError) as error:
                raise self._error(f"snapshot {self.snapshot_path} not written", error) from error
            return self.snapshot_path

    def close(self) -> None:
        """Final snapshot (if windows came since the last one), then release the file. Safe twice."""
        with self._lock:
            state = self._state
            if state.closed:
                return
            state.closed = True
            store, state.store = state.store, None
            if store is None:
                return
            try:
                if self.config.snapshot and state.unsnapshotted:
                    self._copy(store)
            except (duckdb.Error, OSError) as error:
                log.warning("duckdb: %s: final snapshot not written: %s", self.snapshot_path, error)
            try:
                store.close()
            except duckdb.Error as error:
                raise self._error("closing the database failed (committed windows are in its WAL)", error) from error

    def _open(self) -> Store:
        state = self._state
        if state.store is not None:
            return state.store
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.config.snapshot:
                remove_stale_temporaries(self.snapshot_path)
            state.store = Store.open(self.path, threads=self.config.threads)
        except SchemaMismatch as error:
            detail = f"{self.path}: holds tables this sink does not write ({error}); the file was left untouched"
            raise SinkError(self.name, detail, retryable=False) from error
        except (duckdb.Error, OSError) as error:
            raise self._error("cannot open the database", error) from error
        state.written.clear()  # compare dimensions with the file's current versions once after (re)opening
        state.retention_ran = None
        return state.store

    def _drop(self, store: Store) -> None:
        self._state.store = None
        try:
            store.close()
        except duckdb.Error as error:
            log.debug("duckdb: %s: closing after a failure: %s", self.path, error)

    def _retention(self, store: Store, end: datetime) -> None:
        """Delete by age at most every ``RETENTION_EVERY`` (or every ``retention`` if shorter).

        The window is committed by now, so a failure here is logged and retried next window, never
        reported as the window's failure (which would make a retrying caller write it twice).
        """
        retention, state = self.config.retention, self._state
        every = min(RETENTION_EVERY, retention)
        if not retention or (state.retention_ran is not None and end - state.retention_ran < every):
            return
        started, cutoff = time.perf_counter(), end - retention
        try:
            deleted = store.delete_before(cutoff)
            if deleted:
                store.checkpoint()  # frees the deleted row groups' blocks for the next windows
        except duckdb.Error as error:
            log.warning("duckdb: %s: deleting rows before %s failed (retried later): %s", self.path, cutoff, error)
            return
        state.retention_ran = end
        seconds = time.perf_counter() - started
        log.info("duckdb: %s: deleted %d rows before %s in %.2f s", self.path, deleted, cutoff, seconds)

    def _refresh_snapshot(self, store: Store, end: datetime) -> None:
        state, every = self._state, self.config.snapshot
        state.unsnapshotted = True
        if not every or (state.snapshot_taken is not None and end - state.snapshot_taken < every):
            return
        try:
            self._copy(store)
        except (duckdb.Error, OSError) as error:
            log.warning("duckdb: %s: snapshot not written (retried next window): %s", self.snapshot_path, error)
            return
        state.snapshot_taken = end

    def _copy(self, store: Store) -> None:
        started = time.perf_counter()
        store.checkpoint()
        size = write_snapshot(self.path, self.snapshot_path)
        self._state.unsnapshotted = False
        seconds = time.perf_counter() - started
        log.info("duckdb: %s: %.0f MB snapshot in %.2f s", self.snapshot_path, size / 1e6, seconds)

    def _error(self, action: str, error: BaseException) -> SinkError:
        cause, retryable = _classify(error, self.snapshot_path)
        return SinkError(self.name, f"{self.path}: {action}: {cause}", retryable=retryable)


def _check_columns(sink: str, path: Path, window: Window) -> None:
    """A window missing a contract column would be stored with nulls in it: refuse it before any I/O."""
    names = set(window.points.column_names)
    missing = [name for name in POINTS_SCHEMA.names if name not in names]
    odd = [
        name
        for name in extra_labels(window.points.schema)
        if not pa.types.is_string(_value_type(window.points.schema.field(name).type))
    ]
    if missing or odd:
        detail = f"missing columns {missing}" if missing else f"copied label columns that are not strings {odd}"
        raise SinkError(sink, f"{path}: window ending {window.end.isoformat()} not written: {detail}", retryable=False)


def _value_type(arrow: pa.DataType) -> pa.DataType:
    return arrow.value_type if pa.types.is_dictionary(arrow) else arrow


def _changed(written: dict[str, pa.Table], dimensions: Dimensions | None) -> dict[str, pa.Table]:
    """The dimension tables that are not the very objects last stored (the collector replaces, never
    mutates, them); the store then compares contents, so a rebuilt but equal table adds nothing."""
    if dimensions is None:
        return {}
    tables = {name: getattr(dimensions, name) for name in DIMENSIONS}
    return {name: table for name, table in tables.items() if written.get(name) is not table}


def _classify(error: BaseException, snapshot: Path) -> tuple[str, bool]:
    """(the cause in words, whether the same window can succeed later)."""
    text = str(error)
    if isinstance(error, PermissionError | duckdb.PermissionException) or "Permission denied" in text:
        return f"permission denied ({text})", False
    if "not a valid DuckDB database" in text:
        return f"the file is not a DuckDB database and was left untouched ({text})", False
    if "Could not set lock" in text or "Conflicting lock" in text:
        return f"another process has it open (DuckDB admits one writer; readers open {snapshot}) ({text})", True
    if isinstance(error, _DATA_ERRORS):
        return f"the window does not fit the table ({type(error).__name__}: {text})", False
    return f"{type(error).__name__}: {text}", isinstance(error, OSError | duckdb.Error)
