"""`run` and `demo` from the command line: clear startup errors, and a real collection."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from heapster_columnar.cli import main
from heapster_columnar.simulator.cluster import SimulatedCluster
from heapster_columnar.simulator.spec import ClusterSpec, FaultSpec


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sink=parket:/tmp/x"], "unknown sink kind 'parket'"),
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


def test_sigterm_finishes_the_window_in_progress_and_closes_the_sinks() -> None:
    """SIGTERM while every kubelet takes 3 s to answer: the window is still completed and logged,
    then the sinks are closed and the process exits 0."""
    spec = ClusterSpec(nodes=3, pods_per_node=2, kubelet_port=0, faults=FaultSpec.parse("slow=3:3"))
    with SimulatedCluster(spec) as cluster:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "heapster_columnar",
                "run",
                f"--source={cluster.source_uri}",
                "--sink=log",
                "--metric_resolution=5s",
                "--heapster-port=0",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr or ()], daemon=True)
        reader.start()

        def wait_for(text: str, timeout: float) -> str:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=deadline - time.monotonic())
                except queue.Empty:
                    break
                if text in line:
                    return line
            process.kill()
            raise AssertionError(f"no {text!r} within {timeout} s")

        try:
            collecting = wait_for(": collecting", 30)
            end = re.search(r"window (\S+): collecting", collecting)
            assert end is not None
            time.sleep(0.5)  # the kubelets are still answering
            process.send_signal(signal.SIGTERM)
            wait_for("stopping: finishing 1 window(s) in progress", 5)
            written = wait_for("window end=", 15)
            assert f"end={end.group(1)}" in written and "failed=0" in written
            wait_for("stopped after 1 window(s); sinks closed", 5)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(timeout=5)
            assert process.stderr is not None
            process.stderr.close()
