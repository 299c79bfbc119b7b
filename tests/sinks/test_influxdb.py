"""The InfluxDB sink against a real InfluxDB 1.x (Debian's influxd, started by tests/sinks/influx_server.py).

Points are read back over the HTTP query API and compared, point for point, with what the window
held: measurement, tags, field, exact value, time.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pyarrow as pa
import pytest

from heapster_columnar.config.uri import parse_uri
from heapster_columnar.errors import ConfigError, SinkError
from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.schema import POINTS_SCHEMA
from heapster_columnar.model.window import Window
from heapster_columnar.sinks.influxdb import COUNTER_METRICS, InfluxDBSink
from heapster_columnar.sinks.registry import build_sink
from tests.sinks.influx_server import InfluxServer, influx_server
from tests.sinks.windows import fixture_windows

OMITTED = {"namespace_id", "pod_id", "hostname", "host_id"}
USER, PASSWORD = "root", "root"  # Heapster's defaults, so the sink needs no user/pw options


@pytest.fixture(scope="session")
def influx() -> Iterator[InfluxServer]:
    """One server for the session, with authentication on (admin root/root)."""
    with influx_server(auth=(USER, PASSWORD)) as server:
        yield server


@pytest.fixture(scope="module")
def windows(kubelet_data: Path) -> list[Window]:
    return fixture_windows(kubelet_data, 2)


@pytest.fixture
def db() -> str:
    return f"k8s_{uuid.uuid4().hex[:10]}"


_open: list[InfluxDBSink] = []


@pytest.fixture(autouse=True)
def _close_sinks() -> Iterator[None]:
    """Every sink a test made is closed after it (open httpx connections would warn)."""
    yield
    while _open:
        _open.pop().close()


def make_sink(server: InfluxServer, db: str, **options: Any) -> InfluxDBSink:
    query = urlencode({"db": db, **{k: str(v).lower() if isinstance(v, bool) else v for k, v in options.items()}})
    sink = build_sink(f"influxdb:{server.url}?{query}")
    assert isinstance(sink, InfluxDBSink)
    _open.append(sink)
    return sink


Point = tuple[str, frozenset[tuple[str, str]], str, Any, int]


def read_back(server: InfluxServer, db: str, rp: str | None = None) -> Counter[Point]:
    """Every stored (measurement, tags, field, value, time ms), one ``SELECT * ... GROUP BY *`` per
    measurement (one query over several would turn every integer into a float where another
    measurement has a float field of the same name)."""
    listed = server.query("SHOW MEASUREMENTS", db)[0].get("series", [])
    names = [name for (name,) in listed[0]["values"]] if listed else []
    if not names:
        return Counter()
    prefix = f'"{db}"."{rp}".' if rp else ""
    quoted = [prefix + '"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in names]
    out: Counter[Point] = Counter()
    for result in server.query("; ".join(f"SELECT * FROM {q} GROUP BY *" for q in quoted), db):
        for series in result.get("series", []):
            tags = frozenset((k, v) for k, v in series.get("tags", {}).items() if v != "")
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                stamp = row.pop("time")
                for field, value in row.items():
                    if value is not None:
                        out[(series["name"], tags, field, value, stamp)] += 1
    return out


def expected(
    points: pa.Table, *, cluster: str = "default", withfields: bool = False, tags: Any = None
) -> Counter[Point]:
    """What Heapster's schema makes of ``points``, computed row by row the obvious way."""
    out: Counter[Point] = Counter()
    for row in points.to_pylist():
        labels = {
            k: v
            for k, v in row.items()
            if isinstance(v, str) and v and k != "metric" and (k not in OMITTED if tags is None else k in tags)
        }
        if cluster:
            labels["cluster_name"] = cluster
        measurement, field = row["metric"], "value"
        if withfields and "/" in measurement:
            measurement, field = measurement.split("/", 1)
        value = row["value_int"] if row["value_int"] is not None else row["value"]
        out[(measurement, frozenset(labels.items()), field, value, int(row["timestamp"].timestamp() * 1000))] += 1
    return out


def field_types(server: InfluxServer, db: str) -> dict[tuple[str, str], str]:
    result = server.query("SHOW FIELD KEYS", db)[0]
    return {(s["name"], key): typ for s in result.get("series", []) for key, typ in s["values"]}


