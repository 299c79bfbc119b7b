"""The DuckDB store's tables, derived from the Arrow schemas so the file and the contract cannot drift.

Readers see ``points``: a view with the points-table columns (``POINTS_SCHEMA``) and their exact
types, timestamps ``TIMESTAMP WITH TIME ZONE`` (UTC instants; DuckDB keeps microseconds, so the
contract's milliseconds are exact), ``value DOUBLE``, ``value_int BIGINT``, label strings
``VARCHAR``, then one ``VARCHAR`` per label copied with ``--store_label``. Underneath, each string
is stored once: every label column has a table ``label_values.<column>(id, value)`` (schema
``label_values``), ids dense from 1, and the fact table ``point_rows`` holds the same columns as
``points`` with ``INTEGER`` ids in place of strings. The four dimension tables keep the columns of
``model/dimensions.py`` and add the version's validity ``[valid_from, valid_to)``, ``valid_to``
null for the current version.

A file of the first layout (``points`` a table of strings, :func:`legacy_columns`) is converted at
open by ``_duckdb_migrate.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from heapster_columnar.model.dimensions import CONTAINERS_SCHEMA, NAMESPACES_SCHEMA, NODES_SCHEMA, PODS_SCHEMA
from heapster_columnar.model.schema import POINTS_SCHEMA

POINTS = "points"  # the view readers query
FACTS = "point_rows"  # one row per point, label columns as ids
VOCABULARY = "label_values"  # the schema holding one (id, value) table per label column
DIMENSIONS: Mapping[str, pa.Schema] = {
    "pods": PODS_SCHEMA,
    "containers": CONTAINERS_SCHEMA,
    "namespaces": NAMESPACES_SCHEMA,
    "nodes": NODES_SCHEMA,
}
VALIDITY = (("valid_from", "TIMESTAMP WITH TIME ZONE"), ("valid_to", "TIMESTAMP WITH TIME ZONE"))
# Contract columns stored as ids: every string column (type, metric and the labels).
CODED: tuple[str, ...] = tuple(f.name for f in POINTS_SCHEMA if pa.types.is_dictionary(f.type))
VOCABULARY_COLUMNS = (("id", "INTEGER"), ("value", "VARCHAR"))

_SIMPLE: Mapping[pa.DataType, str] = {
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.int16(): "SMALLINT",
    pa.int8(): "TINYINT",
    pa.bool_(): "BOOLEAN",
}


class SchemaMismatch(Exception):
    """The file is a DuckDB database, but its tables are not the ones this sink writes."""


@dataclass(frozen=True, slots=True)
class Relation:
    """A table or view of the file, as the catalog describes it."""

    kind: str  # "table" or "view"
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type) in order


def quote(name: str) -> str:
    """A SQL identifier, whatever characters a copied Kubernetes label name brings."""
    return '"' + name.replace('"', '""') + '"'


def vocabulary_table(label: str) -> str:
    """The qualified name of the table holding ``label``'s strings."""
    return f"{VOCABULARY}.{quote(label)}"


def vocabulary_key(label: str) -> str:
    """How :func:`mismatches` and the store name a label's table in their catalog maps."""
    return f"{VOCABULARY}.{label}"


def duckdb_type(arrow: pa.DataType) -> str:
    """The DuckDB type that holds ``arrow`` exactly, spelled as ``duckdb_columns()`` reports it."""
    if pa.types.is_dictionary(arrow):
        return duckdb_type(arrow.value_type)
    if pa.types.is_timestamp(arrow) and arrow.tz is not None:
        return "TIMESTAMP WITH TIME ZONE"
    if pa.types.is_map(arrow):
        return f"MAP({duckdb_type(arrow.key_type)}, {duckdb_type(arrow.item_type)})"
    if arrow in _SIMPLE:
        return _SIMPLE[arrow]
    raise TypeError(f"no exact DuckDB type for Arrow {arrow}")


def columns_of(schema: pa.Schema) -> list[tuple[str, str]]:
    """(name, DuckDB type) of every field of ``schema``, in order."""
    return [(field.name, duckdb_type(field.type)) for field in schema]


def legacy_columns() -> list[tuple[str, str]]:
    """What ``points`` shows: the contract's columns with strings as ``VARCHAR`` (the view's
    columns now, the table's in files of the first layout)."""
    return columns_of(POINTS_SCHEMA)


def fact_columns() -> list[tuple[str, str]]:
    """What ``point_rows`` starts with: the contract's columns, strings as ``INTEGER`` ids."""
    return [(name, "INTEGER" if name in CODED else kind) for name, kind in legacy_columns()]


def expected_columns() -> dict[str, list[tuple[str, str]]]:
    """What each table must start with (``point_rows`` may have copied-label columns after these)."""
    tables = {FACTS: fact_columns()}
    tables.update({name: [*columns_of(schema), *VALIDITY] for name, schema in DIMENSIONS.items()})
    return tables


