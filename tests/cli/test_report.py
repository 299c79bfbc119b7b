"""``heapster-columnar report``: the numbers of a known store as a table, CSV and JSON; bad input named."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from heapster_columnar.cli import main
from heapster_columnar.cli.report import binary_bytes, millicores

sys.path.insert(0, str(Path(__file__).parents[1] / "analysis"))
from stores import GI, MI, T0, Container, container_series, node, pod, series, write_store

MINUTE = timedelta(minutes=1)
DAY = 1440


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One day at 60 s: shop/web at 300 m requesting 1 core and 1.5 Gi of working set requesting
    2 Gi; node n1 (4 cores, 16 Gi) at 1,000 m and 4 Gi; node n2 idle at 100 m and 1 Gi;
    namespace shop at 300 m."""
    points = [
        container_series(
            T0, MINUTE, namespace="shop", pod="web-0", container="web", node="n1", cpu=300.0, memory=1.5 * GI, count=DAY
        ),
        series(T0, MINUTE, 300.0, count=DAY, metric="cpu/usage_rate", type="ns", namespace_name="shop"),
        *[
            series(T0, MINUTE, value, count=DAY, metric=metric, type="node", nodename=name)
            for name, cpu, memory in (("n1", 1000.0, 4.0 * GI), ("n2", 100.0, 1.0 * GI))
            for metric, value in (("cpu/usage_rate", cpu), ("memory/working_set", memory))
        ],
    ]
    root = write_store(
        tmp_path_factory.mktemp("report"),
        points,
        pods=[pod("shop", "web-0", "n1", [Container("web", "1", "2Gi")])],
        nodes=[node("n1", cpu="4", memory="16Gi"), node("n2", cpu="4", memory="16Gi")],
    )
    return str(root)