def test_points_read_back_exactly_with_integer_and_float_fields(
    influx: InfluxServer, db: str, windows: list[Window]
) -> None:
    sink = make_sink(influx, db)
    for window in windows:
        sink.write(window)
    sink.close()
    want = expected(windows[0].points) + expected(windows[1].points)
    got = read_back(influx, db)
    assert got == want
    assert sum(got.values()) == windows[0].points.num_rows + windows[1].points.num_rows
    per_measurement = Counter(m for m, *_ in got.elements())
    sent = Counter(windows[0].points.column("metric").to_pylist() + windows[1].points.column("metric").to_pylist())
    assert per_measurement == sent
    assert per_measurement["cpu/usage_rate"] == 47  # no rates in the first window
    types = field_types(influx, db)
    assert types[("cpu/usage", "value")] == "integer"  # nanoseconds: exact int64, not a double
    assert types[("cpu/usage_rate", "value")] == "integer"
    assert types[("memory/page_faults_rate", "value")] == "float"
    assert types[("cpu/node_utilization", "value")] == "float"
    assert sink.points_written == sum(got.values())
    assert sink.series == len({(m, t) for m, t, *_ in got})


def test_labels_with_spaces_commas_and_equals_and_special_values(influx: InfluxServer, db: str) -> None:
    end = datetime(2024, 6, 1, 0, 0, 30, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {"metric": "uptime", "value_int": 2**62 + 1, "labels": "app:web server,team=a b,tier:x=y"},
        {"metric": "custom/qps per pod,v2", "value": 0.1, "labels": "app:web server,team=a b,tier:x=y"},
        {"metric": "custom/qps per pod,v2", "value": 1e-7, "pod_name": "p 2", "labels": ""},
        {"metric": "custom/tiny", "value": 5e-324, "pod_name": "p=3", "container_name": "c,1"},
        {"metric": "custom/tiny", "value": float("nan"), "pod_name": "nan"},  # not storable: skipped
    ]
    points = pa.Table.from_pylist(
        [
            {
                "timestamp": end,
                "type": "pod",
                "namespace_name": "ns 1",
                "pod_name": "web-0",
                **row,
                "value": row.get("value", float(row.get("value_int", 0))),
            }
            for row in rows
        ],
        schema=POINTS_SCHEMA,
    )
    window = Window(end, end, MetricBatch.empty(), points, nodes=1)  # this sink reads only the points
    sink = make_sink(influx, db, cluster_name="prod east,1")
    sink.write(window)
    assert sink.skipped == 1
    got = read_back(influx, db)
    assert got == expected(points.slice(0, 4), cluster="prod east,1")
    labels = {dict(tags).get("labels") for _, tags, *_ in got}
    assert "app:web server,team=a b,tier:x=y" in labels


def test_withfields_splits_measurement_and_field(influx: InfluxServer, db: str, windows: list[Window]) -> None:
    make_sink(influx, db, withfields=True).write(windows[1])
    got = read_back(influx, db)
    assert got == expected(windows[1].points, withfields=True)
    measurements = {m for m, *_ in got}
    assert {"cpu", "memory", "network", "filesystem", "uptime"} <= measurements
    assert "cpu/usage_rate" not in measurements
    assert field_types(influx, db)[("cpu", "usage_rate")] == "integer"


def test_database_and_retention_policy_are_created(influx: InfluxServer, db: str, kubelet_data: Path) -> None:
    # Points older than the policy's duration are refused ("points beyond retention policy"): write recent ones.
    windows = fixture_windows(kubelet_data, 2, start=datetime.now(UTC).replace(microsecond=0))
    assert db not in str(influx.query("SHOW DATABASES"))
    make_sink(influx, db, retention="2h").write(windows[0])
    policies = {row[0]: row for row in influx.query("SHOW RETENTION POLICIES", db)[0]["series"][0]["values"]}
    assert policies["default"][1] == "2h0m0s" and policies["default"][4] is True
    assert sum(read_back(influx, db, rp="default").values()) == windows[0].points.num_rows
    make_sink(influx, db, retention="3h").write(windows[1])  # a changed option alters the policy
    policies = {row[0]: row for row in influx.query("SHOW RETENTION POLICIES", db)[0]["series"][0]["values"]}
    assert policies["default"][1] == "3h0m0s"


def test_database_dropped_behind_our_back_is_recreated(influx: InfluxServer, db: str, windows: list[Window]) -> None:
    sink = make_sink(influx, db)
    sink.write(windows[0])
    influx.query(f'DROP DATABASE "{db}"')
    sink.write(windows[1])
    assert read_back(influx, db) == expected(windows[1].points)


def test_bad_credentials_are_not_retryable(influx: InfluxServer, db: str, windows: list[Window]) -> None:
    with pytest.raises(SinkError) as caught:
        make_sink(influx, db, user="root", pw="wrong").write(windows[0])
    assert not caught.value.retryable
    assert "authorization failed" in caught.value.detail and influx.url in caught.value.detail


