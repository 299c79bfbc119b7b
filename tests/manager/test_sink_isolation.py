"""One failing sink never stops the others: a Parquet target that cannot be created while DuckDB
writes every window, both behind the collector's real sink workers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from heapster_columnar.manager.build import RunConfig, build
from heapster_columnar.simulator.cluster import SimulatedCluster
from heapster_columnar.simulator.spec import ClusterSpec


def test_an_unwritable_parquet_target_does_not_stop_duckdb(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    unwritable = f"/proc/heapster-columnar-{uuid.uuid4().hex}"  # not creatable, even by root
    database = tmp_path / "metrics.duckdb"
    with SimulatedCluster(ClusterSpec(nodes=3, pods_per_node=2, kubelet_port=0)) as cluster:
        config = RunConfig(
            source=cluster.source_uri,
            sinks=(f"parquet:{unwritable}", f"duckdb:{database}"),
            resolution=timedelta(seconds=5),
            offset=timedelta(seconds=1),
            spool_dir=tmp_path / "spool",
        )

        async def scenario() -> list[str]:
            collector = build(config)
            assert collector.state.wait_ready(20)
            try:
                await collector.manager.run(asyncio.Event(), windows=2)
            finally:
                await collector.aclose()
            failures = collector.telemetry.registry.get_sample_value(
                "heapster_columnar_sink_failures_total", {"sink": "parquet"}
            )
            assert failures is not None and failures >= 2
            return [o.window.end.isoformat() for o in collector.manager.outcomes]

        ends = asyncio.run(scenario())
    with duckdb.connect(str(database), read_only=True) as con:
        written = con.execute("SELECT count(DISTINCT timestamp), count(*) FROM points").fetchone()
    assert written is not None and written[0] == len(ends) == 2 and written[1] > 100
    assert unwritable in caplog.text  # the error names the path