def report(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["report", *argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def parsed_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- top ------------------------------------------------------------------------------------------


def test_top_table_is_humanized(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = report(capsys, "top", "--store", store, "--since", "1d", "--by", "waste", "--level", "container")
    lines = out.splitlines()
    assert lines[0] == "top 10 containers by cpu waste, last 1d"
    assert lines[1].split() == [
        "namespace",
        "pod",
        "container",
        "rank",
        "cpu_usage",
        "cpu_request",
        "cpu_waste",
        "containers",
    ]
    assert lines[3].split() == ["shop", "web-0", "web", "1", "300m", "1000m", "700m", "1"]


def test_top_csv_and_json_carry_the_raw_numbers(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["top", "--store", store, "--since", "1d", "--by", "waste", "--level", "container"]
    rows = parsed_csv(report(capsys, *common, "--format", "csv"))
    assert [(r["container"], float(r["cpu_usage"]), float(r["cpu_waste"])) for r in rows] == [("web", 300.0, 700.0)]
    records = json.loads(report(capsys, *common, "--format", "json"))
    assert [(r["container"], r["cpu_request"], r["cpu_waste"]) for r in records] == [("web", 1000.0, 700.0)]
    memory = json.loads(report(capsys, *common, "--resource", "memory", "--format", "json"))
    assert (memory[0]["memory_usage"], memory[0]["memory_waste"]) == (1.5 * GI, 0.5 * GI)


def test_top_memory_table_in_binary_units(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = report(capsys, "top", "--store", store, "--since", "1d", "--resource", "memory", "-n", "1")
    assert out.splitlines()[3].split() == ["shop", "1", "1.5Gi", "2Gi", "512Mi", "1"]


# -- nodes ----------------------------------------------------------------------------------------


def test_nodes_table_shows_utilization_and_idle(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = report(capsys, "nodes", "--store", store, "--since", "1d")
    lines = out.splitlines()
    assert lines[0] == "2 nodes, 1 idle (CPU < 10%, memory < 20% on average), last 1d"
    header = lines[1].split()
    n1 = dict(zip(header, lines[3].split(), strict=True))
    n2 = dict(zip(header, lines[4].split(), strict=True))
    assert (n1["node"], n1["allocatable_cpu"], n1["allocatable_memory"], n1["cpu_usage"]) == (
        "n1",
        "4000m",
        "16Gi",
        "1000m",
    )
    assert (n1["cpu_utilization"], n1["memory_utilization"], n1["cpu_reservation"], n1["idle"]) == (
        "25.0%",
        "25.0%",
        "25.0%",
        "no",
    )
    assert (n2["cpu_utilization"], n2["memory_utilization"], n2["idle"]) == ("2.5%", "6.2%", "yes")


def test_nodes_csv_and_json(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = parsed_csv(report(capsys, "nodes", "--store", store, "--since", "1d", "--format", "csv"))
    assert [(r["node"], float(r["cpu_utilization"]), r["idle"]) for r in rows] == [
        ("n1", 0.25, "false"),
        ("n2", 0.025, "true"),
    ]
    records = json.loads(report(capsys, "nodes", "--store", store, "--since", "1d", "--format", "json"))
    assert [(r["node"], r["memory_utilization"], r["idle"]) for r in records] == [
        ("n1", 0.25, False),
        ("n2", 0.0625, True),
    ]


def test_nodes_bands(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = parsed_csv(report(capsys, "nodes", "--store", store, "--since", "1d", "--bands", "--format", "csv"))
    cpu = {float(r["lower"]): int(r["nodes"]) for r in rows if r["measure"] == "cpu_utilization"}
    assert (cpu[0.0], cpu[0.2], sum(cpu.values())) == (1, 1, 2)
    table = report(capsys, "nodes", "--store", store, "--since", "1d", "--bands")
    assert ["cpu_utilization", "20.0%", "30.0%", "1"] in [line.split() for line in table.splitlines()]


# -- usage ----------------------------------------------------------------------------------------


def test_usage_of_a_namespace(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["usage", "--store", store, "--since", "2h", "--level", "namespace", "--namespace", "shop"]
    rows = parsed_csv(report(capsys, *argv, "--format", "csv"))
    assert [(r["namespace"], float(r["value"]), int(r["samples"])) for r in rows] == [("shop", 300.0, 60)] * 2
    out = report(capsys, *argv)
    assert out.splitlines()[3].split() == ["2024-06-03", "22:00:00", "shop", "300m", "60"]
    memory = report(
        capsys, "usage", "--store", store, "--since", "1h", "--level", "node", "--metric", "memory/working_set"
    )
    assert [line.split()[-2] for line in memory.splitlines()[3:]] == ["4Gi", "1Gi"]


# -- rightsizing and chargeback (modules written alongside) ----------------------------------------


def test_rightsizing_report(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    records = json.loads(report(capsys, "rightsizing", "--store", store, "--since", "1d", "--format", "json"))
    assert len(records) == 1
    assert records[0]["cpu_request"] == 1000
    table = report(capsys, "rightsizing", "--store", store, "--since", "1d", "--namespace", "shop")
    assert "1000m" in table and "2Gi" in table
    assert report(capsys, "rightsizing", "--store", store, "--namespace", "absent").splitlines()[1] == "(no rows)"


def test_chargeback_report(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    """shop/web for a day: max(1 core requested, 300 m used) = 24 core-hours at 0.05 = 1.20;
    max(2 Gi requested, 1.5 Gi used) = 2.147483648 GB x 24 h at 0.01 = 0.52."""
    prices = ["--price-cpu", "0.05", "--price-memory", "0.01"]
    records: list[dict[str, Any]] = json.loads(
        report(capsys, "chargeback", "--store", store, "--since", "1d", *prices, "--format", "json")
    )
    shop = next(r for r in records if r["namespace"] == "shop")
    assert shop["cpu_cost"] == pytest.approx(1.20)
    assert shop["ram_cost"] == pytest.approx(2 * GI / 1e9 * 24 * 0.01)
    table = report(capsys, "chargeback", "--store", store, "--since", "1d", *prices)
    header, *rows = [line.split() for line in table.splitlines()[1:]]
    row = dict(zip(header, next(r for r in rows if r[0] == "shop"), strict=True))
    assert (row["cpu_core_hours"], row["cpu_cost"], row["ram_cost"], row["total_cost"]) == (
        "24",
        "1.20",
        "0.52",
        "1.72",
    )
    assert row["cpu_efficiency"] == "30.0%"


# -- formatting -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"), [(250.0, "250m"), (1500.0, "1500m"), (0.5, "0.5m"), (0.0, "0m"), (-300.0, "-300m")]
)
def test_millicores(value: float, text: str) -> None:
    assert millicores(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.5 * GI, "1.5Gi"), (256.0 * MI, "256Mi"), (512.0, "512"), (2048.0, "2Ki"), (3.0 * 2**40, "3Ti"), (-GI, "-1Gi")],
)
def test_binary_bytes(value: float, text: str) -> None:
    assert binary_bytes(value) == text


# -- bad input ----------------------------------------------------------------------------------------


def test_a_missing_store_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["report", "top", "--store", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("heapster-columnar: error: ")
    assert str(missing) in err


def test_a_corrupt_parquet_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    points = series(T0, MINUTE, 1.0, count=120, metric="cpu/usage_rate", type="ns", namespace_name="a")
    root = write_store(tmp_path, points)
    broken = sorted((root / "points").rglob("*.parquet"))[-1]
    broken.write_bytes(broken.read_bytes()[:100])
    for kind in ("usage", "top", "nodes"):
        assert main(["report", kind, "--store", str(root)]) == 2
        err = capsys.readouterr().err
        assert str(broken) in err, (kind, err)


@pytest.mark.parametrize("since", ["a week", "7x", "-1d", "2024-13-01"])
def test_a_bad_since_is_named(store: str, since: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "top", "--store", store, f"--since={since}"]) == 2
    assert f"--since {since!r}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "bogus", "--store", "x"], "invalid choice: 'bogus'"),
        (["report", "top"], "the following arguments are required: --store"),
        (["report", "top", "--store", "x", "--by", "cost"], "invalid choice: 'cost'"),
        (["report", "top", "--store", "x", "--format", "xml"], "invalid choice: 'xml'"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_option_value_is_named(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "usage", "--store", store, "--step", "1x"]) == 2
    assert "'1x' is not a duration" in capsys.readouterr().err
    assert main(["report", "usage", "--store", store, "--level", "node", "--namespace", "shop"]) == 2
    assert "cannot be filtered by namespace" in capsys.readouterr().err


def test_rollups_stores_the_closed_days_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two days and one window of a third: the two closed days are stored, a second run has nothing
    to do, and the reports read the same numbers as before."""
    from heapster_columnar.analysis import Store

    points = container_series(
        T0, MINUTE, namespace="a", pod="p", container="c", node="n1", cpu=100.0, memory=float(MI), count=2 * DAY + 1
    )
    root = str(write_store(tmp_path / "s", points, pods=[pod("a", "p", "n1", [Container("c", "200m", "1Gi")])]))
    before = json.loads(report(capsys, "top", "--store", root, "--since", "3d", "--format", "json"))
    written = json.loads(report(capsys, "rollups", "--store", root, "--format", "json"))
    assert [r["day"] for r in written] == [T0.date().isoformat(), (T0 + timedelta(days=1)).date().isoformat()]
    assert json.loads(report(capsys, "rollups", "--store", root, "--format", "json")) == []
    assert Store.open(root).rollup_dates("container_days") == [T0.date(), (T0 + timedelta(days=1)).date()]
    assert json.loads(report(capsys, "top", "--store", root, "--since", "3d", "--format", "json")) == before
