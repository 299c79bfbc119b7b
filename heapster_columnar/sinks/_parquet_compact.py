"""Compaction of closed partitions and recovery after a crash.

A closed partition's small files (window files below half the target size) are merged, in time
order, into files of up to ``target_bytes``, fully sorted by :data:`SORT_KEYS`. Each compacted file
records in its footer the files it replaces and the windows it holds, and the steps are ordered so
that a crash anywhere loses nothing and leaves no duplicate once the sink restarts:

1. write the compacted file (staging + rename, or one PUT): until the rename, readers see only
   the inputs;
2. delete the inputs. Between 1 and 2 — a few milliseconds — a reader listing the partition sees
   both (the only moment duplicates are visible);
3. on start-up, :meth:`Compactor.recover` deletes inputs that a visible compacted file names: a
   crash between 1 and 2 is finished then.

A file that cannot be read is moved to ``<root>/_quarantine/`` (with ``.corrupt`` appended) and
named in an error line; compaction goes on without it. Nothing is deleted that is not covered by
a committed compacted file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.errors import StoreError
from heapster_columnar.sinks._parquet_fs import Store, is_corrupt
from heapster_columnar.sinks._parquet_layout import (
    POINTS,
    QUARANTINE,
    FileName,
    Partition,
    compacted_name,
    parse_name,
)
from heapster_columnar.sinks._parquet_write import WriterOptions, type_row_groups

__all__ = ["META_INPUTS", "META_WINDOWS", "SORT_KEYS", "CompactOptions", "Compactor", "remove_inputs", "sort_points"]

log = logging.getLogger("heapster_columnar.sinks.parquet")

# Entity type first: the cluster, node and namespace series (a few rows a window) then sit in
# row groups of their own at the head of the file instead of one row in every row group of
# containers, so a month of cluster or namespace history reads a sliver of each file.
SORT_KEYS = ("type", "metric", "namespace_name", "nodename", "pod_name", "container_name", "resource_id", "timestamp")
META_INPUTS = b"heapster_columnar.inputs"  # JSON list of the file names this file replaces
META_WINDOWS = b"heapster_columnar.windows"  # JSON list of the window stamps this file holds


@dataclass(frozen=True, slots=True)
class CompactOptions:
    enabled: bool = True
    min_files: int = 2  # small files a closed partition needs before it is compacted
    target_bytes: int = 64 << 20  # compacted file size; a file below half of it is small


class Compactor:
    """Compacts and repairs partitions of one store's points dataset. Not thread-safe: the sink
    runs it on one thread, holding the partition's lock."""

    def __init__(self, store: Store, writer: WriterOptions, options: CompactOptions) -> None:
        self.store, self.writer, self.options = store, writer, options

    def directory(self, partition: Partition) -> str:
        return self.store.path(POINTS, partition.path)

    def recover(self, partition: Partition, names: Iterable[str]) -> set[str]:
        """Delete files that a compacted file in the partition replaces; returns the names left."""
        left = set(names)
        for name in sorted(left):
            parsed = parse_name(name)
            if parsed is None or not parsed.compacted or name not in left:
                continue
            inputs = _names(self._footer(partition, name), META_INPUTS)
            stale = sorted(left & set(inputs))
            if stale:
                log.warning("parquet: %s replaces %s still present; removing them", name, ", ".join(stale))
                remove_inputs(self.store, [f"{self.directory(partition)}/{n}" for n in stale])
                left -= set(stale)
        return left

    def covered(self, partition: Partition, names: Iterable[str]) -> set[str]:
        """Window stamps held by the partition's compacted files (a replayed window is not rewritten)."""
        held: set[str] = set()
        for name in names:
            parsed = parse_name(name)
            if parsed is not None and parsed.compacted:
                held.update(_names(self._footer(partition, name), META_WINDOWS))
        return held

    def compact(self, partition: Partition) -> list[str]:
        """Merge the partition's small files; returns the compacted files written."""
        directory = self.directory(partition)
        infos = {i.base_name: i for i in self.store.listing(directory) if parse_name(i.base_name) is not None}
        left = self.recover(partition, infos)
        sizes = {n: infos[n].size or 0 for n in left}
        written = []
        for group in _groups(_small_units(sizes, self.options.target_bytes // 2), sizes, self.options.target_bytes):
            if len(group) >= max(2, self.options.min_files):
                name = self._merge(partition, group)
                if name is not None:
                    written.append(name)
        return written

    def _merge(self, partition: Partition, group: Sequence[str]) -> str | None:
        directory = self.directory(partition)
        tables, used, windows = [], [], set()
        for name in group:
            try:
                table = self.store.read_table(f"{directory}/{name}")
            except Exception as exc:
                if not is_corrupt(exc):
                    raise
                self.quarantine(partition, name, exc)
                continue
            parsed = parse_name(name)
            assert parsed is not None
            windows.update(_window_stamps(parsed, table.schema.metadata or {}))
            tables.append(table.replace_schema_metadata(_arrow_schema_only(table.schema.metadata)))
            used.append(name)
        if len(used) < 2:
            return None
        merged = sort_points(pa.concat_tables(tables, promote_options="permissive"))
        tag = hashlib.sha1("\n".join(used).encode()).hexdigest()[:8]
        ordered = sorted(windows)
        name = compacted_name(ordered[0], ordered[-1], tag)
        metadata = {**(merged.schema.metadata or {}), META_INPUTS: json.dumps(used), META_WINDOWS: json.dumps(ordered)}
        merged = merged.replace_schema_metadata(metadata)
        options = self.writer.for_compaction()
        kwargs = options.kwargs(merged.schema, sorting=SORT_KEYS)
        bounds = type_row_groups(merged, options.row_group_size)
        self.store.write_table(f"{directory}/{name}", merged, kwargs, row_groups=bounds)
        remove_inputs(self.store, [f"{directory}/{n}" for n in used])
        log.info("parquet: compacted %d files of %s into %s (%d rows)", len(used), partition.path, name, len(merged))
        return name

    def quarantine(self, partition: Partition, name: str, exc: BaseException) -> None:
        """Move an unreadable file out of the dataset, keeping it for inspection."""
        source = f"{self.directory(partition)}/{name}"
        destination = self.store.path(QUARANTINE, POINTS, partition.path, f"{name}.corrupt")
        self.store.move(source, destination)
        log.error("%s", StoreError(f"{source}: unreadable Parquet ({exc}); moved to {destination}"))

    def _footer(self, partition: Partition, name: str) -> dict[bytes, bytes]:
        path = f"{self.directory(partition)}/{name}"
        try:
            return dict(self.store.read_metadata(path).metadata or {})
        except Exception as exc:
            if not is_corrupt(exc):
                raise
            self.quarantine(partition, name, exc)
            return {}


def remove_inputs(store: Store, paths: Sequence[str]) -> None:
    """Step 2 of a compaction (a function of its own so a test can crash the process right here)."""
    for path in paths:
        store.delete(path)


def sort_points(table: pa.Table) -> pa.Table:
    """Rows by :data:`SORT_KEYS` (string order for dictionary columns, nulls last)."""
    table = table.unify_dictionaries().combine_chunks()
    keys = [_sort_key(table.column(k)) for k in SORT_KEYS if k in table.column_names]
    if not keys or table.num_rows < 2:
        return table
    return table.take(pa.array(np.lexsort(keys[::-1])))


def _sort_key(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        dictionary = array.dictionary
        rank = np.empty(len(dictionary) + 1, np.int64)
        rank[pc.sort_indices(dictionary).to_numpy()] = np.arange(len(dictionary))
        rank[len(dictionary)] = len(dictionary)  # nulls last
        indices = array.indices.cast(pa.int64()).fill_null(len(dictionary)).to_numpy(zero_copy_only=False)
        key: np.ndarray = rank[indices]
        return key
    if pa.types.is_timestamp(array.type) or pa.types.is_integer(array.type):
        values = array.cast(pa.int64()).fill_null(np.iinfo(np.int64).max)
        return np.asarray(values.to_numpy(zero_copy_only=False))
    return _sort_key(pa.chunked_array([pc.dictionary_encode(array)]))


def _small_units(sizes: dict[str, int], half: int) -> list[list[str]]:
    """Small files in time order, the parts of one window kept together (a window is merged whole
    or not at all, so the listing alone always tells whether a window is complete)."""
    units: dict[str, list[str]] = {}
    for name in sizes:
        parsed = parse_name(name)
        assert parsed is not None
        units.setdefault(name if parsed.compacted else f"w-{parsed.first}", []).append(name)
    small = []
    for key, names in units.items():
        parsed = parse_name(names[0])
        assert parsed is not None
        whole = parsed.compacted or len(names) == parsed.parts
        if whole and sum(sizes[n] for n in names) < half:
            small.append((parsed.first, key, sorted(names)))
    return [names for _, _, names in sorted(small)]


def _groups(units: Sequence[list[str]], sizes: dict[str, int], target: int) -> list[list[str]]:
    """Consecutive units whose sizes add up to at most ``target`` (a unit alone may exceed it)."""
    groups: list[list[str]] = []
    size = 0
    for unit in units:
        unit_size = sum(sizes[n] for n in unit)
        if not groups or size + unit_size > target:
            groups.append([])
            size = 0
        groups[-1].extend(unit)
        size += unit_size
    return groups


def _window_stamps(parsed: FileName, metadata: dict[bytes, bytes]) -> list[str]:
    return _names(metadata, META_WINDOWS) if parsed.compacted else [parsed.first]


def _names(metadata: dict[bytes, bytes], key: bytes) -> list[str]:
    raw = metadata.get(key)
    if raw is None:
        return []
    value = json.loads(raw)
    return [str(v) for v in value] if isinstance(value, list) else []


def _arrow_schema_only(metadata: dict[bytes, bytes] | None) -> dict[bytes, bytes]:
    """Drop a previous compaction's bookkeeping before merging (it is rewritten for the new file)."""
    return {k: v for k, v in (metadata or {}).items() if k not in (META_INPUTS, META_WINDOWS)}
