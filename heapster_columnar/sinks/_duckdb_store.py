"""SQL against one open DuckDB file: tables, one transaction per window, dimension versions, age.

Everything is set-based: a window's label columns become ids in Arrow (``_duckdb_vocabulary.py``),
then its rows go in with one ``INSERT ... SELECT`` over that table (registered, not copied), its
new strings with another; a dimension table is diffed against its current version with two
anti-joins. Errors are DuckDB's own; ``duckdb.py`` turns them into ``SinkError``.
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
import pyarrow as pa

from heapster_columnar.sinks._duckdb_migrate import migrate
from heapster_columnar.sinks._duckdb_schema import (
    CODED,
    DIMENSIONS,
    FACTS,
    POINTS,
    VOCABULARY,
    Relation,
    SchemaMismatch,
    create_statements,
    extra_labels,
    extra_labels_of,
    is_legacy,
    mismatches,
    quote,
    view_statement,
    vocabulary_key,
    vocabulary_statement,
    vocabulary_table,
)
from heapster_columnar.sinks._duckdb_vocabulary import Encoded, Vocabulary, VocabularyError

log = logging.getLogger("heapster_columnar.sinks.duckdb")
T = TypeVar("T")

# Rows per Arrow record batch handed to DuckDB (zero-copy slices): its Arrow scan hands out whole
# batches to threads. One row group's worth keeps both cores busy to the end.
BATCH_ROWS = 122_880
# Rows need not keep the window's order (readers sort or group; the round-trip tests compare
# sorted rows), and without it both threads append at once: 8 M points 2.8 s instead of 4.0 s.
CONFIG: dict[str, str | bool | int | float | list[str]] = {"preserve_insertion_order": False}
_POINTS_VIEW = "_heapster_window_points"
_VALUES_VIEW = "_heapster_window_values"
_DIMENSION_VIEW = "_heapster_window_dimension"


class Store:
    """One writer connection; every method runs on the caller's thread (the sink holds a lock)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, vocabulary: Vocabulary) -> None:
        self.con = con
        self.vocabulary = vocabulary  # what the file's label_values holds, as of the last commit

    @classmethod
    def open(cls, path: Path, *, threads: int | None) -> Store:
        """Open (or create) the file and its tables; a file of the first layout is converted in one
        transaction; foreign tables are refused untouched."""
        config = {**CONFIG, "threads": threads} if threads else dict(CONFIG)
        con = duckdb.connect(str(path), config=config)
        try:
            found = _relations(con)
            problems = mismatches(found)
            if problems:
                raise SchemaMismatch("; ".join(problems))
            legacy = found.get(POINTS)
            if legacy is not None and is_legacy(legacy):
                _convert(con, path, legacy)
                vocabulary = _load_vocabulary(con)
            else:
                vocabulary = _load_vocabulary(con)  # checked before anything is written
                _transaction(con, lambda: _create(con))
        except BaseException:
            con.close()
            raise
        return cls(con, vocabulary)

    def append(self, points: pa.Table, end: datetime, dimensions: Mapping[str, pa.Table]) -> None:
        """The window's points, their new strings and changed dimension tables, all in one
        transaction or not at all; the in-memory vocabulary takes the new strings after the commit."""
        coded = {*CODED, *extra_labels(points.schema)}
        # Before the transaction, and no I/O: an error here (a label that is no string) leaves nothing to undo.
        encoded = self.vocabulary.encode(points, [name for name in points.column_names if name in coded])
        try:
            _transaction(self.con, lambda: self._insert(encoded, points.column_names, end, dimensions))
        finally:  # after the rollback: an aborted transaction refuses even this
            for view in (_VALUES_VIEW, _POINTS_VIEW, _DIMENSION_VIEW):
                with contextlib.suppress(duckdb.Error):
                    self.con.unregister(view)
        self.vocabulary.add(encoded)

    def delete_before(self, cutoff: datetime) -> int:
        """Points stamped before ``cutoff`` and dimension versions that ended by then; rows deleted.

        ``label_values`` keeps every string: ids must keep meaning what they meant in the rows a
        snapshot reader has, and a string is stored once however many windows use it, so the
        vocabulary stays small next to the points (5,000 nodes: 464,000 strings of 15 MB, against
        260 MB of points per window).
        """

        def work() -> int:
            deleted = _count(self.con.execute(f"DELETE FROM {FACTS} WHERE timestamp < $cutoff", {"cutoff": cutoff}))
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

    def _insert(self, encoded: Encoded, names: list[str], end: datetime, dimensions: Mapping[str, pa.Table]) -> None:
        """The window's statements, inside its transaction."""
        con = self.con
        self._add_label_columns(names)
        for label in encoded.additions:
            con.register(_VALUES_VIEW, encoded.new_values(label))
            con.execute(f"INSERT INTO {vocabulary_table(label)} (id, value) SELECT id, value FROM {_VALUES_VIEW}")
        con.register(_POINTS_VIEW, _for_scan(encoded.codes))
        listed = ", ".join(quote(name) for name in names)
        con.execute(f"INSERT INTO {FACTS} ({listed}) SELECT {listed} FROM {_POINTS_VIEW}")
        for table, rows in dimensions.items():
            self._version(table, rows, end)

    def _add_label_columns(self, names: list[str]) -> None:
        """An id column, a strings table and a new view for copied labels the file has not seen yet
        (inside the window's transaction, so a rolled-back window leaves none of them)."""
        present = _fact_columns(self.con)
        new = [name for name in extra_labels_of(names) if name not in present]
        for name in new:
            self.con.execute(f"ALTER TABLE {FACTS} ADD COLUMN {quote(name)} INTEGER")
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
    """Every table that does not exist yet, and the view over the fact table's columns."""
    for statement in create_statements():
        con.execute(statement)
    facts = _fact_columns(con)
    for name in extra_labels_of(facts):
        con.execute(vocabulary_statement(name))
    con.execute(view_statement(facts))


def _convert(con: duckdb.DuckDBPyConnection, path: Path, legacy: Relation) -> None:
    """A file of the first layout to ids and the view, in one transaction (see ``_duckdb_migrate``)."""
    started = time.perf_counter()

    def work() -> int:
        for statement in create_statements():
            con.execute(statement)
        return migrate(con, [name for name, _ in legacy.columns])

    converted = _transaction(con, work)
    log.info(
        "duckdb: %s: converted %d points of the first layout (a points table of strings) to %s with ids, "
        "%s.* and a points view in %.1f s",
        path,
        converted,
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
        {"names": [POINTS, FACTS, *DIMENSIONS], "vocabulary": VOCABULARY},
    ).fetchall()
    kinds: dict[str, str] = {}
    columns: dict[str, list[tuple[str, str]]] = {}
    for schema, name, kind, column, data_type in rows:
        key = name if schema == "main" else vocabulary_key(name)
        kinds[key] = kind
        columns.setdefault(key, []).append((column, data_type))
    return {key: Relation(kinds[key], tuple(columns[key])) for key in kinds}


def _fact_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = $table ORDER BY column_index",
        {"table": FACTS},
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
