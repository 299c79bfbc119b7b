"""SQL against one open DuckDB file: tables, one transaction per window, dimension versions, age.

Everything is set-based: a window's points go in with one ``INSERT ... SELECT`` over the Arrow
table (registered, not copied), a dimension table is diffed against its current version with two
anti-joins. Errors are DuckDB's own; ``duckdb.py`` turns them into ``SinkError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from heapster_columnar.sinks._duckdb_schema import (
    DIMENSIONS,
    POINTS,
    create_statements,
    expected_columns,
    extra_labels,
    mismatches,
    quote,
)

# Rows per Arrow record batch handed to DuckDB (zero-copy slices): its Arrow scan hands out whole
# batches to threads, and a window from ``to_points`` is one 8-13 M row chunk. One row group's
# worth keeps both cores busy to the end (5,000 nodes: 17.7 s wall vs 22.2 s with 1 M-row batches).
BATCH_ROWS = 122_880
_POINTS_VIEW = "_heapster_window_points"
_DIMENSION_VIEW = "_heapster_window_dimension"


class SchemaMismatch(Exception):
    """The file is a DuckDB database, but its tables are not the ones this sink writes."""


class Store:
    """One writer connection; every method runs on the caller's thread (the sink holds a lock)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    @classmethod
    def open(cls, path: Path, *, threads: int | None) -> Store:
        """Open (or create) the file and its tables; a foreign ``points`` table is refused untouched."""
        config: dict[str, str | bool | int | float | list[str]] = {"threads": threads} if threads else {}
        con = duckdb.connect(str(path), config=config)
        try:
            problems = mismatches(_columns(con))
            if problems:
                raise SchemaMismatch("; ".join(problems))
            con.execute("BEGIN TRANSACTION")
            for statement in create_statements():
                con.execute(statement)
            con.execute("COMMIT")
        except BaseException:
            con.close()
            raise
        return cls(con)

    def append(self, points: pa.Table, end: datetime, dimensions: Mapping[str, pa.Table]) -> None:
        """The window's points and changed dimension tables, all in one transaction or not at all."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            self._add_label_columns(points.schema)
            con.register(_POINTS_VIEW, _for_scan(points))
            names = ", ".join(quote(name) for name in points.column_names)
            con.execute(f"INSERT INTO {POINTS} ({names}) SELECT {names} FROM {_POINTS_VIEW}")
            for table, rows in dimensions.items():
                self._version(table, rows, end)
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        finally:  # after the rollback: an aborted transaction refuses even this
            for view in (_POINTS_VIEW, _DIMENSION_VIEW):
                with contextlib.suppress(duckdb.Error):
                    con.unregister(view)

    def delete_before(self, cutoff: datetime) -> int:
        """Points stamped before ``cutoff`` and dimension versions that ended by then; rows deleted."""
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            deleted = _count(con.execute(f"DELETE FROM {POINTS} WHERE timestamp < $cutoff", {"cutoff": cutoff}))
            for table in DIMENSIONS:
                sql = f"DELETE FROM {table} WHERE valid_to <= $cutoff"
                deleted += _count(con.execute(sql, {"cutoff": cutoff}))
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
        return deleted

    def checkpoint(self) -> None:
        """Fold the WAL into the file (and drop deleted row groups): the file alone is then complete."""
        self.con.execute("CHECKPOINT")

    def close(self) -> None:
        self.con.close()

    def _add_label_columns(self, schema: pa.Schema) -> None:
        """``ALTER TABLE`` for copied labels the file has not seen yet (inside the window's transaction)."""
        present = {name for name, _ in _columns(self.con).get(POINTS, ())}
        for name in extra_labels(schema):
            if name not in present:
                self.con.execute(f"ALTER TABLE {POINTS} ADD COLUMN {quote(name)} VARCHAR")

    def _version(self, table: str, rows: pa.Table, end: datetime) -> None:
        """Close current versions that are not in ``rows`` and open the rows that are new (SCD type 2).

        Whole rows are compared (``IS NOT DISTINCT FROM``, so nulls and label maps count), so an
        unchanged table writes nothing even when the collector rebuilt it.
        """
        columns = [quote(name) for name in DIMENSIONS[table].names]
        same = " AND ".join(f"n.{c} IS NOT DISTINCT FROM t.{c}" for c in columns)
        listed = ", ".join(columns)
        self.con.register(_DIMENSION_VIEW, rows.select(DIMENSIONS[table].names))
        self.con.execute(
            f"UPDATE {table} AS t SET valid_to = $end WHERE t.valid_to IS NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {_DIMENSION_VIEW} AS n WHERE {same})",
            {"end": end},
        )
        self.con.execute(
            f"INSERT INTO {table} ({listed}, valid_from) SELECT {listed}, $end FROM {_DIMENSION_VIEW} AS n "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.valid_to IS NULL AND {same})",
            {"end": end},
        )


def _for_scan(points: pa.Table) -> pa.Table:
    """One dictionary per column (a chunked table may carry a full dictionary per chunk, which
    DuckDB would convert chunk by chunk), cut into batches both threads can scan."""
    if any(column.num_chunks > 1 for column in points.columns):
        points = points.combine_chunks()
    return pa.Table.from_batches(points.to_batches(max_chunksize=BATCH_ROWS), points.schema)


def _columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    """(name, type) of the columns of our tables that exist in the file's main schema."""
    rows = con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ANY($tables) "
        "ORDER BY table_name, column_index",
        {"tables": list(expected_columns())},
    ).fetchall()
    found: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in rows:
        found.setdefault(table, []).append((column, kind))
    return found


def _count(result: duckdb.DuckDBPyConnection) -> int:
    row = result.fetchone()
    return int(row[0]) if row else 0


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Undo the open transaction; if DuckDB cannot (a fatal error invalidated it), the caller's
    error is the one to report, and the sink reopens the file on the next window."""
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")
