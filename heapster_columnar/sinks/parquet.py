"""The Parquet sink: windows into a Hive-partitioned Parquet dataset any engine can read.

``--sink=parquet:/data/metrics?partition=hour&compression=zstd`` (or ``s3://bucket/prefix``,
``gs://...``, ``file://...``, any fsspec URL such as ``memory://`` when fsspec is installed)::

    <root>/points/date=YYYY-MM-DD/hour=HH/*.parquet    the points table (docs/schema.md)
    <root>/{pods,containers,namespaces,nodes}/*.parquet dimension snapshots, each with valid_from

Options (all validated before any I/O):

- ``partition``: ``hour`` (default) or ``day`` — the directory granule, and what is compacted;
- ``compression``: ``zstd`` (default), ``snappy``, ``gzip``, ``lz4``, ``none``; ``compression_level``;
  what compacted files and dimension snapshots keep;
- ``window_compression``: the same choices, for the files each window writes before compaction
  merges them (default ``lz4``: a fifth less CPU per window than zstd for 20 % more bytes, for an
  hour); with ``compact=false`` the default is ``compression``, since window files are then kept;
- ``row_group_size``: rows per row group (default 4,194,304; at least 1,024);
- ``compact``: merge a closed partition's small files (default true); ``compact_min_files`` (default
  2) small files are needed; ``compact_size`` is the compacted file size (default 64MB; K/M/G are
  binary units), and a file below half of it is small;
- ``fsync``: flush each file to disk before renaming it into place (default true; local disks).

Design, layout and crash-safety argument: ``docs/design/parquet-store.md``. One writer per root.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from heapster_columnar.config.uri import Uri
from heapster_columnar.errors import ConfigError, SinkError
from heapster_columnar.model.window import Window
from heapster_columnar.sinks._parquet_compact import CompactOptions, Compactor
from heapster_columnar.sinks._parquet_dims import DimensionWriter
from heapster_columnar.sinks._parquet_fs import Staged, Store, check_target, open_store, sink_error
from heapster_columnar.sinks._parquet_layout import (
    POINTS,
    STAGING,
    Partition,
    incomplete_windows,
    parse_name,
    parse_partition,
    partition_of,
    stamp,
    window_name,
)
from heapster_columnar.sinks._parquet_write import WriterOptions, metric_ordered, part_count, write_parts

__all__ = ["ParquetConfig", "ParquetSink"]

log = logging.getLogger("heapster_columnar.sinks.parquet")

OPTIONS = (
    "partition",
    "compression",
    "compression_level",
    "window_compression",
    "row_group_size",
    "compact",
    "compact_min_files",
    "compact_size",
    "fsync",
)
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "none")
_LEVELS = {"zstd": (1, 22), "gzip": (1, 9)}
_SIZE = re.compile(r"^(\d+)\s*([kmg]i?b?|b)?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParquetConfig:
    """What ``from_uri`` read; ``target`` is a local path or a filesystem URL."""

    target: str
    partition: str = "hour"  # "hour" or "day"
    writer: WriterOptions = field(default_factory=WriterOptions)
    compaction: CompactOptions = field(default_factory=CompactOptions)
    fsync: bool = True


def parse_size(option: str, text: str) -> int:
    """``64MB``, ``512k``, ``1GiB`` or plain bytes; K, M and G are powers of 1024."""
    m = _SIZE.match(text.strip())
    if m is None:
        raise ConfigError(f"parquet: option {option}={text!r} is not a size (e.g. 64MB, 512KB, 1048576)")
    unit = (m.group(2) or "b")[0].lower()
    return int(m.group(1)) * {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]


class ParquetSink:
    """Writes each window's points (and changed dimension tables) as files that appear atomically."""

    name = "parquet"

    def __init__(self, config: ParquetConfig) -> None:
        self.config = config
        self._store: Store | None = None
        self._dimensions: DimensionWriter | None = None
        self._compactor: Compactor | None = None
        self._lock = threading.Lock()  # guards the partition bookkeeping below
        self._partition_locks: dict[Partition, threading.Lock] = {}
        self._files: dict[Partition, set[str]] = {}  # names under points/, as last seen or written
        self._covered: dict[Partition, set[str]] = {}  # window stamps held by compacted files
        self._pending: set[Partition] = set()  # partitions to compact once closed
        self._newest: Partition | None = None  # partition of the newest window written
        self._scheduled: dict[Partition, Future[None]] = {}
        self._compact_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-compact")
        self._part_pool: ThreadPoolExecutor | None = None
        self._closed = False

    @classmethod
    def from_uri(cls, uri: Uri) -> ParquetSink:
        """Validate every option (ConfigError naming it); touches no file."""
        uri.check(OPTIONS)
        check_target(uri.target)
        o = uri.options
        partition = o.get("partition") or "hour"
        if partition not in ("hour", "day"):
            raise ConfigError(f"parquet: option partition={partition!r} must be hour or day")
        compression = (o.get("compression") or "zstd").lower()
        if compression not in COMPRESSIONS:
            choices = ", ".join(COMPRESSIONS)
            raise ConfigError(f"parquet: option compression={o['compression']!r} must be one of {choices}")
        level: int | None = None
        if o.get("compression_level"):
            if compression not in _LEVELS:
                raise ConfigError(f"parquet: option compression_level is not supported with compression={compression}")
            low, high = _LEVELS[compression]
            level = uri.integer("compression_level", low, minimum=low)
            if level > high:
                raise ConfigError(f"parquet: option compression_level={level} must be at most {high} for {compression}")
        compaction = CompactOptions(
            enabled=uri.flag("compact", True),
            min_files=uri.integer("compact_min_files", 2, minimum=2),
            target_bytes=parse_size("compact_size", o["compact_size"]) if o.get("compact_size") else 64 << 20,
        )
        window_compression = (o.get("window_compression") or ("lz4" if compaction.enabled else compression)).lower()
        if window_compression not in COMPRESSIONS:
            choices = ", ".join(COMPRESSIONS)
            raise ConfigError(
                f"parquet: option window_compression={o['window_compression']!r} must be one of {choices}"
            )
        writer = WriterOptions(
            compression=compression,
            compression_level=level,
            row_group_size=uri.integer("row_group_size", 1 << 22, minimum=1024),
            window_compression=window_compression,
        )
        if compaction.target_bytes < 1024:
            raise ConfigError(f"parquet: option compact_size={o['compact_size']!r} must be at least 1KB")
        config = ParquetConfig(
            target=uri.target, partition=partition, writer=writer, compaction=compaction, fsync=uri.flag("fsync", True)
        )
        return cls(config)

    # -- writing -------------------------------------------------------------------------------

    def write(self, window: Window) -> None:
        """Store the window's points and any changed dimension table; idempotent per window end."""
        if self._closed:
            raise SinkError(self.name, "write after close", retryable=False)
        store = self._open()
        partition = partition_of(window.end, self.config.partition)
        with self._partition_lock(partition):
            self._write_points(store, window, partition)
        if window.dimensions is not None:
            assert self._dimensions is not None
            try:
                self._dimensions.write(window.dimensions, window.end)
            except (OSError, pa.ArrowException) as exc:
                raise sink_error("write dimension tables under", store.root, exc) from exc
        with self._lock:
            self._pending.add(partition)
            if self._newest is None or partition > self._newest:
                self._newest = partition
        self._schedule()

    def _write_points(self, store: Store, window: Window, partition: Partition) -> None:
        points = window.points
        when = stamp(window.end)
        directory = store.path(POINTS, partition.path)
        try:
            names = self._partition_files(store, partition)
            if when in self._covered_windows(partition, names):
                log.info("parquet: window %s is already in a compacted file of %s", when, partition.path)
                return
            if points.num_rows == 0:
                return
            if not names:
                store.create_dir(directory)
            ordered = metric_ordered(points)
            parts = part_count(ordered.num_rows, self.config.writer.row_group_size)
            finals = [window_name(window.end, i, parts) for i in range(parts)]
            kwargs = self.config.writer.for_windows().kwargs(ordered.schema, sorting=("metric",))
            staged: list[Staged | None] = [None] * parts

            def stage_part(i: int, part: pa.Table) -> None:
                staged[i] = store.stage(f"{directory}/{finals[i]}", part, kwargs)

            try:  # every part encoded before any is visible: a failure or crash shows no half window
                write_parts(ordered, parts, stage_part, self._parts_pool(parts))
                store.publish([s for s in staged if s is not None])
            finally:
                store.discard([s for s in staged if s is not None])
            stale = [n for n in names if _window_part(n, when) and n not in finals]  # an earlier try cut otherwise
            for name in stale:
                store.delete(f"{directory}/{name}")
            with self._lock:
                self._files[partition] = (names - set(stale)) | set(finals)
        except (OSError, pa.ArrowException) as exc:
            raise sink_error("write window files in", directory, exc) from exc

    def _parts_pool(self, parts: int) -> ThreadPoolExecutor | None:
        if parts < 2:
            return None
        if self._part_pool is None:
            self._part_pool = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="parquet-write")
        return self._part_pool

    # -- opening and recovery ------------------------------------------------------------------

    def _open(self) -> Store:
        """Resolve the target, clear what a crashed run left in staging, finish its compactions."""
        if self._store is not None:
            return self._store
        target = self.config.target
        try:
            store = open_store(target, fsync=self.config.fsync)
        except (OSError, pa.ArrowException) as exc:
            raise sink_error("open", target, exc) from exc
        try:
            store.create_dir(store.path(POINTS))
            if store.local:
                store.create_dir(store.path(STAGING))
                for info in store.listing(store.path(STAGING)):
                    log.warning("parquet: removing %s left by an interrupted write", info.path)
                    store.delete(info.path)
            found = self._scan(store)
        except (OSError, pa.ArrowException) as exc:
            raise sink_error("prepare", store.root, exc) from exc
        compactor = Compactor(store, self.config.writer, self.config.compaction)
        try:
            for partition, names in found.items():
                if len(names) > 1 and any(_compacted(n) for n in names):
                    found[partition] = compactor.recover(partition, names)
        except (OSError, pa.ArrowException) as exc:
            raise sink_error("recover compactions in", store.path(POINTS), exc) from exc
        self._files = found
        self._pending = {p for p, names in found.items() if len(names) >= self.config.compaction.min_files}
        self._compactor = compactor
        self._dimensions = DimensionWriter(store, self.config.writer)
        self._store = store
        return store

    def _scan(self, store: Store) -> dict[Partition, set[str]]:
        """Our files under points/, by partition; a layout of the other granule is refused."""
        base = store.path(POINTS)
        found: dict[Partition, set[str]] = {}
        for info in store.listing(base):
            relative = info.path[len(base) :].strip("/")
            directory, _, name = relative.rpartition("/")
            partition = parse_partition(directory)
            if partition is None or parse_name(name) is None:
                continue
            if (partition.hour is None) != (self.config.partition == "day"):
                raise SinkError(
                    self.name,
                    f"{base} holds partitions of another granule ({directory}); this sink writes "
                    f"partition={self.config.partition}: use another directory or the same option",
                    retryable=False,
                )
            found.setdefault(partition, set()).add(name)
        for partition, names in found.items():
            for name in sorted(incomplete_windows(names)):
                log.warning("parquet: removing %s/%s: part of a window never completely written", partition.path, name)
                store.delete(f"{base}/{partition.path}/{name}")
                names.discard(name)
        return found

    def _partition_files(self, store: Store, partition: Partition) -> set[str]:
        with self._lock:
            known = self._files.get(partition)
        return set(known) if known is not None else set()

    def _covered_windows(self, partition: Partition, names: set[str]) -> set[str]:
        """Windows already in compacted files of ``partition`` (footers read once, then cached)."""
        if not any(_compacted(n) for n in names):
            return set()
        with self._lock:
            cached = self._covered.get(partition)
        if cached is None:
            assert self._compactor is not None
            cached = self._compactor.covered(partition, names)
            with self._lock:
                self._covered[partition] = cached
        return cached

    def _partition_lock(self, partition: Partition) -> threading.Lock:
        with self._lock:
            return self._partition_locks.setdefault(partition, threading.Lock())

    # -- compaction ----------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Hand closed partitions (older than the newest window's) to the compaction thread."""
        if not self.config.compaction.enabled:
            return
        with self._lock:
            newest = self._newest
            ready = sorted(p for p in self._pending if newest is not None and p < newest)
            for partition in ready:
                running = self._scheduled.get(partition)
                if running is not None and not running.done():
                    continue
                self._pending.discard(partition)
                self._scheduled[partition] = self._compact_pool.submit(self._compact, partition)

    def _compact(self, partition: Partition) -> None:
        assert self._compactor is not None and self._store is not None
        try:
            with self._partition_lock(partition):
                self._compactor.compact(partition)
                names = {i.base_name for i in self._store.listing(self._compactor.directory(partition))}
                with self._lock:
                    self._files[partition] = {n for n in names if parse_name(n) is not None}
                    self._covered.pop(partition, None)
        except Exception:
            log.exception("parquet: compacting %s failed; it is retried after the next window", partition.path)
            with self._lock:
                self._pending.add(partition)

    def close(self) -> None:
        """Wait for a running compaction (queued ones are left for the next start); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._compact_pool.shutdown(wait=True, cancel_futures=True)
        if self._part_pool is not None:
            self._part_pool.shutdown(wait=True)

    def wait_for_compaction(self) -> None:
        """Block until every scheduled compaction has run (tests, benchmarks, an orderly exit)."""
        while True:
            with self._lock:
                futures = [f for f in self._scheduled.values() if not f.done()]
            if not futures:
                return
            for future in futures:
                future.exception()


def _window_part(name: str, when: str) -> bool:
    parsed = parse_name(name)
    return parsed is not None and not parsed.compacted and parsed.first == when


def _compacted(name: str) -> bool:
    parsed = parse_name(name)
    return parsed is not None and parsed.compacted