def test_write_only_user_writes_into_an_existing_database(influx: InfluxServer, db: str, windows: list[Window]) -> None:
    influx.query(f'CREATE DATABASE "{db}"')
    influx.query(f"CREATE USER \"w_{db}\" WITH PASSWORD 'secret'")
    influx.query(f'GRANT WRITE ON "{db}" TO "w_{db}"')
    make_sink(influx, db, user=f"w_{db}", pw="secret").write(windows[0])  # CREATE DATABASE refused: carries on
    assert read_back(influx, db) == expected(windows[0].points)


def test_rejected_points_are_not_retryable_and_carry_the_server_message(
    influx: InfluxServer, db: str, windows: list[Window]
) -> None:
    influx.query(f'CREATE DATABASE "{db}"')
    # Field types are per shard (a week of time): make "value" of cpu/usage_rate a float in the window's shard.
    stamp = int(windows[1].end.timestamp() * 1000)
    assert influx.write(db, b"cpu/usage_rate,type=x value=1.5 %d\n" % stamp).status_code == 204
    sink = make_sink(influx, db, batch=200)
    with pytest.raises(SinkError) as caught:
        sink.write(windows[1])
    assert not caught.value.retryable
    assert "field type conflict" in caught.value.detail
    # The other batches still went in: one rejected batch costs only its own points.
    stored = sum(read_back(influx, db).values())
    assert windows[1].points.num_rows - 200 <= stored - 1 < windows[1].points.num_rows


def test_server_down_is_retryable_and_names_the_url(windows: list[Window]) -> None:
    with influx_server() as server:
        sink = make_sink(server, "k8s")
        sink.write(windows[0])
        server.stop()
        with pytest.raises(SinkError) as caught:
            sink.write(windows[1])
        assert caught.value.retryable
        assert server.url in caught.value.detail
        server.start()  # same port, same data
        sink.write(windows[1])
        sink.close()
        assert read_back(server, "k8s") == expected(windows[0].points) + expected(windows[1].points)


def test_resending_after_a_partial_failure_gives_no_duplicates(windows: list[Window]) -> None:
    window = windows[1]
    with influx_server() as server:
        sink = make_sink(server, "k8s", batch=100)
        accepted: list[int] = []

        def stop_after_three(points: int, size: int) -> None:
            accepted.append(points)
            if len(accepted) == 3:
                server.stop()  # the server goes away in the middle of the window

        sink.on_batch = stop_after_three
        with pytest.raises(SinkError) as caught:
            sink.write(window)
        assert caught.value.retryable
        server.start()
        assert sum(read_back(server, "k8s").values()) == 300  # a partial window is stored
        sink.on_batch = None
        sink.write(window)  # the whole window again
        assert read_back(server, "k8s") == expected(window.points)  # each point once, exact values
        sink.write(window)
        assert read_back(server, "k8s") == expected(window.points)


def _pods(count: int) -> Window:
    end = datetime(2024, 6, 1, tzinfo=UTC)
    rows = [
        {"timestamp": end, "type": "pod", "metric": "uptime", "value": 1.0, "value_int": 1, "pod_name": f"p{i}"}
        for i in range(count)
    ]
    return Window(end, end, MetricBatch.empty(), pa.Table.from_pylist(rows, schema=POINTS_SCHEMA), nodes=1)


def test_series_counter_warns_once_per_threshold(
    influx: InfluxServer, db: str, caplog: pytest.LogCaptureFixture
) -> None:
    sink = make_sink(influx, db, max_series=100)
    warnings: list[logging.LogRecord] = []
    for pods, series, new_warnings in [(79, 79, 0), (80, 80, 1), (80, 80, 0), (50, 80, 0), (96, 96, 1), (120, 120, 1)]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="heapster_columnar.sinks.influxdb"):
            sink.write(_pods(pods))
        assert sink.series == series
        assert len(caplog.records) == new_warnings, (pods, caplog.records)
        warnings += caplog.records
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING, logging.ERROR]
    assert "80%" in warnings[0].getMessage() and "pod_name" in warnings[0].getMessage()
    assert len(influx.query("SHOW SERIES", db)[0]["series"][0]["values"]) == 120  # the server agrees


def test_the_server_series_limit_is_a_non_retryable_error() -> None:
    with influx_server(max_series=50) as server:
        with pytest.raises(SinkError) as caught:
            make_sink(server, "k8s").write(_pods(60))
        assert not caught.value.retryable
        assert "max-series-per-database limit exceeded" in caught.value.detail


