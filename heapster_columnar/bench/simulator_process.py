"""A ``heapster-columnar simulate`` subprocess, so the simulator's CPU is never the collector's.

Ready once it prints its ``--source`` line; terminated on exit. Used by ``bench`` and by the
scripts in ``benchmarks/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Simulator", "cpu_seconds", "simulator"]


@dataclass(frozen=True, slots=True)
class Simulator:
    process: subprocess.Popen[str]
    banner: str  # what it printed up to and including the --source line
    api_url: str
    source: str  # the --source URI to collect from it
    kubeconfig: str


@contextmanager
def simulator(nodes: int, pods_per_node: int, extra: Sequence[str] = ()) -> Iterator[Simulator]:
    cmd = [sys.executable, "-m", "heapster_columnar", "simulate", "--nodes", str(nodes)]
    cmd += ["--pods-per-node", str(pods_per_node), "--kubelet-port", "0", *extra]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = ""
        while not banner.endswith("\n") or not banner.splitlines()[-1].startswith("--source"):
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"the simulator exited with {process.wait()} before it was ready")
            banner += line
        match = re.search(r"API server:\s+(\S+)", banner)
        if match is None:
            raise RuntimeError(f"the simulator printed no API server address:\n{banner}")
        source = banner.splitlines()[-1].split("=", 1)[1].strip().strip("'")
        kubeconfig = re.search(r"kubeconfig:\s+(\S+)", banner)
        yield Simulator(process, banner, match.group(1), source, kubeconfig.group(1) if kubeconfig else "")
    finally:
        process.terminate()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
