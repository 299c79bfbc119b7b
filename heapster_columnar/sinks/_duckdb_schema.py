"""The DuckDB store's tables, derived from the Arrow schemas so the file and the contract cannot drift.

``points`` has the points-table columns (``POINTS_SCHEMA``) with their exact types: timestamps
``TIMESTAMP WITH TIME ZONE`` (UTC instants; DuckDB keeps microseconds, so the contract's
milliseconds are exact), ``value DOUBLE``, ``value_int BIGINT``, label strings ``VARCHAR``
(dictionary encoding is how Arrow carries them, not part of their type), plus one ``VARCHAR`` per
label copied with ``--store_label``, added when a window first carries it. The four dimension
tables keep the columns of ``model/dimensions.py`` and add the version's validity
``[valid_from, valid_to)``, ``valid_to`` null for the current version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from heapster_columnar.model.dimensions import CONTAINERS_SCHEMA, NAMESPACES_SCHEMA, NODES_SCHEMA, PODS_SCHEMA
from heapster_columnar.model.schema import POINTS_SCHEMA

POINTS = "points"
DIMENSIONS: Mapping[str, pa.Schema] = {
    "pods": PODS_SCHEMA,
    "containers": CONTAINERS_SCHEMA,
    "namespaces": NAMESPACES_SCHEMA,
    "nodes": NODES_SCHEMA,
}
VALIDITY = (("valid_from", "TIMESTAMP WITH TIME ZONE"), ("valid_to", "TIMESTAMP WITH TIME ZONE"))

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


def quote(name: str) -> str:
    """A SQL identifier, whatever characters a copied Kubernetes label name brings."""
    return '"' + name.replace('"', '""') + '"'


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


def expected_columns() -> dict[str, list[tuple[str, str]]]:
    """What each table must start with (``points`` may have copied-label columns after these)."""
    tables = {POINTS: columns_of(POINTS_SCHEMA)}
    tables.update({name: [*columns_of(schema), *VALIDITY] for name, schema in DIMENSIONS.items()})
    return tables


def create_statements() -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for every table; NOT NULL where the contract says not null."""

    def ddl(name: str, schema: pa.Schema, extra: Sequence[str] = ()) -> str:
        columns = [f"{quote(f.name)} {duckdb_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in schema] + list(
            extra
        )
        return f"CREATE TABLE IF NOT EXISTS {quote(name)} ({', '.join(columns)})"

    validity = ("valid_from TIMESTAMP WITH TIME ZONE NOT NULL", "valid_to TIMESTAMP WITH TIME ZONE")
    return [ddl(POINTS, POINTS_SCHEMA), *(ddl(name, schema, validity) for name, schema in DIMENSIONS.items())]


def mismatches(found: Mapping[str, Sequence[tuple[str, str]]]) -> list[str]:
    """Why the tables in an existing file are not ours (empty when they are, or do not exist yet)."""
    problems = []
    for table, expected in expected_columns().items():
        have = list(found.get(table, ()))
        if not have:
            continue
        if have[: len(expected)] != expected or (table != POINTS and len(have) != len(expected)):
            problems.append(f"table {table} has columns {_spell(have)}, expected {_spell(expected)}")
        elif table == POINTS and any(kind != "VARCHAR" for _, kind in have[len(expected) :]):
            problems.append(f"table {table} has extra non-VARCHAR columns {_spell(have[len(expected) :])}")
    return problems


def _spell(columns: Sequence[tuple[str, str]]) -> str:
    return "(" + ", ".join(f"{name} {kind}" for name, kind in columns) + ")"


def extra_labels(points: pa.Schema) -> list[str]:
    """Columns of a window's points beyond the contract: labels copied with ``--store_label``."""
    known = set(POINTS_SCHEMA.names)
    return [name for name in points.names if name not in known]
