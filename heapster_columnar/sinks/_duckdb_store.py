"""SQL against one open DuckDB file: tables, one transaction per window, dimension versions, age.

Everything is set-based: a window's points are split into metric sets (``_duckdb_sets.py``), the
sets' label columns become ids in Arrow (``_duckdb_vocabulary.py``), then sets, points and new
strings go in with one ``INSERT ... SELECT`` each over Arrow tables (registered, not copied); a
dimension table is diffed against its current version with two anti-joins. Errors are DuckDB's
own; ``duckdb.py`` turns them into ``SinkError``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import duckdb
import numpy as np
import pyarrow as pa

from heapster_columnar.sinks._duckdb_migrate import migrate
from heapster_columnar.sinks._duckdb_schema import (
    CODED,
    DIMENSIONS,
    FACTS,
    POINT_OWN,
    POINT_SET,
    POINTS,
    SET_CONTRACT,
    SET_ID,
    SETS,
    VOCABULARY,
    Relation,
    SchemaMismatch,
    create_statements,
    extra_labels,
    extra_labels_of,
    layout,
    mismatches,
    quote,
    view_statement,
    vocabulary_key,
    vocabulary_statement,
    vocabulary_table,
)
from heapster_columnar.sinks._duckdb_sets import split
from heapster_columnar.sinks._duckdb_vocabulary import Encoded, Vocabulary, VocabularyError

log = logging.getLogger("heapster_columnar.sinks.duckdb")
T = TypeVar("T")

# Rows per Arrow record batch handed to DuckDB (zero-copy slices): its Arrow scan hands out whole
# batches to threads. One row group's worth keeps both cores busy to the end.
BATCH_ROWS = 122_880
# Rows need not keep the window's order (readers sort or group; the round-trip tests compare
# sorted rows), and without it both threads append at once: 8 M points 1.3-1.45 s instead of 1.9-2.3 s.
CONFIG: dict[str, str | bool | int | float | list[str]] = {"preserve_insertion_order": False}
_SETS_VIEW = "_heapster_window_sets"
_POINTS_VIEW = "_heapster_window_points"
_VALUES_VIEW = "_heapster_window_values"
_DIMENSION_VIEW = "_heapster_window_dimension"


class Store:
    """One writer connection; every method runs on the caller's thread (the sink holds a lock)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, vocabulary: Vocabulary, next_set: int) -> None:
        self.con = con
        self.vocabulary = vocabulary  # what the file's label_values holds, as of the last commit
        self.next_set = next_set  # the id the next window's first metric set gets

    @classmethod
    def open(cls, path: Path, *, threads: int | None) -> Store:
        """Open (or create) the file and its tables; a file of an earlier layout is converted in
        one transaction; foreign tables are refused untouched."""
        config = {**CONFIG, "threads": threads} if threads else dict(CONFIG)
        con = duckdb.connect(str(path), config=config)
        try:
            found = _relations(con)
            problems = mismatches(found)
            if problems:
                raise SchemaMismatch("; ".join(problems))
            if layout(found) in (1, 2):
                _convert(con, path, found)
            vocabulary = _load_vocabulary(con)  # checked before anything is written
            _transaction(con, lambda: _create(con))
            ((highest,),) = con.execute(f"SELECT coalesce(max({SET_ID}), 0) FROM {SETS}").fetchall()
        except BaseException:
            con.close()
            raise
        return cls(con, vocabulary, int(highest) + 1)

    def append(
        self, points: pa.Table, end: datetime, dimensions: Mapping[str, pa.Table], entities: np.ndarray | None = None
    ) -> None:
        """The window's metric sets, points, new strings and changed dimension tables, all in one
        transaction or not at all; the in-memory vocabulary takes the new strings after the commit.

        ``entities``: the entity row of each point (``Window.point_entities``), if known.
        """
        # Before the transaction, and no I/O: an error here (a label that is no string) leaves nothing to undo.
        sets, rows = self._encode(points, entities)
        try:
            _transaction(self.con, lambda: self._insert(sets, rows, end, dimensions))
        finally:  # after the rollback: an aborted transaction refuses even this
            for view in (_VALUES_VIEW, _SETS_VIEW, _POINTS_VIEW, _DIMENSION_VIEW):
                with contextlib.suppress(duckdb.Error):
                    self.con.unregister(view)
        self.vocabulary.add(sets)
        self.next_set += sets.codes.num_rows

    def delete_before(self, cutoff: datetime) -> int:
        """Points stamped before ``cutoff`` (their sets and rows) and dimension versions that
        ended by then; rows deleted.

        ``label_values`` keeps every string: ids must keep meaning what they meant in the rows a
        snapshot reader has, and a string is stored once however many windows use it, so the
        vocabulary stays small next to the points (5,000 nodes: 464,000 strings of 15 MB, against
        91 MB of sets and points per window).
        """

        def work() -> int:
            old = f"SELECT {SET_ID} FROM {SETS} WHERE timestamp < $cutoff"
            deleted = _count(self.con.execute(f"DELETE FROM {FACTS} WHERE {POINT_SET} IN ({old})", {"cutoff": cutoff}))
            self.con.execute(f"DELETE FROM {SETS} WHERE timestamp < $cutoff", {"cutoff": cutoff}).fetchall()
            for table in DIMENSIONS:
                sql = f"DELETE FROM {table} WHERE valid_to <= $cutoff"
                deleted += _count(self.con.execute(sql, {"cutoff": cutoff}))
            return deleted

        return _transaction(self.con, work)

    def checkpoint(self) -> None:
        """Fold the WAL into the file (and drop deleted row groups): the file alone is then complete."""
        self.con.execute("CHECKPOINT")

    def close(self) -> None:
        self.con.close()

    def _encode(self, points: pa.Table, entities: np.ndarray | None) -> tuple[Encoded, pa.Table]:
        """(the window's metric sets with ids, its point rows): Arrow only, nothing written."""
        set_names = [*SET_CONTRACT, *extra_labels(points.schema)]
        parts = split(points, set_names, entities)
        coded = [name for name in set_names if name in CODED or name not in SET_CONTRACT]
        sets = self.vocabulary.encode(parts.sets, coded)
        metric = self.vocabulary.encode(points.select(["metric"]), ["metric"])
        ids = pa.array(np.arange(self.next_set, self.next_set + parts.sets.num_rows, dtype=np.int64))
        sets = Encoded(sets.codes.add_column(0, SET_ID, ids), {**sets.additions, **metric.additions})
        owner = pa.array(parts.set_of_point + self.next_set)
        rows = pa.table(
            {
                POINT_SET: owner,
                **{name: metric.codes.column(0) if name == "metric" else points.column(name) for name in POINT_OWN},
            }
        )
        return sets, rows

    def _insert(self, sets: Encoded, rows: pa.Table, end: datetime, dimensions: Mapping[str, pa.Table]) -> None:
        """The window's statements, inside its transaction."""
        con = self.con
        self._add_label_columns(sets.codes.column_names)
        for label in sets.additions:
            con.register(_VALUES_VIEW, sets.new_values(label))
            con.execute(f"INSERT INTO {vocabulary_table(label)} (id, value) SELECT id, value FROM {_VALUES_VIEW}")
        for view, table, data in ((_SETS_VIEW, SETS, sets.codes), (_POINTS_VIEW, FACTS, rows)):
            con.register(view, _for_scan(data))
            listed = ", ".join(quote(name) for name in data.column_names)
            con.execute(f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {view}")
        for table, dimension in dimensions.items():
            self._version(table, dimension, end)

    def _add_label_columns(self, names: list[str]) -> None:
        """An id column, a strings table and a new view for copied labels the file has not seen yet
        (inside the window's transaction, so a rolled-back window leaves none of them)."""
        present = _set_columns(self.con)
        new = [name for name in extra_labels_of(names) if name not in present]
        for name in new:
            self.con.execute(f"ALTER TABLE {SETS} ADD COLUMN {quote(name)} INTEGER")
            self.con.execute(vocabulary_statement(name))
        if new:
            self.con.execute(view_statement([*present, *new]))

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


def _create(con: duckdb.DuckDBPyConnection) -> None:
    """Every table that does not exist yet, and the view over the metric sets' columns."""
    for statement in create_statements():
        con.execute(statement)
    sets = _set_columns(con)
    for name in extra_labels_of(sets):
        con.execute(vocabulary_statement(name))
    con.execute(view_statement(sets))


_LAYOUTS = {
    1: "the first layout (a points table of strings)",
    2: "the second layout (point_rows with an id column per label)",
}


def _convert(con: duckdb.DuckDBPyConnection, path: Path, found: Mapping[str, Relation]) -> None:
    """A file of an earlier layout to metric sets, point rows and the view, in one transaction
    (see ``_duckdb_migrate``)."""
    started, earlier = time.perf_counter(), layout(found)
    converted = _transaction(con, lambda: migrate(con, found))
    log.info(
        "duckdb: %s: converted %d points of %s to %s + %s with ids, %s.* and a points view in %.1f s",
        path,
        converted,
        _LAYOUTS[earlier],
        SETS,
        FACTS,
        VOCABULARY,
        time.perf_counter() - started,
    )
    con.execute("CHECKPOINT")  # the old table's blocks become free for the next windows


def _transaction(con: duckdb.DuckDBPyConnection, work: Callable[[], T]) -> T:
    """``work`` committed whole or rolled back whole."""
    con.execute("BEGIN TRANSACTION")
    try:
        result = work()
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise
    return result


def _for_scan(codes: pa.Table) -> pa.Table:
    """Cut into batches both threads can scan (slices: no copy; chunks need not line up)."""
    return pa.Table.from_batches(codes.to_batches(max_chunksize=BATCH_ROWS), codes.schema)


def _relations(con: duckdb.DuckDBPyConnection) -> dict[str, Relation]:
    """Our tables and views in the file, with their columns; label tables keyed by ``vocabulary_key``."""
    rows = con.execute(
        "SELECT c.schema_name, c.table_name, CASE WHEN v.view_name IS NULL THEN 'table' ELSE 'view' END, "
        "c.column_name, c.data_type FROM duckdb_columns() AS c LEFT JOIN duckdb_views() AS v "
        "ON v.database_name = c.database_name AND v.schema_name = c.schema_name AND v.view_name = c.table_name "
        "WHERE c.database_name = current_database() "
        "AND (c.schema_name = 'main' AND c.table_name = ANY($names) OR c.schema_name = $vocabulary) "
        "ORDER BY c.schema_name, c.table_name, c.column_index",
        {"names": [POINTS, SETS, FACTS, *DIMENSIONS], "vocabulary": VOCABULARY},
    ).fetchall()
    kinds: dict[str, str] = {}
    columns: dict[str, list[tuple[str, str]]] = {}
    for schema, name, kind, column, data_type in rows:
        key = name if schema == "main" else vocabulary_key(name)
        kinds[key] = kind
        columns.setdefault(key, []).append((column, data_type))
    return {key: Relation(kinds[key], tuple(columns[key])) for key in kinds}


def _set_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = $table ORDER BY column_index",
        {"table": SETS},
    ).fetchall()
    return [name for (name,) in rows]


def _load_vocabulary(con: duckdb.DuckDBPyConnection) -> Vocabulary:
    """The in-memory vocabulary, rebuilt from the file (it is only ever added to after a commit)."""
    labels = [
        name
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = $s",
            {"s": VOCABULARY},
        ).fetchall()
    ]
    tables = {label: con.sql(f"SELECT id, value FROM {vocabulary_table(label)}").to_arrow_table() for label in labels}
    try:
        return Vocabulary.from_tables(tables)
    except VocabularyError as error:
        raise SchemaMismatch(str(error)) from error


def _count(result: duckdb.DuckDBPyConnection) -> int:
    rows = result.fetchall()  # to the end: DuckDB refuses the next statement while a result is open
    return int(rows[0][0]) if rows else 0


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Undo the open transaction; if DuckDB cannot (a fatal error invalidated it), the caller's
    error is the one to report, and the sink reopens the file on the next window."""
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")
