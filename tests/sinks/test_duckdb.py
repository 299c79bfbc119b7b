"""The DuckDB sink on real files and real fixture windows: exact round trips through the view over
ids, one transaction per window (rows and new strings), the vocabulary rebuilt at open, files of
the first layout converted, dimension versions, retention, a SIGKILL mid-write, permissions,
corrupt files, a reader process on the snapshot while the sink holds the writer lock, and the
model API's history read from it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import canonical
from permissions import shared_directory, unprivileged
from polars.testing import assert_frame_equal
from windows import T0, fixture_dimensions, fixture_windows

from heapster_columnar.api.history import DuckDBHistory
from heapster_columnar.config.uri import parse_uri
from heapster_columnar.errors import ConfigError, SinkError
from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.schema import LABEL_TYPE, POINTS_SCHEMA
from heapster_columnar.model.window import Window
from heapster_columnar.sinks import _duckdb_store
from heapster_columnar.sinks._duckdb_migrate import migrate
from heapster_columnar.sinks._duckdb_schema import CODED
from heapster_columnar.sinks.duckdb import DuckDBConfig, DuckDBSink
from heapster_columnar.sinks.registry import build_sink

HERE = Path(__file__).parent
POD_A, POD_B = "coredns-5dd5756b68-xmx7l", "etcd-datagen-1-28"


@pytest.fixture(scope="module")
def made(kubelet_data: Path) -> list[Window]:
    """Nine consecutive windows 15 s apart, all with the same Dimensions object."""
    return fixture_windows(kubelet_data, 9)


def sink_at(path: Path, **options: Any) -> DuckDBSink:
    return DuckDBSink(DuckDBConfig(path=path, snapshot=timedelta(0), **options))


def query(path: Path, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql, params or None).fetchall()


def stored(path: Path, *copied: str) -> pa.Table:
    """The points as DuckDB returns them, cast back to the contract (a safe cast: fails on loss);
    ``copied`` names the copied-label columns after it."""
    with duckdb.connect(str(path), read_only=True) as con:
        table = con.sql("SELECT * FROM points").to_arrow_table()
    return table.cast(pa.schema([*POINTS_SCHEMA, *(pa.field(name, LABEL_TYPE) for name in copied)]))


def counts(path: Path) -> dict[datetime, int]:
    return dict(query(path, "SELECT timestamp, count(*) FROM points GROUP BY ALL ORDER BY 1"))


def pod_phase_changed(dimensions: Dimensions) -> Dimensions:
    """POD_A's phase Failed, POD_B gone; the other three tables are the very same objects."""
    pods = dimensions.pods
    phase = pc.if_else(pc.equal(pods["name"], POD_A), pa.scalar("Failed"), pods["phase"])
    pods = pods.set_column(pods.schema.get_field_index("phase"), pods.schema.field("phase"), phase)
    return replace(dimensions, pods=pods.filter(pc.not_equal(pods["name"], POD_B)))


def with_new_strings(window: Window, pod: str | None = "renamed-pod", **copied: str) -> Window:
    """``window`` with POD_A called ``pod`` (a string the file has not seen; None: keep the name)
    and ``copied`` label columns (``app="web"``: a column ``app`` of "web" on every point)."""
    points = window.points
    if pod is not None:
        names = points.column("pod_name").cast(pa.string())
        renamed = pc.if_else(pc.equal(names, POD_A), pa.scalar(pod), names).dictionary_encode()
        field = POINTS_SCHEMA.field("pod_name")
        points = points.set_column(points.schema.get_field_index("pod_name"), field, renamed)
    for name, value in copied.items():
        points = points.append_column(name, pa.array([value] * points.num_rows).dictionary_encode())
    return replace(window, points=points)


def distinct_sets(points: pa.Table) -> int:
    """How many distinct metric sets (rows of every column but metric, value, value_int) ``points`` has."""
    frame = pl.from_arrow(points.drop_columns(["metric", "value", "value_int"]))
    assert isinstance(frame, pl.DataFrame)
    return frame.unique().height


def label_ids(path: Path, label: str) -> list[tuple[int, str]]:
    return [(int(i), str(v)) for i, v in query(path, f'SELECT id, value FROM label_values."{label}" ORDER BY id')]


def dictionary_strings(windows: list[Window], label: str) -> set[str]:
    """Every string of ``label``'s dictionaries in ``windows`` (what the sink's vocabulary holds)."""
    return {v for w in windows for chunk in w.points.column(label).chunks for v in chunk.dictionary.to_pylist()}


