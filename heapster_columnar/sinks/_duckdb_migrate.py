"""Files of the earlier layouts converted to metric sets, inside the caller's open transaction.

All in SQL, no row through Python:

- layout 1 (a ``points`` table of strings): each string column's distinct strings become its
  ``label_values`` table (ids in string order, after any ids the table already has), the rows go
  into an intermediate table of ids (:func:`ids_columns`, then one ``INTEGER`` per copied label)
  through one join per string column, the row counts are compared and the old table is dropped;
- layout 2 (``point_rows`` of ids, one column per label): the ``points`` view is dropped and the
  table renamed to the intermediate one;

then both go on the same way: the new tables (:func:`create_statements`), the copied labels as
``INTEGER`` columns of ``metric_sets``, one ``metric_sets`` row per distinct combination of the set
columns (ids 1..n in order of time, then of the other set columns), the points joined to their set
(on a hash of the set columns when no two sets share one, else on every set column ``IS NOT
DISTINCT FROM``: most labels are null for most sets) and written in set order, the row counts
compared, the intermediate table dropped and the view created. The caller commits, or rolls back
on any error, which leaves the file exactly as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb

from heapster_columnar.sinks._duckdb_schema import (
    CODED,
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
    extra_labels_of,
    ids_columns,
    layout,
    quote,
    view_statement,
    vocabulary_statement,
    vocabulary_table,
)

IDS = "_point_rows_ids"  # the intermediate table: layout 2's rows (ids, one column per label)


def migrate(con: duckdb.DuckDBPyConnection, found: Mapping[str, Relation]) -> int:
    """Convert a file of layout 1 or 2 (``layout(found)``) to layout 3 inside the caller's open
    transaction; returns the number of points converted.

    ``found``: the file's relations as the store reads them from the catalog (before anything was
    created in this transaction). Raises :class:`SchemaMismatch` for any other layout, or when a
    row count does not match; the caller must then roll back.
    """
    kind = layout(found)
    if kind == 1:
        extras = _from_strings(con, [name for name, _ in found[POINTS].columns])
    elif kind == 2:
        extras = _from_ids(con, [name for name, _ in found[FACTS].columns])
    else:
        raise SchemaMismatch(f"cannot convert a file of layout {kind}: only layouts 1 and 2 are converted")
    return _to_sets(con, extras)


def _from_strings(con: duckdb.DuckDBPyConnection, columns: Sequence[str]) -> list[str]:
    """Layout 1: the ``points`` table of strings to the intermediate table of ids and
    ``label_values``; the table dropped. Returns the copied labels."""
    extras = extra_labels_of(columns)
    coded = [name for name in columns if name in CODED or name in extras]
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {VOCABULARY}")
    for name in coded:
        con.execute(vocabulary_statement(name))
        # ids in string order after those the table may hold (none in a file of the first layout)
        table, column = vocabulary_table(name), quote(name)
        con.execute(
            f"INSERT INTO {table} (id, value) "
            f"SELECT (SELECT coalesce(max(id), 0) FROM {table}) + row_number() OVER (ORDER BY value), value "
            f"FROM (SELECT DISTINCT {column} AS value FROM {POINTS} WHERE {column} IS NOT NULL "
            f"EXCEPT SELECT value FROM {table})"
        )
    kinds = dict(ids_columns())
    definition = [f"{quote(name)} {kinds.get(name, 'INTEGER')}" for name in columns]
    con.execute(f"CREATE TABLE {IDS} ({', '.join(definition)})")
    select, joins = [], []
    for k, name in enumerate(columns):
        if name in coded:
            joins.append(f"LEFT JOIN {vocabulary_table(name)} AS v{k} ON v{k}.value = p.{quote(name)}")
            select.append(f"v{k}.id")
        else:
            select.append(f"p.{quote(name)}")
    listed = ", ".join(quote(name) for name in columns)
    con.execute(f"INSERT INTO {IDS} ({listed}) SELECT {', '.join(select)} FROM {POINTS} AS p {' '.join(joins)}")
    before, after = _count(con, POINTS), _count(con, IDS)
    if before != after:
        raise SchemaMismatch(f"converting the first layout: {before} rows in {POINTS} but {after} with ids")
    con.execute(f"DROP TABLE {POINTS}")
    return extras


def _from_ids(con: duckdb.DuckDBPyConnection, columns: Sequence[str]) -> list[str]:
    """Layout 2: the view dropped, ``point_rows`` renamed to the intermediate table. Returns the
    copied labels."""
    con.execute(f"DROP VIEW IF EXISTS {POINTS}")
    con.execute(f"ALTER TABLE {FACTS} RENAME TO {IDS}")
    return extra_labels_of(columns)


def _to_sets(con: duckdb.DuckDBPyConnection, extras: Sequence[str]) -> int:
    """The intermediate table (layout 2's rows) to ``metric_sets`` and ``point_rows``, then the view."""
    for statement in create_statements():
        con.execute(statement)
    for name in extras:
        con.execute(f"ALTER TABLE {SETS} ADD COLUMN {quote(name)} INTEGER")
        con.execute(vocabulary_statement(name))
    keys = [quote(name) for name in (*SET_CONTRACT, *extras)]
    listed = ", ".join(keys)
    # Ids grow with time (then follow the labels' ids, which only makes the order deterministic).
    con.execute(
        f"INSERT INTO {SETS} ({SET_ID}, {listed}) "
        f"SELECT row_number() OVER (ORDER BY {listed}), {listed} FROM (SELECT DISTINCT {listed} FROM {IDS})"
    )
    own = ", ".join(quote(name) for name in POINT_OWN)
    # In set order: a window's points follow its sets, so a filter on the sets skips row groups.
    con.execute(
        f"INSERT INTO {FACTS} ({POINT_SET}, {own}) "
        f"SELECT s.{SET_ID}, {', '.join(f'p.{quote(name)}' for name in POINT_OWN)} "
        f"FROM {IDS} AS p JOIN {_set_join(con, keys)} ORDER BY s.{SET_ID}"
    )
    before, after = _count(con, IDS), _count(con, FACTS)
    if before != after:
        raise SchemaMismatch(
            f"converting to metric sets: {before} points before but {after} joined to their {SETS} row"
        )
    con.execute(f"DROP TABLE {IDS}")
    con.execute(view_statement([SET_ID, *SET_CONTRACT, *extras]))
    return after


def _set_join(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> str:
    """How a point (``p``) finds its set (``s``): ``<sets> AS s ON <condition>``.

    Every set column ``IS NOT DISTINCT FROM`` (nulls are most of the labels) is exact but slow: 3.2 s
    for 12.4 M points, 18 columns hashed and compared per row. One hash of the columns on each
    side takes 0.7 s, and is exact as long as no two sets share a hash: each point's combination
    *is* one of the sets (they are its distinct combinations), of the same types, so it hashes to
    that set's hash and to no other. Checked first (0.1 s); with a collision, the columns.
    """
    listed = ", ".join(keys)
    if _distinct_hashes(con, listed):
        points_hash = ", ".join(f"p.{key}" for key in keys)
        return f"(SELECT {SET_ID}, hash({listed}) AS _key FROM {SETS}) AS s ON s._key = hash({points_hash})"
    return f"{SETS} AS s ON " + " AND ".join(f"p.{key} IS NOT DISTINCT FROM s.{key}" for key in keys)


def _distinct_hashes(con: duckdb.DuckDBPyConnection, listed: str) -> bool:
    """No two metric sets hash alike (the hash of all of ``listed``, the set columns)."""
    ((distinct,),) = con.execute(f"SELECT count(DISTINCT hash({listed})) = count(*) FROM {SETS}").fetchall()
    return bool(distinct)


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    ((count,),) = con.execute(f"SELECT count(*) FROM {table}").fetchall()
    return int(count)
