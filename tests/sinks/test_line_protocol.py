"""Line protocol encoding against hand-written expected lines (no server; see test_influxdb.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from heapster_columnar.model.schema import POINTS_SCHEMA
from heapster_columnar.sinks.line_protocol import (
    LineEncoder,
    LineFormat,
    escape_measurement,
    escape_tag,
    split_metric,
)
from tests.sinks.windows import fixture_windows

END = datetime(2024, 6, 1, 0, 0, 30, tzinfo=UTC)
MS = 1717200030000
CLUSTER = (("cluster_name", "default"),)


def table(*rows: dict[str, Any]) -> pa.Table:
    """A points table from partial rows: timestamp END, value = value_int when only that is given."""
    full = []
    for row in rows:
        row = {"timestamp": END, "type": "pod", **row}
        if "value" not in row:
            row["value"] = float(row["value_int"])
        full.append(row)
    return pa.Table.from_pylist(full, schema=POINTS_SCHEMA)


def lines(points: pa.Table, fmt: LineFormat | None = None, **kwargs: Any) -> list[str]:
    encoder = LineEncoder(fmt or LineFormat(constant_tags=CLUSTER))
    text = b"".join(b.body.to_pybytes() for b in encoder.encode(points, batch_points=kwargs.pop("batch", 1000)))
    return text.decode().splitlines()


def test_heapster_schema_line() -> None:
    points = table(
        {
            "metric": "cpu/usage_rate",
            "value_int": 250,
            "nodename": "node-1",
            "namespace_name": "default",
            "pod_name": "web-0",
            "pod_id": "uid-1",
            "container_name": "app",
            "hostname": "node-1.example",
            "host_id": "i-123",
            "namespace_id": "ns-uid",
            "container_base_image": "nginx:1.25",
            "labels": "app:web,tier:front",
            "type": "pod_container",
        }
    )
    assert lines(points) == [
        r"cpu/usage_rate,cluster_name=default,container_base_image=nginx:1.25,container_name=app,"
        r"labels=app:web\,tier:front,namespace_name=default,nodename=node-1,pod_name=web-0,type=pod_container"
        f" value=250i {MS}"
    ]


def test_escaping_of_tags_measurements_and_special_values() -> None:
    points = table(
        {"metric": "custom/my metric,v2", "value": 0.1, "labels": "team:a b,c=d", "pod_name": "p"},
        {"metric": "custom/x", "value": 1e20, "labels": "", "pod_name": "p"},  # empty tag: omitted
        {"metric": "custom/x", "value": -0.0, "labels": "trail\\", "pod_name": "two\nlines"},
        {"metric": "custom/x", "value": 2.0, "labels": "back\\slash", "pod_name": None},
        {"metric": "custom/x", "value": float("nan"), "pod_name": "p"},  # skipped
        {"metric": "custom/x", "value": float("inf"), "pod_name": "p"},  # skipped
    )
    fmt = LineFormat(constant_tags=(("cluster_name", "prod east"),))
    encoder = LineEncoder(fmt)
    body = b"".join(b.body.to_pybytes() for b in encoder.encode(points, batch_points=100)).decode()
    assert body.splitlines() == [
        rf"custom/my\ metric\,v2,cluster_name=prod\ east,labels=team:a\ b\,c\=d,pod_name=p,type=pod value=0.1 {MS}",
        rf"custom/x,cluster_name=prod\ east,pod_name=p,type=pod value=1e+20 {MS}",
        rf"custom/x,cluster_name=prod\ east,labels=trail,pod_name=two\ lines,type=pod value=-0 {MS}",
        rf"custom/x,cluster_name=prod\ east,labels=back\slash,type=pod value=2 {MS}",
    ]
    assert encoder.skipped == 2


def test_escape_functions() -> None:
    values = pa.array(["a b", "a,b", "a=b", "x\\", "x\\,y", "x\\y", "", None])
    assert escape_tag(values).to_pylist() == [r"a\ b", r"a\,b", r"a\=b", "x", r"x\,y", "x\\y", "", None]
    assert escape_measurement(pa.array(["a b,c=d"])).to_pylist() == [r"a\ b\,c=d"]


def test_integers_are_exact_and_doubles_round_trip() -> None:
    big = 2**62 + 1  # not representable as a double
    doubles = [0.1, 1 / 3, 1e-7, 5e-324, 1.7976931348623157e308, 123456789.123456789, -2.5]
    points = table(
        {"metric": "cpu/usage", "value_int": big, "value": float(big)},
        *({"metric": "custom/f", "value": v} for v in doubles),
    )
    got = lines(points, LineFormat(tags=()))
    assert got[0] == f"cpu/usage value={big}i {MS}"
    parsed = [float(line.split(" ")[1].removeprefix("value=")) for line in got[1:]]
    assert parsed == doubles  # exact: the shortest repr that parses back to the same double


def test_withfields_splits_at_the_first_slash() -> None:
    points = table(
        {"metric": "cpu/usage_rate", "value_int": 5},
        {"metric": "uptime", "value_int": 7},
        {"metric": "nvidia.com/gpu/request", "value_int": 1},
    )
    assert lines(points, LineFormat(tags=("type",), withfields=True)) == [
        f"cpu,type=pod usage_rate=5i {MS}",
        f"uptime,type=pod value=7i {MS}",
        f"nvidia.com,type=pod gpu/request=1i {MS}",
    ]
    measurement, field = split_metric(pa.array(["a/b/c", "x"]), True)
    assert (measurement.to_pylist(), field.to_pylist()) == (["a", "x"], ["b/c", "value"])


def test_tag_choice_constant_tags_and_dropped_metrics() -> None:
    row = {"nodename": "n", "pod_id": "u", "hostname": "h", "labels": "a:b", "cluster_name": "col"}
    schema = pa.schema([*POINTS_SCHEMA, pa.field("cluster_name", pa.dictionary(pa.int32(), pa.string()))])
    points = pa.Table.from_pylist(
        [
            {"timestamp": END, "type": "node", "metric": "cpu/usage", "value": 1.0, "value_int": 1, **row},
            {"timestamp": END, "type": "node", "metric": "uptime", "value": 2.0, "value_int": 2, **row},
        ],
        schema=schema,
    )
    heapster_minus_labels = LineFormat(exclude=("labels",), constant_tags=(("cluster_name", "c1"),))
    assert lines(points, heapster_minus_labels) == [  # the constant replaces the stored-label column
        f"cpu/usage,cluster_name=c1,nodename=n,type=node value=1i {MS}",
        f"uptime,cluster_name=c1,nodename=n,type=node value=2i {MS}",
    ]
    only = LineFormat(tags=("nodename", "pod_id"), drop_metrics=frozenset({"cpu/usage"}))
    assert lines(points, only) == [f"uptime,nodename=n,pod_id=u value=2i {MS}"]


def test_timestamps_per_point_when_they_differ() -> None:
    points = table({"metric": "uptime", "value_int": 1}, {"metric": "uptime", "value_int": 2})
    stamps = pa.array([END, END + timedelta(seconds=15)], POINTS_SCHEMA.field("timestamp").type)
    points = points.set_column(0, POINTS_SCHEMA.field("timestamp"), stamps)
    assert lines(points, LineFormat(tags=())) == [f"uptime value=1i {MS}", f"uptime value=2i {MS + 15000}"]


def test_bodies_respect_batch_points_and_max_bytes() -> None:
    points = table(*({"metric": "uptime", "value_int": i, "pod_name": f"p{i}"} for i in range(10)))
    encoder = LineEncoder(LineFormat(tags=("pod_name",)))
    by_count = list(encoder.encode(points, batch_points=4))
    assert [b.points for b in by_count] == [4, 4, 2]
    one = len(f"uptime,pod_name=p0 value=0i {MS}\n")
    by_size = list(encoder.encode(points, batch_points=100, max_bytes=3 * one))
    assert [b.points for b in by_size] == [3, 3, 3, 1]
    assert all(b.body.size <= 3 * one for b in by_size)
    assert b"".join(b.body.to_pybytes() for b in by_size) == b"".join(b.body.to_pybytes() for b in by_count)


def test_fixture_window_lines_parse_back_to_the_points(kubelet_data: Path) -> None:
    """Every point of a real processed window: one line each, value and tags as in the table."""
    window = fixture_windows(kubelet_data, 2)[1]
    rows = window.points.to_pylist()
    got = lines(window.points, batch=97)  # odd batch size: int/double splits inside batches
    assert len(got) == len(rows)
    assert sorted(map(_parse, got)) == sorted(map(_expected, rows))


def _parse(line: str) -> tuple[str, int | float, int]:
    """(series key, value, timestamp) of a line (the fixture has no escaped spaces)."""
    key, field, stamp = line.split(" ")
    text = field.removeprefix("value=")
    return key, int(text[:-1]) if text.endswith("i") else float(text), int(stamp)


def _expected(row: dict[str, Any]) -> tuple[str, int | float, int]:
    """What one row must become, written the slow obvious way (only commas need escaping here)."""
    tags = {k: v for k, v in row.items() if isinstance(v, str) and v and k != "metric"}
    for omitted in ("namespace_id", "pod_id", "hostname", "host_id"):
        tags.pop(omitted, None)
    tags["cluster_name"] = "default"
    key = row["metric"] + "".join(f",{k}={v.replace(',', chr(92) + ',')}" for k, v in sorted(tags.items()))
    value = row["value_int"] if row["value_int"] is not None else row["value"]
    return key, value, int(row["timestamp"].timestamp() * 1000)


def test_series_hashes_identify_measurement_and_tag_set() -> None:
    points = table(
        {"metric": "uptime", "value_int": 1, "pod_name": "a", "labels": "x:1"},
        {"metric": "uptime", "value_int": 2, "pod_name": "a", "labels": "x:1"},  # same series
        {"metric": "uptime", "value_int": 3, "pod_name": "a", "labels": "x:2"},
        {"metric": "cpu/usage", "value_int": 4, "pod_name": "a", "labels": "x:1"},
        {"metric": "uptime", "value_int": 5, "pod_name": "a", "labels": ""},  # empty = absent
        {"metric": "uptime", "value_int": 6, "pod_name": "a", "labels": None},
        {"metric": "uptime", "value_int": 7, "pod_name": None, "labels": "a"},  # not pod_name=a
    )
    h = LineEncoder(LineFormat(tags=("pod_name", "labels"))).series_hashes(points)
    assert h.dtype == np.uint64
    assert h[0] == h[1] and h[4] == h[5]
    assert len(set(h.tolist())) == 5
    without_labels = LineEncoder(LineFormat(tags=("pod_name",))).series_hashes(points)
    assert len(set(without_labels.tolist())) == 3  # uptime/a, cpu/usage/a, uptime/no pod
    fields = LineEncoder(LineFormat(tags=(), withfields=True)).series_hashes(points)
    assert len(set(fields.tolist())) == 2  # measurements "uptime" and "cpu"


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_dictionaries_are_escaped_once_and_reused(batch: int) -> None:
    points = table(*({"metric": "uptime", "value_int": i, "pod_name": f"p{i % 3}"} for i in range(9)))
    encoder = LineEncoder(LineFormat(tags=("pod_name",)))
    first = b"".join(b.body.to_pybytes() for b in encoder.encode(points, batch_points=batch))
    cached = dict(encoder._strings)
    again = b"".join(b.body.to_pybytes() for b in encoder.encode(points, batch_points=batch))
    assert first == again
    assert all(encoder._strings[k] is v for k, v in cached.items())
