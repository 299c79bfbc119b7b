"""``bench``: the real collector against a simulated cluster, measured per window.

    heapster-columnar bench --nodes 1000 --windows 5 --resolution 15s \\
        --sink 'parquet:/tmp/bench/parquet' --sink 'duckdb:/tmp/bench/metrics.duckdb' --out /tmp/bench/report

Starts ``simulate`` in its own process (its CPU is reported apart), runs the collector in this one
with the given sinks for ``--windows`` windows, and writes ``<out>.json`` (every window),
``<out>.md`` (min / median / max per figure, windows after the first) and ``<out>.png`` (per
window: seconds to done, scrape, processors, sinks).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress

from heapster_columnar.bench.collector import BenchConfig, BenchResult, run_bench
from heapster_columnar.cli._errors import CommandError
from heapster_columnar.errors import ConfigError
from heapster_columnar.manager.clock import check_resolution, parse_duration


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        name,
        help="benchmark the collector against a simulated cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--windows", type=int, default=4, help="windows to collect (the first is not summarised)")
    parser.add_argument("--resolution", default="15s", help="window length (>= 5s)")
    parser.add_argument("--sink", action="append", default=[], help="sink URI, repeatable (as for run)")
    parser.add_argument("--spool-dir", default=None, help="spool directory of the durable sinks")
    parser.add_argument("--out", default="bench-report", help="report path prefix: <out>.json, .md, .png")
    parser.add_argument("--simulator-arg", action="append", default=[], help="extra argument for simulate")
    parser.add_argument(
        "--external",
        default=None,
        help="measure another collector instead: its command line, with {api}, {kubeconfig} and {source} "
        "replaced by the simulator's (e.g. 'metrics-server --kubeconfig {kubeconfig} ...')",
    )


def run(args: argparse.Namespace) -> int:
    try:
        resolution = check_resolution(parse_duration(args.resolution))
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if args.nodes < 1 or args.windows < 2:
        raise CommandError("--nodes must be >= 1 and --windows >= 2 (the first window has no rates)")
    config = BenchConfig(
        nodes=args.nodes,
        pods_per_node=args.pods_per_node,
        windows=args.windows,
        resolution=resolution,
        sinks=tuple(args.sink),
        spool_dir=Path(args.spool_dir) if args.spool_dir else None,
        simulator_args=tuple(args.simulator_arg),
        external=args.external,
    )
    console = Console(stderr=True)
    print(f"simulator: {args.nodes} nodes x {args.pods_per_node} pods (start-up takes ~6 s per 1,000 nodes)")
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(
            f"{args.nodes} nodes: starting the simulator, then {args.windows} windows", total=args.windows
        )
        try:
            result = run_bench(config, progress=lambda done: bar.update(task, completed=done))
        except (ConfigError, RuntimeError) as exc:
            raise CommandError(str(exc)) from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_bytes(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2))
    table = markdown(result)
    out.with_suffix(".md").write_text(table)
    chart = _chart(result, out.with_suffix(".png")) if result.windows else None
    print(table)
    print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')}" + (f", {chart}" if chart else ""))
    return 0


def markdown(result: BenchResult) -> str:
    config = result.config
    if result.external is not None:
        external = result.external
        return (
            f"**external collector** `{external['command']}` against {config['nodes']} simulated nodes x "
            f"{config['pods_per_node']} pods for {config['windows']} x {config['resolution_text']}\n\n"
            "| figure | value |\n|---|---|\n"
            f"| CPU seconds per {config['resolution_text']} (median, after the first) | "
            f"{external['cpu_seconds_median']:.3f} |\n"
            f"| peak RSS | {external['peak_rss_mib']:.0f} MiB |\n"
            f"| simulator CPU in all | {result.simulator_cpu_seconds:.1f} s |\n"
        )
    lines = [
        f"**{config['nodes']} nodes x {config['pods_per_node']} pods, {config['resolution_text']} windows, "
        f"sinks: {', '.join(config['sinks']) or 'memory only'}** — {len(result.windows)} windows, "
        "figures over the windows after the first",
        "",
        "| figure | min | median | max |",
        "|---|---|---|---|",
    ]
    for name, values in result.summary().items():
        unit = "" if name == "points" else (" MiB" if name.endswith("mib") else " s")
        lines.append(
            f"| {name} | {_fmt(values['min'])}{unit} | {_fmt(values['median'])}{unit} | {_fmt(values['max'])}{unit} |"
        )
    failed = sum(w.nodes_failed for w in result.windows)
    lines += [
        "",
        f"collector peak RSS {result.process_peak_rss_mib:.0f} MiB; simulator CPU "
        f"{result.simulator_cpu_seconds:.1f} s in all; nodes failed in all windows: {failed}",
    ]
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3f}"


def _chart(result: BenchResult, path: Path) -> Path | None:
    """Per window: seconds to done, scrape, processors summed, each sink. None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    windows = result.windows
    x = list(range(1, len(windows) + 1))
    series: dict[str, list[Any]] = {
        "window end → all sinks done": [w.done_seconds for w in windows],
        "scrape": [w.stages.get("scrape") for w in windows],
        "processors": [sum(v for k, v in w.stages.items() if k not in ("scrape", "decode")) for w in windows],
    }
    for sink in sorted({s for w in windows for s in w.sinks}):
        series[f"sink {sink}"] = [w.sinks.get(sink) for w in windows]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for label, values in series.items():
        axis.plot(x, [v if v is not None else float("nan") for v in values], marker="o", label=label)
    axis.set_xticks(x)
    axis.set_xlabel("window")
    axis.set_ylabel("seconds")
    axis.set_title(f"{result.config['nodes']} nodes, {result.config['resolution_text']} windows")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