def create_statements() -> list[str]:
    """``CREATE ... IF NOT EXISTS`` for every table; NOT NULL where the contract says not null."""

    def ddl(name: str, columns: Sequence[str]) -> str:
        return f"CREATE TABLE IF NOT EXISTS {quote(name)} ({', '.join(columns)})"

    def column(f: pa.Field, kind: str) -> str:
        return f"{quote(f.name)} {kind}{'' if f.nullable else ' NOT NULL'}"

    facts = [column(f, kind) for f, (_, kind) in zip(POINTS_SCHEMA, fact_columns(), strict=True)]
    validity = ("valid_from TIMESTAMP WITH TIME ZONE NOT NULL", "valid_to TIMESTAMP WITH TIME ZONE")
    return [
        ddl(FACTS, facts),
        f"CREATE SCHEMA IF NOT EXISTS {VOCABULARY}",
        *(vocabulary_statement(name) for name in CODED),
        *(
            ddl(name, [*(column(f, duckdb_type(f.type)) for f in schema), *validity])
            for name, schema in DIMENSIONS.items()
        ),
    ]


def vocabulary_statement(label: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for one label column's strings."""
    columns = ", ".join(f"{name} {kind} NOT NULL" for name, kind in VOCABULARY_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {vocabulary_table(label)} ({columns})"


def view_statement(facts: Sequence[str]) -> str:
    """``points`` over ``point_rows`` (whose columns are ``facts``, in order): ids back to strings,
    one left join per label column.

    A filter on a string (``metric = 'cpu/usage_rate'``) becomes an id filter on the fact scan
    (DuckDB's join filter pushdown), which skips row groups by their min/max. Joins whose column
    a query does not read still run (DuckDB 2.0 drops at most one unused left join); decoding by
    list lookup instead would not, but its cost grows with the size of the list, per 2,048 rows
    (1 M strings: 20 s for 20 M rows), and lists carried through a join blew the memory limit.
    """
    coded = set(CODED) | set(extra_labels_of(facts))
    select, joins = [], []
    for k, name in enumerate(facts):
        column = f"f.{quote(name)}"
        if name in coded:
            joins.append(f"LEFT JOIN {vocabulary_table(name)} AS v{k} ON v{k}.id = {column}")
            select.append(f"v{k}.value AS {quote(name)}")
        else:
            select.append(f"{column} AS {quote(name)}")
    return f"CREATE OR REPLACE VIEW {POINTS} AS SELECT {', '.join(select)} FROM {FACTS} AS f {' '.join(joins)}"


def mismatches(found: Mapping[str, Relation]) -> list[str]:
    """Why the tables in an existing file are not ours (empty when they are, or do not exist yet).

    ``found`` is keyed by table name, label tables by :func:`vocabulary_key`. ``points`` may be
    this sink's view, or a table of the first layout (converted at open).
    """
    expected_tables: dict[str, list[tuple[str, str]]] = expected_columns()
    vocabulary = list(VOCABULARY_COLUMNS)
    expected_tables.update({key: vocabulary for key in found if key.startswith(f"{VOCABULARY}.")})
    problems = []
    for table, expected in expected_tables.items():
        relation = found.get(table)
        if relation is None:
            continue
        have = list(relation.columns)
        if relation.kind != "table":
            problems.append(f"{table} is a {relation.kind}, expected a table")
        elif have[: len(expected)] != expected or (table != FACTS and len(have) != len(expected)):
            problems.append(f"table {table} has columns {_spell(have)}, expected {_spell(expected)}")
        elif table == FACTS and any(kind != "INTEGER" for _, kind in have[len(expected) :]):
            problems.append(f"table {table} has extra non-INTEGER columns {_spell(have[len(expected) :])}")
    points = found.get(POINTS)
    if points is not None:
        if points.kind == "view" and FACTS not in found:
            problems.append(f"view {POINTS} is not over a {FACTS} table")
        elif points.kind == "table" and FACTS in found:
            problems.append(f"table {POINTS} and table {FACTS} both exist")
        elif points.kind == "table" and not is_legacy(points):
            expected = legacy_columns()
            problems.append(f"table {POINTS} has columns {_spell(points.columns)}, expected {_spell(expected)}")
    return problems


def is_legacy(points: Relation | None) -> bool:
    """``points`` is a table of the first layout: the contract's columns, then copied labels."""
    if points is None or points.kind != "table":
        return False
    expected, have = legacy_columns(), list(points.columns)
    return have[: len(expected)] == expected and all(kind == "VARCHAR" for _, kind in have[len(expected) :])


def _spell(columns: Sequence[tuple[str, str]]) -> str:
    return "(" + ", ".join(f"{name} {kind}" for name, kind in columns) + ")"


def extra_labels(points: pa.Schema) -> list[str]:
    """Columns of a window's points beyond the contract: labels copied with ``--store_label``."""
    return extra_labels_of(points.names)


def extra_labels_of(names: Sequence[str]) -> list[str]:
    """The names in ``names`` that are not contract columns (copied labels)."""
    known = set(POINTS_SCHEMA.names)
    return [name for name in names if name not in known]
