"""``heapster-columnar decode``: files in, points out; bad input named, good input kept."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import NOW, canonical, decode_files

from heapster_columnar.cli import main
from heapster_columnar.model.schema import POINTS_SCHEMA

SPLUNK = "summary-splunk-eks-2018.json"
NOW_FLAG = ["--now", "2024-01-01T00:00:00Z"]


def test_writes_parquet_with_the_points_schema(kubelet_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "points.parquet"
    assert main(["decode", str(kubelet_data / SPLUNK), "-o", str(out), *NOW_FLAG]) == 0
    table = pq.read_table(out)
    assert table.schema.names == POINTS_SCHEMA.names
    assert canonical(table) == canonical(decode_files(kubelet_data / SPLUNK, now=NOW))
    assert not list(tmp_path.glob(".*.tmp"))


def test_csv_output(kubelet_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(kubelet_data / SPLUNK), "--format", "csv", *NOW_FLAG]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    node_cpu = [r for r in rows if r["type"] == "node" and r["metric"] == "cpu/usage"]
    assert [r["value_int"] for r in node_cpu] == ["68824254091816"]
    assert len(rows) == decode_files(kubelet_data / SPLUNK).num_rows


def test_table_output_names_every_metric(kubelet_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(kubelet_data / SPLUNK), *NOW_FLAG]) == 0
    out = capsys.readouterr().out
    assert "filesystem/inodes_free" in out
    assert "68824254091816" in out  # ints print exactly, not as floats


def test_bad_payload_is_named_and_good_points_are_still_written(
    kubelet_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "garbage.json"
    bad.write_text("<html>502</html>")
    out = tmp_path / "p.parquet"
    assert main(["decode", str(bad), str(kubelet_data / SPLUNK), "-o", str(out), *NOW_FLAG]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: invalid Summary JSON" in err
    assert pq.read_table(out).num_rows == decode_files(kubelet_data / SPLUNK).num_rows


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["decode", "does-not-exist.json"], "cannot read does-not-exist.json: No such file or directory"),
        (["decode", "--bogus", "x.json"], "unrecognized arguments: --bogus"),
        (["decode", "x.json", "--now", "yesterday"], "not an RFC 3339 time"),
        (["decode"], "the following arguments are required: FILE"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse exits by itself
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
