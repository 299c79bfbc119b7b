"""``report``: the standard questions asked of a stored history, as a table, CSV or JSON.

    heapster-columnar report top --store /data/metrics --since 7d --by waste --level workload
    heapster-columnar report nodes --store /data/metrics --format csv > nodes.csv
    heapster-columnar report usage --store /data/metrics --level namespace --namespace shop --step 1h
    heapster-columnar report rightsizing --store /data/metrics --namespace shop
    heapster-columnar report chargeback --store /data/metrics --price-cpu 0.031 --price-memory 0.004

``--since`` is a duration counted back from the store's newest window (``7d``, ``12h``) or a start
time (ISO 8601). The table humanizes numbers (millicores as ``250m``, bytes as ``1.5Gi``, ratios
as percentages, costs with two decimals); ``--format csv`` and ``json`` print the raw frame (CPU in
millicores, memory in bytes, ratios as fractions) for scripts and spreadsheets.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa

from heapster_columnar.analysis.store import Store, TimeRange, parse_duration
from heapster_columnar.cli._errors import CommandError
from heapster_columnar.errors import ConfigError, StoreError

FORMATS = ("table", "csv", "json")


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        name,
        help="reports from a stored history: top, nodes, usage, rightsizing, chargeback",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", required=True, help="store path or URL (what run --sink parquet:PATH writes)")
    common.add_argument("--since", default="7d", help="duration back from the newest window, or a start time")
    common.add_argument("--until", type=_time, help="end of the range (ISO 8601; default: the newest window)")
    common.add_argument("--format", choices=FORMATS, default="table", help="output (default: table)")
    reports = parser.add_subparsers(dest="report", required=True, metavar="REPORT")

    top = reports.add_parser("top", parents=[common], help="biggest consumers by usage, request or waste")
    top.add_argument(
        "--by", choices=["usage", "request", "waste"], default="usage", help="ranking (waste = request - usage)"
    )
    top.add_argument("--resource", choices=["cpu", "memory"], default="cpu")
    top.add_argument("--level", choices=["namespace", "workload", "pod", "container"], default="namespace")
    top.add_argument("--n", "-n", type=int, default=10, help="rows (default: 10)")
    top.add_argument("--namespace", help="only this namespace")

    nodes = reports.add_parser("nodes", parents=[common], help="node utilization, reservation and idle nodes")
    nodes.add_argument("--cpu-idle", type=float, default=0.10, help="idle below this average CPU utilization")
    nodes.add_argument("--memory-idle", type=float, default=0.20, help="… and below this memory utilization")
    nodes.add_argument("--bands", action="store_true", help="print nodes per 10 %% utilization band instead")

    usage = reports.add_parser("usage", parents=[common], help="one metric over time, per level")
    usage.add_argument("--metric", default="cpu/usage_rate")
    usage.add_argument("--level", choices=["cluster", "namespace", "node", "pod", "container"], default="cluster")
    usage.add_argument("--step", default="1h", help="bucket length (default: 1h)")
    usage.add_argument("--agg", default="mean", help="mean, max, min, sum or a percentile such as p95")
    usage.add_argument("--namespace")
    usage.add_argument("--node")
    usage.add_argument("--pod")

    rightsizing = reports.add_parser("rightsizing", parents=[common], help="VPA-style request recommendations")
    rightsizing.add_argument("--level", choices=["container", "workload"], default="container")
    rightsizing.add_argument("--namespace", help="only this namespace")

    reports.add_parser(
        "rollups", parents=[common], help="store the daily rollups of closed days (daily, on stores written by run)"
    )
    chargeback = reports.add_parser("chargeback", parents=[common], help="cost allocation, max(request, usage)")
    chargeback.add_argument(
        "--by", default="namespace", help="namespace, workload, pod, container, node or label:KEY (default: namespace)"
    )
    chargeback.add_argument("--price-cpu", type=float, help="price of one core-hour")
    chargeback.add_argument("--price-memory", type=float, help="price of one GB-hour of memory")
    chargeback.add_argument("--share-idle", action="store_true", help="share each node's idle cost over its tenants")


def _time(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _since(text: str) -> str | datetime:
    """A duration (kept as text: the store counts it back from its newest window) or a time."""
    try:
        parse_duration(text)
        return text
    except ConfigError:
        pass
    try:
        return _time(text)
    except argparse.ArgumentTypeError:
        raise CommandError(f"--since {text!r} is neither a duration (7d, 12h, 30m) nor an ISO 8601 time") from None


def run(args: argparse.Namespace) -> int:
    since = _since(args.since)  # before any I/O
    build = REPORTS[args.report]
    store: Store | None = None
    try:
        store = Store.open(args.store)
        title, frame, units = build(store, since, args)
    except (StoreError, ConfigError) as exc:
        raise CommandError(str(exc)) from None
    except (pl.exceptions.ComputeError, pa.ArrowException, OSError) as exc:
        # Polars reports a corrupt file without its path: the store finds and names it
        raise CommandError(str(store.error(exc) if store is not None else exc)) from None
    try:
        write(frame, args.format, title=title, units=units)
    except BrokenPipeError:  # `report ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# -- the reports: (title, frame, units of columns the name does not tell) ------------------------

Report = tuple[str, pl.DataFrame, dict[str, str]]


def _top(store: Store, since: str | datetime, args: argparse.Namespace) -> Report:
    from heapster_columnar.analysis.top import top

    frame = top(
        store,
        by=args.by,
        resource=args.resource,
        level=args.level,
        n=args.n,
        since=since,
        until=args.until,
        namespace=args.namespace,
    )
    return f"top {args.n} {args.level}s by {args.resource} {args.by}, {_span(since)}", frame, {}


def _nodes(store: Store, since: str | datetime, args: argparse.Namespace) -> Report:
    from heapster_columnar.analysis.nodes import bands, efficiency

    frame = efficiency(store, since, until=args.until, cpu_idle=args.cpu_idle, memory_idle=args.memory_idle)
    if args.bands:
        return f"nodes per utilization band, {_span(since)}", bands(frame), {"lower": "ratio", "upper": "ratio"}
    idle = int(frame["idle"].sum()) if frame.height else 0
    thresholds = f"CPU < {args.cpu_idle:.0%}, memory < {args.memory_idle:.0%}"
    title = f"{frame.height} nodes, {idle} idle ({thresholds} on average), {_span(since)}"
    return title, frame, {}


def _usage(store: Store, since: str | datetime, args: argparse.Namespace) -> Report:
    from heapster_columnar.analysis.usage import usage

    frame = usage(
        store,
        args.metric,
        level=args.level,
        since=since,
        until=args.until,
        step=args.step,
        namespace=args.namespace,
        node=args.node,
        pod=args.pod,
        agg=args.agg,
    )
    title = f"{args.metric} per {args.level}, {args.agg} per {args.step}, {_span(since)}"
    return title, frame, {"value": metric_unit(args.metric), "samples": "count"}


def _rightsizing(store: Store, since: str | datetime, args: argparse.Namespace) -> Report:
    from heapster_columnar.analysis.rightsizing import recommend

    frame = recommend(store, _range(store, since, args.until), level=args.level, namespace=args.namespace)
    return f"right-sizing per {args.level}, {_span(since)}", frame, {}


def _chargeback(store: Store, since: str | datetime, args: argparse.Namespace) -> Report:
    from heapster_columnar.analysis.chargeback import Prices, allocation

    given = {"cpu_core_hour": args.price_cpu, "memory_gb_hour": args.price_memory}
    prices = Prices(**{k: v for k, v in given.items() if v is not None})
    frame = allocation(store, _range(store, since, args.until), by=args.by, prices=prices, share_idle=args.share_idle)
    return f"cost allocation by {args.by}, {_span(since)}", frame, {}


def _rollups(store: Store, since: str | datetime, args: argparse.Namespace) -> Report:
    """Not a report: stores the daily rollups of the closed days that have none, so that the
    reports on a store written by ``run`` read rollups instead of points (run it daily)."""
    from heapster_columnar.analysis.rollups import materialize

    days = materialize(store)
    return (
        f"daily rollups written for {len(days)} closed day(s)",
        pl.DataFrame({"day": days}, schema={"day": pl.Date}),
        {},
    )


REPORTS: dict[str, Callable[[Store, str | datetime, argparse.Namespace], Report]] = {
    "top": _top,
    "nodes": _nodes,
    "usage": _usage,
    "rightsizing": _rightsizing,
    "chargeback": _chargeback,
    "rollups": _rollups,
}


def _range(store: Store, since: str | datetime, until: datetime | None) -> str | datetime | TimeRange:
    """What the rightsizing and chargeback functions take: ``since`` as given, or the resolved
    range when ``--until`` moves its end."""
    return since if until is None else store.resolve(since, until)


def _span(since: str | datetime) -> str:
    return f"last {since}" if isinstance(since, str) else f"since {since.isoformat()}"


# -- output ---------------------------------------------------------------------------------------


def write(frame: pl.DataFrame, fmt: str, *, title: str = "", units: dict[str, str] | None = None) -> None:
    """Print ``frame`` on stdout as a humanized table, or as raw CSV or JSON."""
    if fmt == "csv":
        _flat(frame).write_csv(sys.stdout)
    elif fmt == "json":
        sys.stdout.write(frame.write_json() + "\n")
    else:
        if title:
            print(title)
        print(table(frame, units or {}))


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Nested columns (lists, structs) as JSON text: CSV has no nesting. Each value is encoded
    as the struct ``{"v": value}`` (Polars encodes structs only) and unwrapped."""
    nested = [n for n, t in frame.schema.items() if t.is_nested()]
    if not nested:
        return frame
    return frame.with_columns(
        pl.struct(pl.col(n).alias("v")).struct.json_encode().str.slice(5).str.strip_suffix("}").alias(n) for n in nested
    )


