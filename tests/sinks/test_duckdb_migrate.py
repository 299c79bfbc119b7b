"""Files of the first and second DuckDB layouts converted to metric sets, on real files and real
fixture windows: the points view reads back exactly what the old file held (every column, its
type, nulls, copied labels), one set per distinct combination of the set columns with ids growing
with time, nothing intermediate left behind, and a failure after the inserts rolled back to the
old layout row for row."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import canonical
from windows import decoded, fixture_windows

from heapster_columnar.model.schema import LABEL_TYPE, POINTS_SCHEMA
from heapster_columnar.model.window import Window
from heapster_columnar.sinks import _duckdb_migrate
from heapster_columnar.sinks._duckdb_migrate import IDS, migrate
from heapster_columnar.sinks._duckdb_schema import (
    CODED,
    DIMENSIONS,
    FACTS,
    POINT_SET,
    POINTS,
    SET_CONTRACT,
    SET_ID,
    SETS,
    VOCABULARY,
    Relation,
    SchemaMismatch,
    ids_columns,
    layout,
    legacy_columns,
    mismatches,
    quote,
    vocabulary_key,
    vocabulary_statement,
    vocabulary_table,
)
from heapster_columnar.sinks._duckdb_vocabulary import Vocabulary

POD_A = "coredns-5dd5756b68-xmx7l"
# Copied labels (--store_label): a plain one, and one with the characters Kubernetes allows.
APP, NAME = "app", "app.kubernetes.io/name"
STORE_CONFIG: dict[str, str | bool | int | float | list[str]] = {"preserve_insertion_order": False}  # as the store


@pytest.fixture(scope="module")
def made(kubelet_data: Path) -> list[Window]:
    """Three consecutive windows 15 s apart: the first without copied labels, the second with
    both, the third with ``app`` only and POD_A renamed (a string only it has)."""
    windows = fixture_windows(kubelet_data, 3)
    return [windows[0], with_labels(windows[1], {APP: "web", NAME: "coredns"}), renamed(windows[2], {APP: "db"})]


def with_labels(window: Window, copied: Mapping[str, str]) -> Window:
    """``window`` with a copied-label column of one value per entry of ``copied``."""
    points = window.points
    for name, value in copied.items():
        points = points.append_column(name, pa.array([value] * points.num_rows).dictionary_encode())
    return replace(window, points=points)


def renamed(window: Window, copied: Mapping[str, str]) -> Window:
    names = window.points.column("pod_name").cast(pa.string())
    pod = pc.if_else(pc.equal(names, POD_A), pa.scalar("renamed-pod"), names).dictionary_encode()
    field = POINTS_SCHEMA.field("pod_name")
    points = window.points.set_column(window.points.schema.get_field_index("pod_name"), field, pod)
    return with_labels(replace(window, points=points), copied)


def with_copied(points: pa.Table, copied: Sequence[str]) -> pa.Table:
    """The contract's columns, then exactly ``copied`` (null where the window has no such column)."""
    columns = {name: points.column(name) for name in POINTS_SCHEMA.names}
    for name in copied:
        columns[name] = points.column(name) if name in points.column_names else pa.nulls(points.num_rows, LABEL_TYPE)
    return pa.table(columns)


def not_null(name: str) -> str:
    return "" if name not in POINTS_SCHEMA.names or POINTS_SCHEMA.field(name).nullable else " NOT NULL"


def first_layout_file(path: Path, windows: Sequence[Window], copied: Sequence[str]) -> None:
    """``windows`` in a ``points`` table of strings (the first layout), then ``copied`` as VARCHAR."""
    columns = [*legacy_columns(), *((name, "VARCHAR") for name in copied)]
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE {POINTS} ({', '.join(f'{quote(n)} {k}{not_null(n)}' for n, k in columns)})")
        for window in windows:
            con.register("window_points", with_copied(window.points, copied))
            con.execute(f"INSERT INTO {POINTS} SELECT * FROM window_points")
            con.unregister("window_points")


