"""Shared by the benchmarks: a ``heapster-columnar simulate`` subprocess (so its CPU is its own),
ready once it prints its ``--source`` line; terminated on exit."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Simulator:
    process: subprocess.Popen[str]
    banner: str  # what it printed up to and including the --source line
    api_url: str


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
                raise SystemExit(f"simulator exited with {process.wait()}")
            banner += line
        match = re.search(r"API server:\s+(\S+)", banner)
        assert match, banner
        yield Simulator(process, banner, match.group(1))
    finally:
        process.terminate()
        process.wait()
