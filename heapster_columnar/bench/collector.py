"""One benchmark run: the real collector against a simulated cluster, measured window by window.

The simulator runs in its own process (its CPU is reported apart); the collector runs in this one,
exactly as ``run`` builds it, with the chosen sinks. Per window: seconds from the window end until
every sink has written it, the scrape (wall) and the decode thread's time in it, each processor,
each sink, points, this process's CPU seconds since the previous window and its peak RSS while the
window was handled (from the OS: ``/proc/self/status``). A sampling thread keeps the RSS peak.
"""

from __future__ import annotations

import asyncio
import shlex
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from heapster_columnar.bench.simulator_process import cpu_seconds, simulator
from heapster_columnar.manager.build import RunConfig, build
from heapster_columnar.manager.loop import WindowOutcome
from heapster_columnar.model.window import Window
from heapster_columnar.sinks.base import WriteResult

__all__ = ["BenchConfig", "BenchResult", "WindowStats", "run_bench"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig:
    nodes: int = 100
    pods_per_node: int = 30
    windows: int = 4
    resolution: timedelta = timedelta(seconds=15)
    sinks: Sequence[str] = ()
    spool_dir: Path | None = None
    simulator_args: Sequence[str] = ()
    external: str | None = None  # another collector's command line instead of ours ({api}, {kubeconfig}, {source})


@dataclass(slots=True)
class WindowStats:
    end: str
    done_seconds: float | None  # window end -> every sink done (None: some sink never finished)
    stages: dict[str, float]
    sinks: dict[str, float]
    sink_errors: dict[str, str]
    points: int
    nodes_failed: int
    cpu_seconds: float  # this process, since the previous window was handled
    peak_rss_mib: float


@dataclass(slots=True)
class BenchResult:
    config: dict[str, Any]
    windows: list[WindowStats] = field(default_factory=list)
    simulator_cpu_seconds: float = 0.0
    process_peak_rss_mib: float = 0.0
    external: dict[str, Any] | None = None  # what the external collector cost, when one ran

    def summary(self) -> dict[str, dict[str, float]]:
        """min / median / max of every per-window figure, over the windows after the first (which
        has no rates and pays the start-up)."""
        kept = self.windows[1:] or self.windows
        series: dict[str, list[float]] = {}
        for w in kept:
            figures = {
                "done_seconds": w.done_seconds,
                "points": float(w.points),
                "cpu_seconds": w.cpu_seconds,
                "peak_rss_mib": w.peak_rss_mib,
                **{f"stage:{k}": v for k, v in w.stages.items()},
                **{f"sink:{k}": v for k, v in w.sinks.items()},
            }
            for name, value in figures.items():
                if value is not None:
                    series.setdefault(name, []).append(value)
        return {name: {"min": min(v), "median": statistics.median(v), "max": max(v)} for name, v in series.items()}

    def as_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "windows": [asdict(w) for w in self.windows],
            "summary": self.summary(),
            "simulator_cpu_seconds": self.simulator_cpu_seconds,
            "process_peak_rss_mib": self.process_peak_rss_mib,
            "external": self.external,
        }