# The first version of this sink stored one table of strings; a file it wrote, in plain SQL.
FIRST_LAYOUT = """
CREATE TABLE points (
    "timestamp" TIMESTAMP WITH TIME ZONE NOT NULL, "type" VARCHAR NOT NULL, metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL, value_int BIGINT, nodename VARCHAR, namespace_name VARCHAR, pod_name VARCHAR,
    pod_id VARCHAR, container_name VARCHAR, resource_id VARCHAR, make VARCHAR, model VARCHAR,
    accelerator_id VARCHAR, hostname VARCHAR, host_id VARCHAR, namespace_id VARCHAR,
    container_base_image VARCHAR, labels VARCHAR, sample_time TIMESTAMP WITH TIME ZONE,
    start_time TIMESTAMP WITH TIME ZONE, app VARCHAR
)"""


def first_layout_file(path: Path, windows: list[Window]) -> None:
    """``windows`` (each with an ``app`` column) in a points table of strings."""
    with duckdb.connect(str(path)) as con:
        con.execute(FIRST_LAYOUT)
        for window in windows:
            con.register("window_points", window.points)
            con.execute("INSERT INTO points SELECT * FROM window_points")
            con.unregister("window_points")


def relations(path: Path) -> dict[str, str]:
    """``schema.name`` -> ``BASE TABLE`` or ``VIEW`` for everything in the file."""
    sql = "SELECT table_schema || '.' || table_name, table_type FROM information_schema.tables"
    return {str(name): str(kind) for name, kind in query(path, sql)}


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "retention", "snapshot", "threads"),
    [
        ("duckdb:/data/metrics.duckdb?retention=30d", timedelta(days=30), timedelta(minutes=5), None),
        ("duckdb:/data/metrics.duckdb", timedelta(0), timedelta(minutes=5), None),
        ("duckdb:/data/metrics.duckdb?retention=0&snapshot=0&threads=1", timedelta(0), timedelta(0), 1),
        ("duckdb:/data/m.duckdb?snapshot=90s&retention=12h", timedelta(hours=12), timedelta(seconds=90), None),
    ],
)
def test_uri_options_are_parsed(text: str, retention: timedelta, snapshot: timedelta, threads: int | None) -> None:
    config = DuckDBSink.from_uri(parse_uri(text)).config
    assert (config.path, config.retention, config.snapshot, config.threads) == (
        Path("/data") / Path(parse_uri(text).target).name,
        retention,
        snapshot,
        threads,
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("duckdb:/d/m.duckdb?retention=soon", ["retention='soon'", "not a duration"]),
        ("duckdb:/d/m.duckdb?retention=-1d", ["retention='-1d'"]),
        ("duckdb:/d/m.duckdb?snapshot=often", ["snapshot='often'"]),
        ("duckdb:/d/m.duckdb?threads=0", ["threads='0'", "at least 1"]),
        ("duckdb:/d/m.duckdb?threads=two", ["threads='two'", "not an integer"]),
        ("duckdb:/d/m.duckdb?retension=30d", ["'retension'", "known: retention, snapshot, threads"]),
        ("duckdb:", ["no database file"]),
        ("duckdb::memory:", ["':memory:' is not a database file path"]),
        ("duckdb:/d/m.duckdb?retention=x&threads=-2", ["retention='x'", "threads='-2'"]),  # all problems at once
    ],
)
def test_bad_uri_options_are_config_errors_naming_them(text: str, named: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        DuckDBSink.from_uri(parse_uri(text))
    for fragment in named:
        assert fragment in str(raised.value)


def test_the_registry_builds_it_without_touching_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "metrics.duckdb"
    sink = build_sink(f"duckdb:{path}?retention=30d")
    assert isinstance(sink, DuckDBSink) and sink.name == "duckdb" and sink.path == path
    sink.close()
    sink.close()  # twice, and without a write: nothing was ever created
    assert not (tmp_path / "not").exists()
    with pytest.raises(SinkError, match="write after close"):
        sink.write(Window(T0, T0, MetricBatch.empty(), POINTS_SCHEMA.empty_table(), 0))


# --- round trip -------------------------------------------------------------------------------


def test_round_trip_is_exact_in_sql_arrow_and_polars(made: list[Window], tmp_path: Path) -> None:
    first = made[0].points
    ints = first["value_int"].to_pylist()
    at = next(i for i, v in enumerate(ints) if v is not None)
    ints[at] = 2**62 + 1  # not representable as a double: value_int must stay exact
    first = first.set_column(4, POINTS_SCHEMA.field("value_int"), pa.array(ints, pa.int64()))
    windows = [replace(made[0], points=first), *made[1:3]]
    path = tmp_path / "metrics.duckdb"
    sink = sink_at(path)
    for window in windows:
        sink.write(window)
    sink.close()
    expected = pa.concat_tables([w.points for w in windows])

    described = dict((name, kind) for name, kind, *_ in query(path, "DESCRIBE points"))
    assert described == {
        **{n: "VARCHAR" for n in POINTS_SCHEMA.names},
        "timestamp": "TIMESTAMP WITH TIME ZONE",
        "sample_time": "TIMESTAMP WITH TIME ZONE",
        "start_time": "TIMESTAMP WITH TIME ZONE",
        "value": "DOUBLE",
        "value_int": "BIGINT",
    }
    back = stored(path)
    assert back.num_rows == sum(w.points.num_rows for w in windows) == 1170 + 1381 + 1381
    assert canonical(back) == canonical(expected)
    assert query(path, f"SELECT count(*) FROM points WHERE value_int = {2**62 + 1}") == [(1,)]
    # Underneath: each entity's labels once per window, each string once, ids 1..n per label.
    kinds = relations(path)
    assert kinds["main.points"] == "VIEW" and kinds["main.point_rows"] == "BASE TABLE"
    assert kinds["main.metric_sets"] == "BASE TABLE"
    sets = sum(distinct_sets(w.points) for w in windows)  # grouped from the window's entity rows, never compared
    assert sets < back.num_rows / 10
    assert query(path, "SELECT count(*), count(DISTINCT _id), min(_id), max(_id) FROM metric_sets") == [
        (sets, sets, 1, sets)
    ]
    first_ids = "SELECT timestamp, min(_id) FROM metric_sets GROUP BY 1 ORDER BY 1"  # ids count up window by window
    assert [i for _, i in query(path, first_ids)] == [
        1,
        1 + distinct_sets(windows[0].points),
        1 + sets - distinct_sets(windows[2].points),
    ]
    assert {k for k in kinds if k.startswith("label_values.")} == {f"label_values.{c}" for c in CODED}
    for label in ("type", "metric", "pod_name", "resource_id", "make"):
        stored_ids = label_ids(path, label)
        assert [i for i, _ in stored_ids] == list(range(1, len(stored_ids) + 1))
        assert sorted(v for _, v in stored_ids) == sorted(dictionary_strings(windows, label))  # each once
    a_points = sum(pc.sum(pc.equal(w.points["pod_name"].cast(pa.string()), POD_A)).as_py() for w in windows)
    sql = (
        "SELECT count(*) FROM point_rows JOIN metric_sets ON _id = metric_set "
        "WHERE pod_name = (SELECT id FROM label_values.pod_name WHERE value = $v)"
    )
    assert query(path, sql, v=POD_A) == [(a_points,)] and a_points > 0

    with duckdb.connect(str(path), read_only=True) as con:
        frame = con.sql("SELECT * FROM points").pl()
    assert frame.schema["value"] == pl.Float64 and frame.schema["value_int"] == pl.Int64
    assert frame.schema["pod_name"] == pl.String and isinstance(frame.schema["timestamp"], pl.Datetime)
    plain = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f for f in POINTS_SCHEMA])
    want = pl.from_arrow(expected.cast(plain))
    assert isinstance(want, pl.DataFrame)
    times = ("timestamp", "sample_time", "start_time")
    want = want.with_columns(pl.col(c).dt.cast_time_unit("us") for c in times)  # DuckDB's unit; values exact
    got = frame.with_columns(pl.col(c).dt.convert_time_zone("UTC") for c in times)
    assert_frame_equal(got.sort(got.columns), want.sort(want.columns))


