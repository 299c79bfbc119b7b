"""`run` and `demo` from the command line: clear startup errors, and a real collection."""

from __future__ import annotations

import pytest

from heapster_columnar.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sink=parquet:/tmp/x"], "unknown sink kind 'parquet'"),
        (["--sink=log:?level=debug"], "unknown option 'level'"),
        (["--metric_resolution=2s"], "at least 5s"),
        (["--metric-resolution=soon"], "'soon' is not a duration"),
    ],
)
def test_bad_flags_are_one_line_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--source=kubernetes.summary_api:https://127.0.0.1:1", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_source_option_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--source=kubernetes.summary_api:https://x?kubeletPorts=1"]) == 2
    assert "kubeletPorts" in capsys.readouterr().err


def test_demo_collects_from_a_simulated_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--nodes", "3", "--pods-per-node", "4", "--windows", "2"]) == 0
    out = capsys.readouterr().out
    assert "Collected 2 windows of 5 s from 3 simulated nodes" in out and "0 nodes failed" in out
    assert "Namespaces by CPU" in out and "kube-system" in out