def _rss_mib(field_name: str = "VmRSS", pid: int | str = "self") -> float:
    """A memory figure of a process from ``/proc/<pid>/status`` (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _RssSampler:
    def __init__(self) -> None:
        self.peak = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mib())

    def take(self) -> float:
        """The peak since the last call."""
        peak, self.peak = max(self.peak, _rss_mib()), _rss_mib()
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_bench(config: BenchConfig, *, progress: Callable[[int], None] | None = None) -> BenchResult:
    """Start the simulator, collect ``config.windows`` windows, return what was measured."""
    settings = {k: str(v) if isinstance(v, timedelta | Path) else v for k, v in asdict(config).items()}
    settings["resolution_text"] = f"{config.resolution.total_seconds():g}s"
    settings["sinks"] = list(config.sinks)
    result = BenchResult(config=settings)
    with simulator(config.nodes, config.pods_per_node, config.simulator_args) as sim:
        run_config = RunConfig(
            source=sim.source, sinks=tuple(config.sinks), resolution=config.resolution, offset=timedelta(seconds=1)
        )
        if config.spool_dir is not None:
            run_config = replace(run_config, spool_dir=config.spool_dir)
        sim_cpu = cpu_seconds(sim.process.pid)
        if config.external:
            result.external = _external(config, sim.api_url, sim.kubeconfig, sim.source, progress)
        else:
            asyncio.run(_collect(run_config, config, result, progress))
        result.simulator_cpu_seconds = cpu_seconds(sim.process.pid) - sim_cpu
    result.process_peak_rss_mib = _rss_mib("VmHWM")
    return result


def _external(
    config: BenchConfig, api: str, kubeconfig: str, source: str, progress: Callable[[int], None] | None
) -> dict[str, Any]:
    """Run another collector against the same simulator for ``windows`` x ``resolution`` and
    measure it from the OS the way ours is measured: CPU seconds per window-length and peak RSS."""
    assert config.external is not None
    command = config.external.format(api=api, kubeconfig=kubeconfig, source=source)
    process = subprocess.Popen(shlex.split(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    step = config.resolution.total_seconds()
    per_window, peak, last = [], 0.0, 0.0
    try:
        for k in range(config.windows):
            deadline = time.monotonic() + step
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    error = (process.stderr.read() if process.stderr else "")[-500:]
                    raise RuntimeError(f"the external collector exited with {process.returncode}: {error}")
                peak = max(peak, _rss_mib(pid=process.pid))
                time.sleep(0.1)
            now = cpu_seconds(process.pid)
            per_window.append(now - last)
            last = now
            if progress is not None:
                progress(k + 1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    later = per_window[1:] or per_window
    return {
        "command": command,
        "cpu_seconds_per_window": per_window,
        "cpu_seconds_median": statistics.median(later),
        "peak_rss_mib": peak,
    }


async def _collect(
    run_config: RunConfig, config: BenchConfig, result: BenchResult, progress: Callable[[int], None] | None
) -> None:
    collector = build(run_config)
    sampler = _RssSampler()
    lock = threading.Lock()
    durable = [w.name for w in collector.manager.workers]
    pending: dict[str, dict[str, Any]] = {}  # window end -> what is known so far

    def finish(end: str) -> None:
        entry = pending.get(end)
        if entry is None or "stats" not in entry or set(entry["sinks"]) | set(entry["errors"]) < set(durable):
            return
        stats: WindowStats = entry["stats"]
        stats.sinks.update(entry["sinks"])
        stats.sink_errors.update(entry["errors"])
        done = entry.get("done", [])
        stats.done_seconds = max([stats.done_seconds or 0.0, *done]) if not entry["errors"] else None
        del pending[end]

    def on_sink(window: Window, written: WriteResult) -> None:
        end = window.end.isoformat()
        with lock:
            entry = pending.setdefault(end, {"sinks": {}, "errors": {}, "done": []})
            if written.ok:
                entry["sinks"][written.sink] = written.seconds
                entry["done"].append(time.time() - window.end.timestamp())
            else:
                entry["errors"][written.sink] = written.error or "?"
            finish(end)

    cpu_before = time.process_time()

    def on_window(outcome: WindowOutcome) -> None:
        nonlocal cpu_before
        window = outcome.window
        end = window.end.isoformat()
        cpu_now = time.process_time()
        stats = WindowStats(
            end=end,
            done_seconds=outcome.seconds,
            stages=dict(window.stage_seconds),
            sinks={r.sink: r.seconds for r in outcome.results},
            sink_errors={r.sink: r.error for r in outcome.results if r.error},
            points=window.points.num_rows,
            nodes_failed=len(window.failures),
            cpu_seconds=cpu_now - cpu_before,
            peak_rss_mib=sampler.take(),
        )
        cpu_before = cpu_now
        result.windows.append(stats)
        with lock:
            pending.setdefault(end, {"sinks": {}, "errors": {}, "done": []})["stats"] = stats
            finish(end)
        if progress is not None:
            progress(len(result.windows))

    for worker in collector.manager.workers:
        worker.add_listener(on_sink)
    collector.manager.on_window = on_window
    if not collector.state.wait_ready(600):
        raise RuntimeError("the simulated API server's lists never completed")
    try:
        await collector.manager.run(asyncio.Event(), windows=config.windows)
    finally:
        await collector.aclose()
        sampler.stop()
