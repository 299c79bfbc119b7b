"""``heapster-columnar bench`` end to end on a tiny cluster: the report files and their figures."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from heapster_columnar.cli import main


def test_bench_writes_json_markdown_and_png(tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["bench", "--nodes", "6", "--pods-per-node", "3", "--windows", "2", "--resolution", "5s"]
    assert main([*argv, "--out", str(out)]) == 0
    report = orjson.loads(out.with_suffix(".json").read_bytes())
    windows = report["windows"]
    assert len(windows) == 2 and all(w["nodes_failed"] == 0 for w in windows)
    # 6 nodes x 3 pods: every node, pod and container row is there (points per window are stable)
    assert windows[0]["points"] > 6 * 3 * 10 and windows[1]["points"] >= windows[0]["points"]
    second = windows[1]
    assert {"scrape", "decode", "rate_calculator", "pod_enricher", "to_points"} <= set(second["stages"])
    assert second["cpu_seconds"] > 0 and second["peak_rss_mib"] > 50
    assert 0 < second["done_seconds"] < 5  # the window is handled within its own length
    assert report["simulator_cpu_seconds"] > 0  # measured on the other process
    assert set(report["summary"]["stage:scrape"]) == {"min", "median", "max"}
    assert "| done_seconds |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_external_collector_is_measured_the_same_way(tmp_path: Path) -> None:
    """Any command pointed at the simulator; here our own ``run`` as a stand-in for another collector."""
    out = tmp_path / "external"
    command = f"{sys.executable} -m heapster_columnar run --source={{source}} --sink=log --metric_resolution=5s"
    command += " --heapster-port=0"
    argv = ["bench", "--nodes", "4", "--pods-per-node", "3", "--windows", "3", "--resolution", "5s"]
    assert main([*argv, "--external", command, "--out", str(out)]) == 0
    external = orjson.loads(out.with_suffix(".json").read_bytes())["external"]
    assert "--source=kubernetes.summary_api:http://127.0.0.1:" in external["command"]
    assert len(external["cpu_seconds_per_window"]) == 3
    assert external["cpu_seconds_median"] > 0 and external["peak_rss_mib"] > 50
    assert "external collector" in out.with_suffix(".md").read_text()