def test_counter_metrics_can_be_left_out(influx: InfluxServer, db: str, windows: list[Window]) -> None:
    make_sink(influx, db, disable_counter_metrics=True).write(windows[1])
    measurements = {m for m, *_ in read_back(influx, db)}
    assert not measurements & COUNTER_METRICS
    assert {"cpu/usage_rate", "network/rx_rate", "uptime"} <= measurements
    assert {
        "cpu/usage",
        "memory/page_faults",
        "memory/major_page_faults",
        "network/rx",
        "network/rx_errors",
        "network/tx",
        "network/tx_errors",
        "disk/io_read_bytes",
        "disk/io_write_bytes",
    } == COUNTER_METRICS


def test_tags_that_merge_points_are_reported(
    influx: InfluxServer, db: str, windows: list[Window], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="heapster_columnar.sinks.influxdb"):
        make_sink(influx, db, tags="type,pod_name").write(windows[1])
    stored = sum(read_back(influx, db).values())
    assert stored < windows[1].points.num_rows
    assert f"{windows[1].points.num_rows - stored} points of the window share" in caplog.text


LABELS = {f.name for f in POINTS_SCHEMA if pa.types.is_dictionary(f.type)} - {"type", "metric"} | {"type"}


@pytest.mark.parametrize(
    ("option", "tags"),
    [
        ("-labels,-container_base_image", LABELS - OMITTED - {"labels", "container_base_image"}),
        (
            "type,nodename,namespace_name,pod_id,container_name,resource_id",
            {"type", "nodename", "namespace_name", "pod_id", "container_name", "resource_id"},
        ),
    ],
)
def test_tags_option_chooses_the_tags(
    influx: InfluxServer, db: str, windows: list[Window], option: str, tags: set[str]
) -> None:
    make_sink(influx, db, tags=option).write(windows[1])
    assert read_back(influx, db) == expected(windows[1].points, tags=tags)
    keys = {k for s in influx.query("SHOW TAG KEYS", db)[0]["series"] for (k,) in s["values"]}
    assert "cluster_name" in keys and "labels" not in keys and keys <= tags | {"cluster_name"}


# -- options (no I/O: an unreachable host is fine) ------------------------------------------------


def test_options_are_parsed() -> None:
    sink = InfluxDBSink.from_uri(
        parse_uri(
            "influxdb:http://influx.example:8086/prefix/?db=metrics&user=u&pw=p&retention=7d&secure=true"
            "&insecuressl=true&withfields=true&cluster_name=c1&disable_counter_metrics=true&concurrency=4"
            "&tags=-labels&batch=5000&timeout=2.5&max_series=500&gzip=false"
        )
    )
    c = sink.config
    assert c.url == "https://influx.example:8086/prefix"
    assert (c.db, c.user, c.password, c.retention) == ("metrics", "u", "p", "7d")
    assert c.insecure_ssl and c.withfields and c.disable_counter_metrics and not c.gzip
    assert (c.cluster_name, c.concurrency, c.exclude_tags, c.tags) == ("c1", 4, ("labels",), None)
    assert (c.batch, c.timeout, c.max_series) == (5000, 2.5, 500)
    defaults = InfluxDBSink.from_uri(parse_uri("influxdb:")).config
    assert defaults.url == "http://localhost:8086"
    assert (defaults.db, defaults.user, defaults.password, defaults.retention) == ("k8s", "root", "root", None)
    assert (defaults.cluster_name, defaults.concurrency, defaults.tags, defaults.exclude_tags) == (
        "default",
        1,
        None,
        (),
    )


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("influxdb:http://h:8086?retention=7 days", "retention='7 days'"),
        ("influxdb:http://h:8086?retention=30m", "minimum of 1h"),
        ("influxdb:http://h:8086?concurrency=0", "concurrency='0'"),
        ("influxdb:http://h:8086?withfields=maybe", "withfields='maybe'"),
        ("influxdb:http://h:8086?tags=a,-b", "tags='a,-b'"),
        ("influxdb:http://h:8086?tags=a b", "tags='a b'"),
        ("influxdb:http://h:8086?timeout=0", "timeout='0'"),
        ("influxdb:http://h:8086?batch=-1", "batch='-1'"),
        ("influxdb:http://h:8086?databse=x", "'databse'"),
        ("influxdb:ftp://h:8086", "http(s)"),
        ("influxdb:http://h:99999", "port"),
    ],
)
def test_bad_options_name_the_option_and_value(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        InfluxDBSink.from_uri(parse_uri(uri))
    assert message in str(caught.value)
