"""Dimension snapshots: the pods, containers, namespaces and nodes tables, stored when they change.

The collector replaces a table when list+watch sees a change and hands the same object to every
window until then, so identity tells "unchanged" for free. After a restart the objects are new:
the newest snapshot on disk is read back once and compared by content, so a restart alone does not
store a copy. Each snapshot is one file ``<root>/<table>/v-<stamp>.parquet`` whose rows carry
``valid_from`` (the end of the first window enriched with it): a notebook joins points to the
snapshot in force with an as-of join on ``timestamp >= valid_from``.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pyarrow as pa

from heapster_columnar.errors import StoreError
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.schema import TIME
from heapster_columnar.sinks._parquet_fs import Store, is_corrupt
from heapster_columnar.sinks._parquet_layout import DIMENSION_TABLES, snapshot_name
from heapster_columnar.sinks._parquet_write import WriterOptions

__all__ = ["VALID_FROM", "DimensionWriter"]

log = logging.getLogger("heapster_columnar.sinks.parquet")

VALID_FROM = pa.field("valid_from", TIME, nullable=False).with_metadata(
    {"doc": "end of the first window enriched with this snapshot; in force until the next snapshot's"}
)


class DimensionWriter:
    """Remembers the last stored table of each kind; ``write`` stores only the ones that changed."""

    def __init__(self, store: Store, options: WriterOptions) -> None:
        self._store, self._options = store, options
        self._last: dict[str, pa.Table] = {}
        self._last_dimensions: Dimensions | None = None

    def write(self, dimensions: Dimensions, valid_from: datetime) -> list[str]:
        """Store each changed table; returns the names of those written."""
        if dimensions is self._last_dimensions:
            return []
        written = []
        for name in DIMENSION_TABLES:
            table: pa.Table = getattr(dimensions, name)
            last = self._last.get(name)
            if last is table:
                continue
            if last is None:
                last = self._newest_on_disk(name)
            if last is None or not _same(last, table):
                self._store_snapshot(name, table, valid_from)
                written.append(name)
            self._last[name] = table
        self._last_dimensions = dimensions
        return written

    def _store_snapshot(self, name: str, table: pa.Table, valid_from: datetime) -> None:
        stamped = table.append_column(VALID_FROM, pa.array([valid_from] * table.num_rows, TIME))
        directory = self._store.path(name)
        self._store.create_dir(directory)
        kwargs = self._options.kwargs(stamped.schema)
        self._store.write_table(f"{directory}/{snapshot_name(valid_from)}", stamped, kwargs)

    def _newest_on_disk(self, name: str) -> pa.Table | None:
        """The newest readable snapshot of ``name`` without ``valid_from``, or None."""
        infos = [i for i in self._store.listing(self._store.path(name)) if i.base_name.endswith(".parquet")]
        for info in sorted(infos, key=lambda i: i.base_name, reverse=True):
            try:
                table = self._store.read_table(info.path)
            except Exception as exc:
                if not is_corrupt(exc):
                    raise
                log.error("%s", StoreError(f"{info.path}: unreadable dimension snapshot ({exc}); ignored"))
                continue
            return table.drop_columns([VALID_FROM.name]) if VALID_FROM.name in table.column_names else table
        return None


def _same(stored: pa.Table, table: pa.Table) -> bool:
    if stored.column_names != table.column_names:
        return False
    try:
        return bool(stored.cast(table.schema).equals(table))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