def table(frame: pl.DataFrame, units: dict[str, str]) -> str:
    """An aligned plain-text table (numbers right-aligned, text left), humanized per column."""
    if frame.is_empty():
        return "(no rows)"
    columns = list(frame.columns)
    formats = [_formatter(units.get(c) or column_unit(c, frame.schema[c])) for c in columns]
    cells = [[fmt(v) for fmt, v in zip(formats, row, strict=True)] for row in frame.iter_rows()]
    right = [frame.schema[c].is_numeric() for c in columns]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def metric_unit(metric: str) -> str:
    """How a metric's values read: CPU rates and requests in millicores, memory in bytes."""
    if metric in ("cpu/usage_rate", "cpu/request", "cpu/limit", "cpu/node_capacity", "cpu/node_allocatable"):
        return "millicores"
    if metric.endswith(("_utilization", "_reservation")):
        return "ratio"
    if metric.startswith(("memory/", "ephemeral_storage/", "accelerator/memory")) and "fault" not in metric:
        return "bytes"
    if metric.startswith("filesystem/") and "inodes" not in metric:
        return "bytes"
    if metric.startswith("network/") and metric.removesuffix("_rate") in ("network/rx", "network/tx"):
        return "bytes"
    return "number"


def column_unit(name: str, dtype: pl.DataType) -> str:
    """The unit a frame column's name implies (the analysis frames' naming: ``cpu_*`` in
    millicores, ``memory_*`` in bytes, ``*_utilization`` / ``*_reservation`` as fractions)."""
    if not dtype.is_numeric():
        return "text"
    lowered = name.lower()
    if any(w in lowered for w in ("cost", "price", "amount")):
        return "money"
    if any(w in lowered for w in ("utilization", "reservation", "efficiency", "share", "fraction", "ratio")):
        return "ratio"
    if any(w in lowered for w in ("hour", "days", "seconds", "samples", "count", "rank", "pods", "containers")):
        return "number"
    if "cpu" in lowered:
        return "millicores"
    if "memory" in lowered or "bytes" in lowered:
        return "bytes"
    return "number"


def _formatter(unit: str) -> Callable[[Any], str]:
    return {
        "millicores": _number(millicores),
        "bytes": _number(binary_bytes),
        "ratio": _number(lambda v: f"{v * 100:.1f}%"),
        "money": _number(lambda v: f"{v:.2f}"),
        "count": _number(lambda v: f"{v:.0f}"),
        "number": _number(plain),
    }.get(unit, _text)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _number(render: Callable[[float], str]) -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return _text(value)
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return render(float(value))

    return fmt


def millicores(value: float) -> str:
    """``250m``; a fraction of a millicore keeps one decimal (``0.5m``)."""
    if abs(value) >= 10 or value == round(value):
        return f"{value:.0f}m"
    return f"{value:.1f}m"


def binary_bytes(value: float) -> str:
    """``1.5Gi``, ``256Mi``, ``512`` (Kubernetes' binary suffixes, one decimal at most)."""
    size = abs(value)
    for suffix, power in (("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if size >= 1 << power:
            return f"{_trim(value / (1 << power))}{suffix}"
    return f"{value:.0f}"


def plain(value: float) -> str:
    return f"{value:.0f}" if value == round(value) else f"{value:.2f}"


def _trim(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text