def second_layout_file(path: Path, windows: Sequence[Window], copied: Sequence[str]) -> None:
    """``windows`` as the second layout wrote them: ``point_rows`` of ids (``ids_columns()``, then
    one INTEGER per copied label), ``label_values.*`` with ids in order of first appearance, and
    the ``points`` view decoding every string column with a left join."""
    columns = [*ids_columns(), *((name, "INTEGER") for name in copied)]
    coded = [*CODED, *copied]
    vocabulary = Vocabulary()
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE {FACTS} ({', '.join(f'{quote(n)} {k}{not_null(n)}' for n, k in columns)})")
        con.execute(f"CREATE SCHEMA {VOCABULARY}")
        for name in coded:
            con.execute(vocabulary_statement(name))
        for window in windows:
            encoded = vocabulary.encode(with_copied(window.points, copied), coded)
            for label in encoded.additions:
                con.register("new_values", encoded.new_values(label))
                con.execute(f"INSERT INTO {vocabulary_table(label)} SELECT id, value FROM new_values")
                con.unregister("new_values")
            con.register("window_points", encoded.codes)
            con.execute(f"INSERT INTO {FACTS} SELECT * FROM window_points")
            con.unregister("window_points")
            vocabulary.add(encoded)
        select, joins = [], []
        for k, (name, _) in enumerate(columns):
            if name in coded:
                joins.append(f"LEFT JOIN {vocabulary_table(name)} AS v{k} ON v{k}.id = p.{quote(name)}")
                select.append(f"v{k}.value AS {quote(name)}")
            else:
                select.append(f"p.{quote(name)}")
        con.execute(f"CREATE VIEW {POINTS} AS SELECT {', '.join(select)} FROM {FACTS} AS p {' '.join(joins)}")


BUILDERS: dict[int, Callable[[Path, Sequence[Window], Sequence[str]], None]] = {
    1: first_layout_file,
    2: second_layout_file,
}


def relations(con: duckdb.DuckDBPyConnection) -> dict[str, Relation]:
    """Every table and view of the file with its columns, keyed as the store keys them
    (``label_values.<column>`` for the strings tables)."""
    rows = con.execute(
        "SELECT c.schema_name, c.table_name, CASE WHEN v.view_name IS NULL THEN 'table' ELSE 'view' END, "
        "c.column_name, c.data_type FROM duckdb_columns() AS c LEFT JOIN duckdb_views() AS v "
        "ON v.database_name = c.database_name AND v.schema_name = c.schema_name AND v.view_name = c.table_name "
        "WHERE c.database_name = current_database() AND NOT c.internal "
        "ORDER BY c.schema_name, c.table_name, c.column_index"
    ).fetchall()
    kinds: dict[str, str] = {}
    columns: dict[str, list[tuple[str, str]]] = {}
    for schema, name, kind, column, data_type in rows:
        key = name if schema == "main" else vocabulary_key(name) if schema == VOCABULARY else f"{schema}.{name}"
        kinds[key] = kind
        columns.setdefault(key, []).append((column, data_type))
    return {key: Relation(kinds[key], tuple(columns[key])) for key in kinds}


