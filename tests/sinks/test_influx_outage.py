"""InfluxDB stopped for three windows, then restarted: the collector's sink worker spools what the
server could not take and replays it in order, so every point is there afterwards."""

from __future__ import annotations

import time
from pathlib import Path

from heapster_columnar.config.uri import parse_uri
from heapster_columnar.model.window import Window
from heapster_columnar.sinks import worker as worker_module
from heapster_columnar.sinks.base import WriteResult
from heapster_columnar.sinks.influxdb import InfluxDBSink
from heapster_columnar.sinks.spool import Spool
from heapster_columnar.sinks.worker import SinkWorker
from heapster_columnar.telemetry import Telemetry
from tests.sinks.influx_server import influx_server
from tests.sinks.windows import fixture_windows


def test_an_outage_loses_nothing_and_keeps_order(kubelet_data: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(worker_module, "RETRY_FIRST", 0.2)
    monkeypatch.setattr(worker_module, "RETRY_MAX", 0.5)
    windows = fixture_windows(kubelet_data, 5)
    written: list[str] = []

    def record(window: Window, result: WriteResult) -> None:
        if result.ok:
            written.append(window.end.isoformat())

    with influx_server() as server:
        sink = InfluxDBSink.from_uri(parse_uri(f"influxdb:{server.url}?db=outage"))
        spool = Spool(tmp_path / "spool", max_bytes=1 << 30, sink=sink.name)
        worker = SinkWorker(sink, telemetry=Telemetry(), spool=spool, on_result=record)

        def wait_until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
            deadline = time.monotonic() + timeout
            while not condition():
                assert time.monotonic() < deadline, "timed out"
                time.sleep(0.05)

        worker.submit(windows[0])
        wait_until(lambda: len(written) == 1)
        server.stop()
        for window in windows[1:4]:  # three windows while the server is down
            worker.submit(window)
        wait_until(lambda: len(spool) == 3)
        server.restart()
        worker.submit(windows[4])
        wait_until(lambda: len(written) == 5)
        worker.close()

        assert written == [w.end.isoformat() for w in windows]  # replayed oldest first, then the new one
        rows = server.rows('SELECT count("value") FROM "memory/usage" GROUP BY time(15s) fill(none)', "outage")
        per_window = {r["time"]: r["count"] for r in rows}
        expected = {
            int(w.end.timestamp() * 1000): sum(1 for m in w.points.column("metric").to_pylist() if m == "memory/usage")
            for w in windows
        }
        assert per_window == expected
