"""The in-memory window store and the log sink, on windows made from a real payload."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest

from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.points import to_points
from heapster_columnar.model.window import Window
from heapster_columnar.processors.chain import Pipeline
from heapster_columnar.sinks.log import LogSink
from heapster_columnar.sinks.memory import MemorySink
from heapster_columnar.sources.summary import decode_summaries

T0 = datetime(2023, 11, 20, tzinfo=UTC)
SUMMARY = "summary-nri-minikube-v1.28-containerd-swap-2023.json"


def windows(kubelet_data: Path, count: int, step: timedelta) -> list[Window]:
    body = (kubelet_data / SUMMARY).read_bytes()
    pipeline, out = Pipeline.heapster(), []
    for k in range(count):
        end = T0 + k * step
        batch = pipeline.process(decode_summaries([body], now=end).batch, end, Dimensions.empty()).to_batch()
        out.append(Window(end - step, end, batch, to_points(batch, end), nodes=1, failures={"node-x": "timeout"}))
    return out


def test_memory_sink_keeps_windows_and_series_for_their_retention(kubelet_data: Path) -> None:
    sink = MemorySink(window_retention=timedelta(seconds=140), series_retention=timedelta(minutes=15))
    made = windows(kubelet_data, 70, timedelta(seconds=15))
    for window in made:
        sink.write(window)
    kept = sink.windows()
    assert [w.end for w in kept] == [w.end for w in made[-10:]]  # ends within the last 140 s (135 s back)
    latest = sink.latest()
    assert latest is not None and latest.end == made[-1].end and latest.batch is made[-1].batch
    assert latest.points.num_rows == 0  # kept in entity form only: the points are the durable sinks'
    assert sink.windows()[-1] is latest
    series = sink.series()
    assert series is not None
    stamps = pc.unique(series.column("timestamp")).to_pylist()
    assert len(stamps) == 60  # 15 minutes of 15 s windows
    assert set(series.column("metric").cast("string").to_pylist()) == {"memory/usage", "memory/working_set"}
    last = sink.series(start=made[-1].end)
    assert last is not None and last.num_rows == series.num_rows // 60


def test_log_sink_summarises_a_window(kubelet_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    window = windows(kubelet_data, 1, timedelta(seconds=15))[0]
    with caplog.at_level(logging.INFO, logger="heapster_columnar.sinks.log"):
        LogSink().write(window)
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"points={window.points.num_rows}" in message and "failed=1 partial=True" in message
    containers = window.points.filter(pc.equal(window.points.column("type").cast("string"), "pod_container"))
    assert f"pod_container={containers.num_rows}" in message