def contents(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (not the view), sorted: what "the file as it was" means."""
    out = {}
    for key, relation in relations(con).items():
        if relation.kind == "table":
            name = vocabulary_table(key.split(".", 1)[1]) if key.startswith(f"{VOCABULARY}.") else quote(key)
            out[key] = sorted(con.execute(f"SELECT * FROM {name}").fetchall(), key=repr)
    return out


def points(con: duckdb.DuckDBPyConnection) -> pa.Table:
    return con.sql(f"SELECT * FROM {POINTS}").to_arrow_table()


def described(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    return [(str(name), str(kind)) for name, kind, *_ in con.execute(f"DESCRIBE {POINTS}").fetchall()]


def converted(con: duckdb.DuckDBPyConnection) -> int:
    """``migrate`` in a transaction of its own, committed (what the store does at open)."""
    found = relations(con)
    con.execute("BEGIN TRANSACTION")
    count = migrate(con, found)
    con.execute("COMMIT")
    return count


def expected_points(windows: Sequence[Window], copied: Sequence[str]) -> list[tuple[Any, ...]]:
    """The windows' points as DuckDB returns them: strings plain, times in microseconds."""
    rows: list[tuple[Any, ...]] = canonical(
        as_utc(pa.concat_tables([decoded(with_copied(w.points, copied)) for w in windows]))
    )
    return rows


def as_utc(table: pa.Table) -> pa.Table:
    """DuckDB hands timestamps in the session's time zone: the same instants, compared in UTC."""
    return pa.table(
        {
            name: column.cast(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(column.type) else column
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )


@pytest.mark.parametrize("join", ["hash", "columns"])
@pytest.mark.parametrize("old", [1, 2])
def test_a_file_of_an_earlier_layout_reads_back_exactly_after_conversion(
    made: list[Window], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: int, join: str
) -> None:
    """``join``: points find their set by a hash of the set columns, or (were two sets to hash
    alike) by every column."""
    asked: list[bool] = []
    real = _duckdb_migrate._distinct_hashes

    def distinct_hashes(con: duckdb.DuckDBPyConnection, listed: str) -> bool:
        asked.append(real(con, listed) and join == "hash")
        return asked[-1]

    monkeypatch.setattr(_duckdb_migrate, "_distinct_hashes", distinct_hashes)
    path = tmp_path / "metrics.duckdb"
    copied = [APP, NAME]
    BUILDERS[old](path, made, copied)
    with duckdb.connect(str(path), config=STORE_CONFIG) as con:
        assert layout(relations(con)) == old
        before, before_types = points(con), described(con)
        assert canonical(as_utc(before)) == expected_points(made, copied)  # the helper built what it should
        before_strings = {k: v for k, v in contents(con).items() if k.startswith(f"{VOCABULARY}.")}

        assert converted(con) == before.num_rows == sum(w.points.num_rows for w in made) == 1170 + 1381 + 1381
        assert asked == [join == "hash"]

        found = relations(con)
        assert layout(found) == 3 and mismatches(found) == []
        assert {key for key, r in found.items() if r.kind == "table" and "." not in key} == {SETS, FACTS, *DIMENSIONS}
        assert IDS not in found and found[POINTS].kind == "view"
        # The view: same columns, same types, same rows (nulls included), copied labels as VARCHAR.
        after = points(con)
        assert described(con) == before_types and before_types[-2:] == [(APP, "VARCHAR"), (NAME, "VARCHAR")]
        assert after.schema == before.schema
        assert canonical(after) == canonical(before)
        # Copied labels are metric-set columns of ids into their own strings tables.
        assert [(n, k) for n, k in found[SETS].columns][-2:] == [(APP, "INTEGER"), (NAME, "INTEGER")]
        strings = {k: v for k, v in contents(con).items() if k.startswith(f"{VOCABULARY}.")}
        assert strings[vocabulary_key(APP)] == ([(1, "db"), (2, "web")] if old == 1 else [(1, "web"), (2, "db")])
        assert strings[vocabulary_key(NAME)] == [(1, "coredns")]
        if old == 2:  # ids must keep meaning what they meant
            assert strings == before_strings
        else:  # ids in string order
            for key, rows in strings.items():
                rows = sorted(rows)
                assert [i for i, _ in rows] == list(range(1, len(rows) + 1))
                assert [v for _, v in rows] == sorted(v for _, v in rows), key
        # One set per distinct combination of the set columns, ids 1..n growing with time.
        keys = [*SET_CONTRACT, *copied]
        distinct = decoded(pa.concat_tables([with_copied(w.points, copied) for w in made])).group_by(keys).aggregate([])
        assert con.execute(f"SELECT count(*), min({SET_ID}), max({SET_ID}) FROM {SETS}").fetchall() == [
            (distinct.num_rows, 1, distinct.num_rows)
        ]
        assert distinct.num_rows < before.num_rows  # sets do group points
        back = f"SELECT timestamp < lag(timestamp) OVER (ORDER BY {SET_ID}) AS back FROM {SETS}"
        backwards = f"SELECT count(*) FROM ({back}) WHERE back"
        assert con.execute(backwards).fetchall() == [(0,)]
        ends = con.execute(
            f"SELECT timestamp, min({SET_ID}), max({SET_ID}) FROM {SETS} GROUP BY ALL ORDER BY 1"
        ).fetchall()
        assert [t for t, *_ in ends] == [w.end for w in made]
        assert all(high + 1 == low for (_, _, high), (_, low, _) in pairwise(ends))
        # Points in set order (a filter on the sets skips row groups of points), every set has
        # points, and no two sets are the same combination.
        back = f"SELECT {POINT_SET} < lag({POINT_SET}) OVER (ORDER BY rowid) AS back FROM {FACTS}"
        assert con.execute(f"SELECT count(*) FROM ({back}) WHERE back").fetchall() == [(0,)]
        assert con.execute(f"SELECT count(DISTINCT metric_set) FROM {FACTS}").fetchall() == [(distinct.num_rows,)]
        listed = ", ".join(quote(k) for k in keys)
        assert con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {listed} FROM {SETS})").fetchall() == [
            (distinct.num_rows,)
        ]
    with duckdb.connect(str(path), read_only=True) as con:  # committed: the file alone has it
        assert canonical(points(con)) == canonical(before)


def test_points_without_copied_labels_convert_too(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    plain = [replace(w, points=w.points.select(POINTS_SCHEMA.names)) for w in made]
    second_layout_file(path, plain, [])
    with duckdb.connect(str(path)) as con:
        before = points(con)
        assert converted(con) == before.num_rows
        assert [n for n, _ in described(con)] == POINTS_SCHEMA.names
        assert canonical(points(con)) == canonical(before) == expected_points(plain, [])


class FailingAt:
    """The connection, failing the first statement that starts with ``prefix`` (as a full disk would)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, prefix: str) -> None:
        self.con, self.prefix = con, prefix

    def execute(self, sql: str, *args: Any) -> duckdb.DuckDBPyConnection:
        if sql.startswith(self.prefix):
            raise duckdb.IOException("injected: no space left on device")
        return self.con.execute(sql, *args)


@pytest.mark.parametrize("old", [1, 2])
@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("CREATE OR REPLACE VIEW", "injected"),  # the last statement: everything else done
        (f"DROP TABLE {IDS}", "injected"),
        ("count", "converting to metric sets: 3932 points before but 3933 joined"),
    ],
)
def test_a_failed_conversion_rolls_back_to_the_old_layout_row_for_row(
    made: list[Window], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: int, failure: str, message: str
) -> None:
    path = tmp_path / "metrics.duckdb"
    BUILDERS[old](path, made, [APP, NAME])
    with duckdb.connect(str(path)) as con:
        found, rows, view = relations(con), contents(con), canonical(points(con))
        target: Any = con
        if failure == "count":  # the join lost or doubled a point: the check refuses to go on
            real = _duckdb_migrate._count
            monkeypatch.setattr(_duckdb_migrate, "_count", lambda c, table: real(c, table) + (table == FACTS))
        else:
            target = FailingAt(con, failure)
        con.execute("BEGIN TRANSACTION")
        with pytest.raises((duckdb.IOException, SchemaMismatch), match=message):
            migrate(cast(duckdb.DuckDBPyConnection, target), found)
        con.execute("ROLLBACK")
        assert relations(con) == found and contents(con) == rows and canonical(points(con)) == view
    monkeypatch.undo()
    with duckdb.connect(str(path)) as con:  # on disk too; and the retry converts it
        assert relations(con) == found and layout(found) == old
        assert contents(con) == rows and canonical(points(con)) == view
        assert converted(con) == 3932 and canonical(points(con)) == view


@pytest.mark.parametrize("build", ["empty", "third"])
def test_only_the_earlier_layouts_are_converted(made: list[Window], tmp_path: Path, build: str) -> None:
    path = tmp_path / "metrics.duckdb"
    if build == "third":
        second_layout_file(path, made[:1], [])
        with duckdb.connect(str(path)) as con:
            converted(con)
    with duckdb.connect(str(path)) as con:
        found = relations(con)
        con.execute("BEGIN TRANSACTION")
        with pytest.raises(SchemaMismatch, match=f"layout {layout(found)}: only layouts 1 and 2"):
            migrate(con, found)
        con.execute("ROLLBACK")
        assert relations(con) == found
