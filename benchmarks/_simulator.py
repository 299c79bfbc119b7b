"""The benchmark scripts' simulator subprocess: the package's own (``heapster-columnar bench`` uses it too)."""

from heapster_columnar.bench.simulator_process import Simulator, cpu_seconds, simulator

__all__ = ["Simulator", "cpu_seconds", "simulator"]