def test_points_without_their_entity_rows_are_stored_the_same(made: list[Window], tmp_path: Path) -> None:
    """A window whose points did not come from its batch (a replayed spool, a hand-built table):
    the sets are found by comparing columns, slower, with the same result."""
    windows = made[:2]
    for name, hint in (("fast", True), ("compared", False)):
        sink = sink_at(tmp_path / f"{name}.duckdb")
        for window in windows:
            sink.write(window if hint else replace(window, point_entities=None))
        sink.close()
    fast, compared = tmp_path / "fast.duckdb", tmp_path / "compared.duckdb"
    assert (
        canonical(stored(fast))
        == canonical(stored(compared))
        == canonical(pa.concat_tables([w.points for w in windows]))
    )
    count = "SELECT count(*) FROM metric_sets"
    assert query(fast, count) == query(compared, count) == [(sum(distinct_sets(w.points) for w in windows),)]


def test_copied_label_columns_become_varchar_columns(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    sink = sink_at(path)
    sink.write(made[0])
    points = made[1].points
    app = pa.array(["web"] * points.num_rows).dictionary_encode()
    sink.write(replace(made[1], points=points.append_column("app", app)))
    sink.close()
    assert query(path, "SELECT timestamp, app, count(*) FROM points GROUP BY ALL ORDER BY 1") == [
        (made[0].end, None, 1170),
        (made[1].end, "web", 1381),
    ]
    described = [(name, kind) for name, kind, *_ in query(path, "DESCRIBE points")]
    assert described[-3:] == [
        ("sample_time", "TIMESTAMP WITH TIME ZONE"),
        ("start_time", "TIMESTAMP WITH TIME ZONE"),
        ("app", "VARCHAR"),
    ]
    facts = (
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'metric_sets' ORDER BY ordinal_position"
    )
    assert query(path, facts)[-1] == ("app", "INTEGER")
    assert label_ids(path, "app") == [(1, "web")]


# --- transactions -----------------------------------------------------------------------------


def test_a_failed_window_leaves_none_of_its_rows_nor_strings(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    sink = sink_at(path)
    sink.write(made[0])
    # Both failing windows bring strings the file has not seen: a renamed pod and a copied label.
    # A value column of strings: DuckDB converts row by row until the last one, which is no number.
    fresh = with_new_strings(made[1], app="web")
    values = [str(v) for v in fresh.points["value"].to_pylist()[:-1]] + ["n/a"]
    bad_points = fresh.points.set_column(3, "value", pa.array(values))
    with pytest.raises(SinkError) as raised:
        sink.write(replace(fresh, points=bad_points))
    assert raised.value.retryable is False and str(path) in str(raised.value) and "n/a" in str(raised.value)
    # Points and strings fine, but a pods table whose start_time does not convert: fails after the
    # points and the new strings went in.
    fresh = with_new_strings(made[2], app="web")
    assert fresh.dimensions is not None
    pods = fresh.dimensions.pods
    broken = pods.set_column(5, "start_time", pa.array(["yesterday"] * pods.num_rows))
    with pytest.raises(SinkError) as raised:
        sink.write(replace(fresh, dimensions=replace(fresh.dimensions, pods=broken)))
    assert raised.value.retryable is False
    last = with_new_strings(made[3], app="web")
    sink.write(last)  # the connection is still good, and the same new strings now go in for good
    sink.close()
    assert counts(path) == {made[0].end: 1170, made[3].end: 1381}
    assert query(path, "SELECT count(*), min(valid_from) FROM pods") == [(24, made[0].end)]
    # The failed windows left no string behind, in the file or in memory: the renamed pod got the
    # next id once, the copied label its column and table once, and the last window reads back exactly.
    pods_known = len(dictionary_strings(made[:1], "pod_name"))
    assert label_ids(path, "pod_name")[pods_known:] == [(pods_known + 1, "renamed-pod")]
    assert label_ids(path, "app") == [(1, "web")]
    back = stored(path, "app").filter(pc.equal(pc.field("timestamp"), pa.scalar(made[3].end, POINTS_SCHEMA[0].type)))
    assert canonical(back) == canonical(last.points)


def test_the_vocabulary_is_rebuilt_when_the_file_is_reopened(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    sink = sink_at(path)
    sink.write(made[0])
    sink.close()
    later = with_new_strings(made[1], pod="restarted-pod")
    sink = sink_at(path)  # a new process: the strings and their ids come from the file
    sink.write(later)
    sink.close()
    # Each string once: the known ones kept their ids, the new one got the next (a vocabulary that
    # started empty would have given the first string of the window id 1 again).
    pods_known = len(dictionary_strings(made[:1], "pod_name"))
    ids = label_ids(path, "pod_name")
    assert [i for i, _ in ids] == list(range(1, pods_known + 2)) and ids[-1] == (pods_known + 1, "restarted-pod")
    assert canonical(stored(path)) == canonical(pa.concat_tables([made[0].points, later.points]))


def test_a_window_missing_a_contract_column_is_refused_before_any_io(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    sink = sink_at(path)
    with pytest.raises(SinkError, match=r"missing columns \['labels'\]") as raised:
        sink.write(replace(made[0], points=made[0].points.drop_columns(["labels"])))
    assert raised.value.retryable is False and not path.exists()


# --- dimensions -------------------------------------------------------------------------------


def test_dimensions_get_a_new_version_only_when_they_change(
    made: list[Window], kubelet_data: Path, tmp_path: Path
) -> None:
    path = tmp_path / "metrics.duckdb"
    original = made[0].dimensions
    assert original is not None
    changed = pod_phase_changed(original)
    sink = sink_at(path)
    sink.write(made[0])
    sink.write(made[1])  # the same objects
    sink.write(replace(made[2], dimensions=fixture_dimensions(kubelet_data)))  # rebuilt, equal contents
    sink.write(replace(made[3], dimensions=changed))
    sink.write(replace(made[4], dimensions=None))  # no API knowledge: keep what is stored
    sink.close()
    sink = sink_at(path)  # a restart compares contents with the file once
    sink.write(replace(made[5], dimensions=pod_phase_changed(fixture_dimensions(kubelet_data))))
    sink.close()

    t0, t3 = made[0].end, made[3].end
    versions = query(
        path,
        "SELECT name, phase, valid_from, valid_to FROM pods WHERE name IN ($a, $b) ORDER BY 3, 1",
        a=POD_A,
        b=POD_B,
    )
    assert versions == [(POD_A, "Running", t0, t3), (POD_B, "Running", t0, t3), (POD_A, "Failed", t3, None)]
    assert query(path, "SELECT count(*), count(valid_to) FROM pods") == [(25, 2)]
    for table, rows in (("containers", 29), ("namespaces", 5), ("nodes", 1)):
        assert query(path, f"SELECT count(*), count(valid_to), min(valid_from) FROM {table}") == [(rows, 0, t0)]
    joined = query(
        path,
        "SELECT DISTINCT p.timestamp, d.phase FROM points p JOIN pods d ON d.namespace = p.namespace_name "
        "AND d.name = p.pod_name AND p.timestamp >= d.valid_from AND (d.valid_to IS NULL OR p.timestamp < d.valid_to) "
        f"WHERE p.pod_name = '{POD_A}' ORDER BY 1",
    )
    assert joined == [(w.end, "Running" if w.end < t3 else "Failed") for w in made[:6]]


# --- retention --------------------------------------------------------------------------------


def test_retention_deletes_exactly_the_old_windows(kubelet_data: Path, tmp_path: Path) -> None:
    windows = fixture_windows(kubelet_data, 8, step=timedelta(minutes=1))
    assert windows[1].dimensions is not None
    changed = pod_phase_changed(windows[1].dimensions)
    path = tmp_path / "metrics.duckdb"
    sink = sink_at(path, retention=timedelta(minutes=2))
    windows[0] = with_new_strings(windows[0], pod="gone-pod")  # a string only the first window uses
    for k, window in enumerate(windows):
        sink.write(window if k == 0 else replace(window, dimensions=changed))
    sink.close()
    # Deletion runs on the first window, then every 2 minutes of window time (t2, t4, t6), each time
    # for points stamped before the window end minus 2 minutes: t0 and t1 go at t4, t2 and t3 at t6.
    assert list(counts(path)) == [w.end for w in windows[4:]]
    # The versions that ended at t1 ended before t2 (the cutoff at t4): gone; the current ones stay.
    assert query(path, "SELECT valid_from, count(*), count(valid_to) FROM pods GROUP BY 1 ORDER BY 1") == [
        (windows[0].end, 22, 0),  # unchanged since the first window
        (windows[1].end, 1, 0),  # POD_A's second version
    ]
    assert query(path, "SELECT count(*) FROM nodes") == [(1,)]
    # Strings stay (ids keep their meaning for snapshot readers); the kept rows read back exactly.
    assert ("gone-pod" in {v for _, v in label_ids(path, "pod_name")}) and counts(path)
    assert query(path, "SELECT count(*) FROM points WHERE pod_name = 'gone-pod'") == [(0,)]
    assert canonical(stored(path)) == canonical(pa.concat_tables([w.points for w in windows[4:]]))


# --- crashes ----------------------------------------------------------------------------------

WRITER = """
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
import numpy as np, pyarrow as pa
sys.path.insert(0, {here!r})
from windows import fixture_windows
from heapster_columnar.model.schema import TIME
from heapster_columnar.samples import kubelet_dir
from heapster_columnar.sinks import _duckdb_store
from heapster_columnar.sinks._duckdb_migrate import migrate
from heapster_columnar.sinks._duckdb_schema import CODED
from heapster_columnar.sinks.duckdb import DuckDBConfig, DuckDBSink
w0, w1, w2 = fixture_windows(kubelet_dir(), 3)
sink = DuckDBSink(DuckDBConfig(path=Path({path!r}), snapshot=timedelta(0)))
sink.write(w0)
sink.write(w1)
print("committed", flush=True)
points = pa.concat_tables([w2.points] * {copies}).combine_chunks()
stamp = int((w2.end + timedelta(hours=1)).timestamp() * 1000)
points = points.set_column(0, points.schema.field(0), pa.array(np.full(points.num_rows, stamp), TIME))
print("writing", points.num_rows, flush=True)
# Each copy its own entities (as if {copies} times the cluster), so the sets are written too.
rows = w2.batch.entities.num_rows
entities = np.concatenate([w2.point_entities + k * rows for k in range({copies})])
sink.write(replace(w2, end=w2.end + timedelta(hours=1), points=points, point_entities=entities))
print("written", flush=True)
"""


def test_sigkill_mid_write_loses_at_most_the_window_in_flight(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    script = WRITER.format(here=str(HERE), path=str(path), copies=2500)
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "committed\n"
        assert child.stdout.readline().startswith("writing")
        before, started = path.stat().st_size, time.monotonic()
        while path.stat().st_size < before + (8 << 20) and time.monotonic() - started < 3:
            time.sleep(0.01)  # kill once the window's row groups are landing in the file
        grown = path.stat().st_size - before
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
    assert child.returncode == -signal.SIGKILL and "written" not in rest, "the write finished before the kill"
    assert grown >= 8 << 20  # part of the window was in the file when the process died

    sink = sink_at(path)  # the restart: DuckDB opens the file and replays its WAL
    sink.write(made[5])
    sink.close()
    assert counts(path) == {made[0].end: 1170, made[1].end: 1381, made[5].end: 1381}
    survivors = stored(path).filter(pc.less(pc.field("timestamp"), pa.scalar(made[2].end, POINTS_SCHEMA[0].type)))
    assert canonical(survivors) == canonical(pa.concat_tables([made[0].points, made[1].points]))


# --- files that cannot be written -------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    with shared_directory("duckdb-sink-") as path:
        yield path


def test_a_read_only_directory_is_a_permanent_error_naming_the_file(made: list[Window], shared_dir: Path) -> None:
    directory = shared_dir / "ro"
    directory.mkdir(mode=0o555)
    directory.chmod(0o555)
    path = directory / "metrics.duckdb"
    sink = sink_at(path)
    with unprivileged(), pytest.raises(SinkError) as raised:
        sink.write(made[0])
    assert raised.value.retryable is False
    assert str(path) in str(raised.value) and "permission denied" in str(raised.value)
    assert os.listdir(directory) == []


def test_a_read_only_file_is_a_permanent_error_and_stays_as_it_was(made: list[Window], shared_dir: Path) -> None:
    path = shared_dir / "metrics.duckdb"
    sink = sink_at(path)
    sink.write(made[0])
    sink.close()
    path.chmod(0o444)
    content = path.read_bytes()
    sink = sink_at(path)
    with unprivileged(), pytest.raises(SinkError) as raised:
        sink.write(made[1])
    assert raised.value.retryable is False and str(path) in str(raised.value)
    assert "permission denied" in str(raised.value) and path.read_bytes() == content


@pytest.mark.parametrize("content", [b"<html>502 Bad Gateway</html>\n" * 300, b""], ids=["garbage", "empty"])
def test_a_file_that_is_not_duckdb_is_named_and_never_overwritten(
    made: list[Window], tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "metrics.duckdb"
    path.write_bytes(content)
    sink = sink_at(path)
    for _ in range(2):  # and not on a retry either
        with pytest.raises(SinkError) as raised:
            sink.write(made[0])
        assert raised.value.retryable is False
        assert str(path) in str(raised.value) and "not a DuckDB database" in str(raised.value)
    assert path.read_bytes() == content and sorted(os.listdir(tmp_path)) == ["metrics.duckdb"]


def test_a_duckdb_file_with_someone_elses_points_table_is_refused(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE points (host VARCHAR, load DOUBLE)")
    sink = sink_at(path)
    with pytest.raises(SinkError, match=r"table points has columns \(host VARCHAR, load DOUBLE\)") as raised:
        sink.write(made[0])
    assert raised.value.retryable is False and str(path) in str(raised.value)
    assert query(path, "SELECT table_name FROM duckdb_tables()") == [("points",)]


def test_a_file_of_the_first_layout_is_converted_at_open(
    made: list[Window], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "metrics.duckdb"
    old = [with_new_strings(made[0], app="web"), with_new_strings(made[1], pod=None, app="db")]
    first_layout_file(path, old)
    sink = sink_at(path)
    with caplog.at_level(logging.INFO, logger="heapster_columnar.sinks.duckdb"):
        sink.write(made[2])  # opens the file, converts it, then writes as usual
    sink.close()
    logged = [r.getMessage() for r in caplog.records if "converted" in r.getMessage()]
    assert len(logged) == 1 and logged[0].startswith(
        f"duckdb: {path}: converted 2551 points of the first layout (a points table of strings) to metric_sets "
        "+ point_rows with ids, label_values.* and a points view in "
    )
    kinds = relations(path)
    assert kinds["main.points"] == "VIEW" and kinds["main.point_rows"] == "BASE TABLE"
    assert kinds["main.metric_sets"] == "BASE TABLE"
    assert label_ids(path, "app") == [(1, "db"), (2, "web")]  # converted strings get ids in string order
    assert [(name, kind) for name, kind, *_ in query(path, "DESCRIBE points")][-1] == ("app", "VARCHAR")
    no_app = made[2].points.append_column("app", pa.nulls(made[2].points.num_rows, LABEL_TYPE))
    assert canonical(stored(path, "app")) == canonical(pa.concat_tables([*(w.points for w in old), no_app]))


def test_a_failed_conversion_leaves_the_first_layout_as_it_was(
    made: list[Window], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "metrics.duckdb"
    old = [with_new_strings(made[0], app="web")]
    first_layout_file(path, old)

    def failing(con: duckdb.DuckDBPyConnection, columns: list[str]) -> int:
        migrate(con, columns)  # all of it done, then the disk fails before the commit
        raise duckdb.IOException("injected: no space left on device")

    monkeypatch.setattr(_duckdb_store, "migrate", failing)
    sink = sink_at(path)
    with pytest.raises(SinkError, match="cannot open the database: IOException: injected") as raised:
        sink.write(made[1])
    assert raised.value.retryable is True
    assert relations(path) == {"main.points": "BASE TABLE"}
    assert canonical(stored(path, "app")) == canonical(old[0].points)
    monkeypatch.undo()
    sink.write(made[1])  # the retry converts it
    sink.close()
    assert relations(path)["main.points"] == "VIEW" and counts(path) == {made[0].end: 1170, made[1].end: 1381}


def test_a_file_with_both_layouts_is_refused(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    first_layout_file(path, [])
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE point_rows (x INTEGER)")
    sink = sink_at(path)
    with pytest.raises(SinkError, match="table points and table point_rows both exist") as raised:
        sink.write(made[0])
    assert raised.value.retryable is False
    assert relations(path) == {"main.points": "BASE TABLE", "main.point_rows": "BASE TABLE"}


def test_a_vocabulary_this_sink_cannot_have_written_is_refused(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    sink = sink_at(path)
    sink.write(made[0])
    sink.close()
    with duckdb.connect(str(path)) as con:  # a second id 1: the view would return its rows twice
        con.execute("INSERT INTO label_values.pod_name VALUES (1, 'impostor')")
    before = label_ids(path, "pod_name")
    sink = sink_at(path)
    with pytest.raises(
        SinkError, match=r"holds tables this sink does not write \(label_values.pod_name: the ids"
    ) as raised:
        sink.write(made[1])
    assert raised.value.retryable is False
    assert label_ids(path, "pod_name") == before and len(before) == len(dictionary_strings(made[:1], "pod_name")) + 1


def test_a_second_writer_is_a_retryable_error_until_it_leaves(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    holder = "import duckdb, sys\ncon = duckdb.connect(sys.argv[1])\nprint('open', flush=True)\nsys.stdin.read()"
    command = [sys.executable, "-c", holder, str(path)]
    sink = sink_at(path)
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as other:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline() == "open\n"
        with pytest.raises(SinkError) as raised:
            sink.write(made[0])
        other.stdin.close()
    assert raised.value.retryable is True and "another process has it open" in str(raised.value)
    sink.write(made[0])  # the retry
    sink.close()
    assert counts(path) == {made[0].end: 1170}


# --- readers ----------------------------------------------------------------------------------

READER = """
import json, sys, duckdb
main, snapshot = sys.argv[1], sys.argv[2]
def summary(con):
    rows = con.sql("SELECT epoch_ms(timestamp), count(*), sum(value_int)::VARCHAR FROM points GROUP BY ALL ORDER BY 1")
    return [[t, n, s] for t, n, s in rows.fetchall()]
try:
    duckdb.connect(main, read_only=True)
    print(json.dumps("opened"), flush=True)
except duckdb.IOException as error:
    print(json.dumps(str(error)), flush=True)
con = duckdb.connect(snapshot, read_only=True)
for command in sys.stdin:
    if command.strip() == "reopen":
        con.close()
        con = duckdb.connect(snapshot, read_only=True)
    print(json.dumps(summary(con)), flush=True)
"""


def test_a_reader_process_queries_the_snapshot_while_the_sink_writes(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    sink = DuckDBSink(DuckDBConfig(path=path, snapshot=timedelta(minutes=1)))
    for window in made[:5]:  # snapshots after the first window and after the fifth (60 s later)
        sink.write(window)

    def known(windows: list[Window]) -> list[list[Any]]:
        sums = [sum(v for v in w.points["value_int"].to_pylist() if v is not None) for w in windows]
        return [[int(w.end.timestamp() * 1000), w.points.num_rows, str(s)] for w, s in zip(windows, sums, strict=True)]

    command = [sys.executable, "-c", READER, str(path), str(sink.snapshot_path)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as reader:
        assert reader.stdin is not None and reader.stdout is not None

        def ask(command: str) -> Any:
            assert reader.stdin is not None and reader.stdout is not None
            reader.stdin.write(command + "\n")
            reader.stdin.flush()
            return json.loads(reader.stdout.readline())

        locked = json.loads(reader.stdout.readline())
        assert "Could not set lock" in locked  # why readers need the snapshot
        assert ask("query") == known(made[:5])
        for window in made[5:]:  # the fifth window after is 60 s on: a new snapshot replaces the file
            sink.write(window)
        assert ask("query") == known(made[:5])  # an open connection keeps reading its copy
        assert ask("reopen") == known(made)
        reader.stdin.close()
    sink.close()
    assert reader.returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["metrics.duckdb", "metrics.snapshot.duckdb"]


def test_close_refreshes_the_snapshot_and_snapshot_can_be_asked_for(made: list[Window], tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    sink = DuckDBSink(DuckDBConfig(path=path, snapshot=timedelta(hours=1)))
    sink.write(made[0])
    sink.write(made[1])
    assert len(counts(sink.snapshot_path)) == 1  # taken after the first window only
    assert sink.snapshot() == sink.snapshot_path and len(counts(sink.snapshot_path)) == 2
    sink.write(made[2])
    sink.close()
    assert counts(sink.snapshot_path) == counts(path) and len(counts(path)) == 3


def test_an_attached_snapshot_resolves_its_own_tables(made: list[Window], tmp_path: Path) -> None:
    """A notebook may ATTACH the snapshot under any name: the view must read that file's tables."""
    sink = DuckDBSink(DuckDBConfig(path=tmp_path / "metrics.duckdb", snapshot=timedelta(hours=1)))
    for window in made[:2]:
        sink.write(window)
    sink.close()
    sql = "SELECT timestamp, count(*), count(DISTINCT pod_name), max(metric) FROM {} GROUP BY 1 ORDER BY 1"
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{sink.snapshot_path}' AS elsewhere (READ_ONLY)")
        attached = con.sql(sql.format("elsewhere.points")).fetchall()
    assert attached == query(sink.snapshot_path, sql.format("points"))
    assert [n for _, n, *_ in attached] == [1170, 1381]


# --- the model API's history ------------------------------------------------------------------

NODE, NAMESPACE = "datagen-1-28", "kube-system"


def entity_values(windows: list[Window], metric: str, **keys: str | None) -> list[tuple[datetime, Any]]:
    """(window end, value_int) of one entity's metric, from the processed entity tables."""
    out = []
    for window in windows:
        entities = pl.from_arrow(window.batch.entities)
        assert isinstance(entities, pl.DataFrame)
        for name, value in keys.items():
            entities = entities.filter(pl.col(name).is_null() if value is None else pl.col(name) == value)
        out.append((window.end, entities.get_column(metric).item()))
    return out


@pytest.mark.parametrize("layout", ["current", "first"])
def test_model_history_reads_one_entity_from_the_snapshot(made: list[Window], tmp_path: Path, layout: str) -> None:
    windows = made[:3]
    if layout == "current":
        sink = DuckDBSink(DuckDBConfig(path=tmp_path / "metrics.duckdb", snapshot=timedelta(minutes=5)))
        for window in windows:
            sink.write(window)
        sink.close()
        snapshot = sink.snapshot_path
    else:  # a snapshot taken before the sink converted the file
        snapshot = tmp_path / "metrics.snapshot.duckdb"
        first_layout_file(snapshot, [with_new_strings(w, pod=None, app="web") for w in windows])
    history = DuckDBHistory(snapshot)
    end = windows[-1].end + timedelta(seconds=1)

    def series(entity: tuple[str | None, ...], metric: str, start: datetime | None = None) -> list[tuple[Any, ...]]:
        table = history.points(entity, metric, start, end)
        assert table.column_names == ["timestamp", "metric", "value", "value_int"]
        assert set(table.column("metric").to_pylist()) <= {metric}
        return list(zip(table.column("timestamp").to_pylist(), table.column("value_int").to_pylist(), strict=True))

    pod = ("pod", NODE, NAMESPACE, POD_A, None)
    want = entity_values(windows, "memory/usage", type="pod", nodename=NODE, pod_name=POD_A, container_name=None)
    assert series(pod, "memory/usage") == want and len(want) == 3
    assert series(pod, "memory/usage", windows[1].end) == want[1:]
    container = ("pod_container", NODE, NAMESPACE, POD_A, "coredns")
    keys = {"type": "pod_container", "pod_name": POD_A, "container_name": "coredns"}
    assert series(container, "memory/working_set") == entity_values(windows, "memory/working_set", **keys)
    assert series(("pod", NODE, NAMESPACE, "no-such-pod", None), "memory/usage") == []
    assert series(pod, "no/such-metric") == []
