"""The DuckDB store's tables, derived from the Arrow schemas so the file and the contract cannot drift.

Readers see ``points``: a view with the points-table columns (``POINTS_SCHEMA``) and their exact
types, timestamps ``TIMESTAMP WITH TIME ZONE`` (UTC instants; DuckDB keeps microseconds, so the
contract's milliseconds are exact), ``value DOUBLE``, ``value_int BIGINT``, label strings
``VARCHAR``, then one ``VARCHAR`` per label copied with ``--store_label``. Underneath:

- ``metric_sets``: one row per metric set of a window (Heapster's MetricSet: one entity's
  labels and times; a labeled metric's ``resource_id`` etc. make a set of their own), an ``_id``
  counting up window after window, then every contract column but ``metric``/``value``/
  ``value_int``, label strings as ``INTEGER`` ids, then the copied labels' ids;
- ``point_rows``: one row per point, ``(metric_set, metric, value, value_int)``;
- ``label_values.<column>(id, value)`` (schema ``label_values``): each string once, ids dense from 1.

The four dimension tables keep the columns of ``model/dimensions.py`` and add the version's
validity ``[valid_from, valid_to)``, ``valid_to`` null for the current version.

Files of the earlier layouts are converted at open by ``_duckdb_migrate.py``: the first (a
``points`` table of strings, :func:`legacy_columns`) and the second (``point_rows`` with one id
column per label and no ``metric_sets``, :func:`ids_columns`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from heapster_columnar.model.dimensions import CONTAINERS_SCHEMA, NAMESPACES_SCHEMA, NODES_SCHEMA, PODS_SCHEMA
from heapster_columnar.model.schema import POINTS_SCHEMA

POINTS = "points"  # the view readers query
SETS = "metric_sets"  # one row per metric set per window: times and label ids
FACTS = "point_rows"  # one row per point: its metric set, metric id, value
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
# What a point holds of its own; every other contract column belongs to its metric set.
POINT_OWN: tuple[str, ...] = ("metric", "value", "value_int")
SET_CONTRACT: tuple[str, ...] = tuple(name for name in POINTS_SCHEMA.names if name not in POINT_OWN)
SET_ID = "_id"  # "_" names are reserved: no copied label can take it (model/labels.py)
POINT_SET = "metric_set"

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


def ids_columns() -> list[tuple[str, str]]:
    """What ``point_rows`` started with in files of the second layout: the contract's columns,
    strings as ``INTEGER`` ids (then one ``INTEGER`` per copied label)."""
    return [(name, "INTEGER" if name in CODED else kind) for name, kind in legacy_columns()]


def set_columns() -> list[tuple[str, str]]:
    """What ``metric_sets`` starts with (copied labels' ``INTEGER`` ids follow)."""
    kinds = dict(ids_columns())
    return [(SET_ID, "BIGINT"), *((name, kinds[name]) for name in SET_CONTRACT)]


def fact_columns() -> list[tuple[str, str]]:
    """The columns of ``point_rows``, exactly."""
    kinds = dict(ids_columns())
    return [(POINT_SET, "BIGINT"), *((name, kinds[name]) for name in POINT_OWN)]


def expected_columns() -> dict[str, list[tuple[str, str]]]:
    """What each table must start with (``metric_sets`` may have copied-label columns after these)."""
    tables = {SETS: set_columns(), FACTS: fact_columns()}
    tables.update({name: [*columns_of(schema), *VALIDITY] for name, schema in DIMENSIONS.items()})
    return tables


def create_statements() -> list[str]:
    """``CREATE ... IF NOT EXISTS`` for every table; NOT NULL where the contract says not null."""

    def ddl(name: str, columns: Sequence[str]) -> str:
        return f"CREATE TABLE IF NOT EXISTS {quote(name)} ({', '.join(columns)})"

    def column(f: pa.Field, kind: str) -> str:
        return f"{quote(f.name)} {kind}{'' if f.nullable else ' NOT NULL'}"

    kinds = dict(ids_columns())
    sets = [f"{SET_ID} BIGINT NOT NULL", *(column(POINTS_SCHEMA.field(n), kinds[n]) for n in SET_CONTRACT)]
    facts = [f"{POINT_SET} BIGINT NOT NULL", *(column(POINTS_SCHEMA.field(n), kinds[n]) for n in POINT_OWN)]
    validity = ("valid_from TIMESTAMP WITH TIME ZONE NOT NULL", "valid_to TIMESTAMP WITH TIME ZONE")
    return [
        ddl(SETS, sets),
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


def view_statement(sets: Sequence[str]) -> str:
    """``points`` over ``point_rows`` and ``metric_sets`` (whose columns are ``sets``, in order):
    each point joined to its set, ids back to strings with one left join per label column.

    Set ids count up window after window and a window's points follow its sets, so a filter on
    the sets (time, a pod's id) reaches the point scan as an id range (DuckDB's join filter
    pushdown) and skips row groups by their min/max; a filter on a string
    (``metric = 'cpu/usage_rate'``) becomes an id filter the same way. Joins whose column a query
    does not read still run (DuckDB 2.0 drops at most one unused left join); decoding by list
    lookup instead would not, but its cost grows with the size of the list, per 2,048 rows (1 M
    strings: 20 s for 20 M rows), and lists carried through a join blew the memory limit.
    """
    coded = set(CODED) | set(extra_labels_of(sets))
    names = [*POINTS_SCHEMA.names, *extra_labels_of(sets)]
    select, joins = [], []
    for k, name in enumerate(names):
        column = f"{'f' if name in POINT_OWN else 's'}.{quote(name)}"
        if name in coded:
            joins.append(f"LEFT JOIN {vocabulary_table(name)} AS v{k} ON v{k}.id = {column}")
            select.append(f"v{k}.value AS {quote(name)}")
        else:
            select.append(f"{column} AS {quote(name)}")
    return (
        f"CREATE OR REPLACE VIEW {POINTS} AS SELECT {', '.join(select)} FROM {FACTS} AS f "
        f"JOIN {SETS} AS s ON s.{SET_ID} = f.{POINT_SET} {' '.join(joins)}"
    )


def mismatches(found: Mapping[str, Relation]) -> list[str]:
    """Why the tables in an existing file are not ours (empty when they are, or do not exist yet).

    ``found`` is keyed by table name, label tables by :func:`vocabulary_key`. A file of an earlier
    layout (:func:`layout` 1 or 2) is ours too: it is converted at open.
    """
    expected_tables: dict[str, list[tuple[str, str]]] = expected_columns()
    if layout(found) == 2:
        expected_tables[FACTS] = ids_columns()
    vocabulary = list(VOCABULARY_COLUMNS)
    expected_tables.update({key: vocabulary for key in found if key.startswith(f"{VOCABULARY}.")})
    extensible = (SETS, FACTS) if layout(found) == 2 else (SETS,)  # copied labels' ids follow
    problems = []
    for table, expected in expected_tables.items():
        relation = found.get(table)
        if relation is None:
            continue
        have = list(relation.columns)
        if relation.kind != "table":
            problems.append(f"{table} is a {relation.kind}, expected a table")
        elif have[: len(expected)] != expected or (table not in extensible and len(have) != len(expected)):
            problems.append(f"table {table} has columns {_spell(have)}, expected {_spell(expected)}")
        elif table in extensible and any(kind != "INTEGER" for _, kind in have[len(expected) :]):
            problems.append(f"table {table} has extra non-INTEGER columns {_spell(have[len(expected) :])}")
    points = found.get(POINTS)
    if (SETS in found) != (FACTS in found) and layout(found) != 2:
        missing = FACTS if SETS in found else SETS
        problems.append(f"table {SETS if SETS in found else FACTS} exists without table {missing}")
    if points is not None:
        if points.kind == "view" and FACTS not in found:
            problems.append(f"view {POINTS} is not over a {FACTS} table")
        elif points.kind == "table" and (FACTS in found or SETS in found):
            problems.append(f"table {POINTS} and table {FACTS if FACTS in found else SETS} both exist")
        elif points.kind == "table" and not is_legacy(points):
            expected = legacy_columns()
            problems.append(f"table {POINTS} has columns {_spell(points.columns)}, expected {_spell(expected)}")
    return problems


def layout(found: Mapping[str, Relation]) -> int:
    """Which layout the file's tables are: 1 (a ``points`` table of strings), 2 (``point_rows``
    with an id column per label, no ``metric_sets``), 3 (this one), 0 (none of ours yet)."""
    if is_legacy(found.get(POINTS)):
        return 1
    facts = found.get(FACTS)
    if SETS not in found and facts is not None and len(facts.columns) > len(fact_columns()):
        return 2
    return 3 if SETS in found or facts is not None else 0


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
    """The names in ``names`` that are not contract columns (copied labels); a set's ``_id`` is none."""
    known = {*POINTS_SCHEMA.names, SET_ID}
    return [name for name in names if name not in known]
