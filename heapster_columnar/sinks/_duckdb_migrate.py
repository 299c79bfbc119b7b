"""Files of the first layout: a ``points`` table of strings becomes ids, ``label_values`` and the view.

Runs inside the caller's transaction (the one that opens the store), all in SQL: the vocabulary
from each label column's distinct strings, the rows re-inserted with ids through one join per
label column, the old table dropped and the view created in its place. A failure rolls all of it
back and leaves the file as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from heapster_columnar.sinks._duckdb_schema import (
    CODED,
    FACTS,
    POINTS,
    SchemaMismatch,
    extra_labels_of,
    quote,
    view_statement,
    vocabulary_statement,
    vocabulary_table,
)


def migrate(con: duckdb.DuckDBPyConnection, columns: Sequence[str]) -> int:
    """Convert the ``points`` table (with ``columns``) in the open transaction; rows converted.

    ``point_rows`` and the contract columns' ``label_values`` tables must exist, empty: the caller
    creates them.
    """
    extras = extra_labels_of(columns)
    coded = [name for name in columns if name in CODED or name in extras]
    for name in extras:
        con.execute(f"ALTER TABLE {FACTS} ADD COLUMN {quote(name)} INTEGER")
        con.execute(vocabulary_statement(name))
    for name in coded:  # ids 1..n in string order (any order would do: they only need to be dense)
        con.execute(
            f"INSERT INTO {vocabulary_table(name)} (id, value) SELECT row_number() OVER (ORDER BY value), value "
            f"FROM (SELECT DISTINCT {quote(name)} AS value FROM {POINTS} WHERE {quote(name)} IS NOT NULL)"
        )
    select, joins = [], []
    for k, name in enumerate(columns):
        if name in coded:
            joins.append(f"LEFT JOIN {vocabulary_table(name)} AS v{k} ON v{k}.value = p.{quote(name)}")
            select.append(f"v{k}.id")
        else:
            select.append(f"p.{quote(name)}")
    listed = ", ".join(quote(name) for name in columns)
    con.execute(f"INSERT INTO {FACTS} ({listed}) SELECT {', '.join(select)} FROM {POINTS} AS p {' '.join(joins)}")
    before, after = (_count(con, table) for table in (POINTS, FACTS))
    if before != after:
        raise SchemaMismatch(f"converting the first layout: {before} rows in {POINTS} but {after} converted")
    con.execute(f"DROP TABLE {POINTS}")
    con.execute(view_statement(columns))
    return after


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    ((count,),) = con.execute(f"SELECT count(*) FROM {table}").fetchall()
    return int(count)
