"""Durable sinks on their own threads: nothing accepted is lost, order is kept, the spool is bounded.

The sink here is a small recording sink of our own interface that fails when told to (the real
sinks have their own tests, and InfluxDB's outage test runs against the real server).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from heapster_columnar.errors import SinkError
from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.schema import POINTS_SCHEMA
from heapster_columnar.model.window import Window
from heapster_columnar.sinks import worker as worker_module
from heapster_columnar.sinks.spool import Spool
from heapster_columnar.sinks.worker import SinkWorker
from heapster_columnar.telemetry import Telemetry

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def window(k: int, rows: int = 3) -> Window:
    end = T0 + timedelta(seconds=15 * k)
    points = pa.Table.from_pylist(
        [
            {
                "timestamp": end,
                "type": "node",
                "metric": "cpu/usage",
                "value": float(k * 100 + i),
                "value_int": k * 100 + i,
            }
            for i in range(rows)
        ],
        schema=POINTS_SCHEMA,
    )
    return Window(end - timedelta(seconds=15), end, MetricBatch.empty(), points, nodes=1)


class Recording:
    """Keeps the window ends it took; ``down`` makes writes fail (retryable or not); ``gate`` holds them."""

    name = "recording"

    def __init__(self) -> None:
        self.written: list[tuple[datetime, list[int]]] = []
        self.down = False
        self.retryable = True
        self.gate = threading.Event()
        self.gate.set()
        self.closed = False

    def write(self, w: Window) -> None:
        self.gate.wait()
        if self.down:
            raise SinkError(self.name, "connection refused", retryable=self.retryable)
        self.written.append((w.end, w.points.column("value_int").to_pylist()))

    def close(self) -> None:
        self.closed = True


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "RETRY_FIRST", 0.05)
    monkeypatch.setattr(worker_module, "RETRY_MAX", 0.1)


def ends(sink: Recording) -> list[int]:
    return [int((end - T0).total_seconds() // 15) for end, _ in sink.written]


def test_an_outage_is_spooled_and_replayed_in_order(tmp_path: Path) -> None:
    sink, telemetry = Recording(), Telemetry()
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30, sink=sink.name)
    w = SinkWorker(sink, telemetry=telemetry, spool=spool)
    w.submit(window(0))
    wait_until(lambda: len(sink.written) == 1)
    sink.down = True
    for k in range(1, 4):
        w.submit(window(k))
    wait_until(lambda: len(spool) == 3)
    assert len(list((tmp_path / "spool").glob("*.arrow"))) == 3
    sink.down = False
    for k in range(4, 6):
        w.submit(window(k))
    wait_until(lambda: len(sink.written) == 6)
    w.close()
    assert ends(sink) == [0, 1, 2, 3, 4, 5]
    assert sink.written[2][1] == [200, 201, 202]  # the values came back from disk exactly
    assert len(spool) == 0 and not list((tmp_path / "spool").iterdir()) and sink.closed


def test_a_restart_resumes_the_spool(tmp_path: Path) -> None:
    sink = Recording()
    sink.down = True
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30, sink=sink.name)
    w = SinkWorker(sink, telemetry=Telemetry(), spool=spool)
    for k in range(3):
        w.submit(window(k))
    wait_until(lambda: len(spool) == 3)
    w.close(timeout=0.2)  # the sink is still down: the backlog stays on disk
    assert len(list((tmp_path / "spool").glob("*.arrow"))) == 3

    again = Recording()
    resumed = SinkWorker(again, telemetry=Telemetry(), spool=Spool(tmp_path / "spool", max_bytes=1 << 30, sink="r"))
    resumed.submit(window(3))
    wait_until(lambda: len(again.written) == 4)
    resumed.close()
    assert ends(again) == [0, 1, 2, 3]


def test_the_spool_bound_drops_the_oldest_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink, telemetry = Recording(), Telemetry()
    sink.down = True
    one = Spool(tmp_path / "probe", max_bytes=1 << 30, sink="probe")
    one.add(window(0))
    size = one.bytes
    spool = Spool(tmp_path / "spool", max_bytes=int(size * 2.5), sink=sink.name)  # room for two windows
    w = SinkWorker(sink, telemetry=telemetry, spool=spool)
    for k in range(5):
        w.submit(window(k))
    wait_until(lambda: spool.dropped_windows == 3)
    sink.down = False
    wait_until(lambda: len(sink.written) == 2)
    w.close()
    assert ends(sink) == [3, 4]
    assert "DROPPED window" in caplog.text
    dropped = telemetry.registry.get_sample_value("heapster_columnar_dropped_points_total", {"sink": sink.name})
    assert dropped == 9  # three windows of three points


def test_a_slow_sink_never_blocks_submit_and_loses_nothing(tmp_path: Path) -> None:
    sink = Recording()
    sink.gate.clear()  # every write waits
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30, sink=sink.name)
    w = SinkWorker(sink, telemetry=Telemetry(), spool=spool, queue_size=1)
    started = time.monotonic()
    for k in range(6):
        w.submit(window(k))
    assert time.monotonic() - started < 1.0
    assert len(spool) >= 4  # one being written, one queued, the rest on disk
    sink.gate.set()
    wait_until(lambda: len(sink.written) == 6)
    w.close()
    assert ends(sink) == [0, 1, 2, 3, 4, 5]


def test_a_refused_window_is_lost_and_counted_not_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink, telemetry = Recording(), Telemetry()
    sink.down, sink.retryable = True, False
    w = SinkWorker(sink, telemetry=telemetry, spool=Spool(tmp_path / "s", max_bytes=1 << 30, sink=sink.name))
    w.submit(window(0))
    wait_until(lambda: "LOST window" in caplog.text)
    sink.down = False
    w.submit(window(1))
    wait_until(lambda: len(sink.written) == 1)
    w.close()
    assert ends(sink) == [1]
    failures = telemetry.registry.get_sample_value("heapster_columnar_sink_failures_total", {"sink": sink.name})
    assert failures == 1


def test_a_hanging_write_is_reported_and_later_windows_are_spooled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Recording()
    sink.gate.clear()
    spool = Spool(tmp_path / "spool", max_bytes=1 << 30, sink=sink.name)
    w = SinkWorker(sink, telemetry=Telemetry(), spool=spool, timeout=0.2)
    w.submit(window(0))
    time.sleep(0.4)
    w.submit(window(1))
    assert "writing window" in caplog.text and len(spool) == 1
    sink.gate.set()
    wait_until(lambda: len(sink.written) == 2)
    w.close()
    assert ends(sink) == [0, 1]


def test_a_corrupt_spool_file_is_moved_aside_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / f"{int(T0.timestamp() * 1000):015d}.arrow").write_bytes(b"not arrow at all")
    (directory / ".tmp-000000000000001.arrow").write_bytes(b"half")
    spool = Spool(directory, max_bytes=1 << 30, sink="recording")
    spool.add(window(1))
    sink = Recording()
    w = SinkWorker(sink, telemetry=Telemetry(), spool=spool)
    wait_until(lambda: len(sink.written) == 1)
    w.close()
    assert ends(sink) == [1]
    assert "unreadable" in caplog.text
    assert [p.name for p in directory.iterdir()] == [f"{int(T0.timestamp() * 1000):015d}.corrupt"]
