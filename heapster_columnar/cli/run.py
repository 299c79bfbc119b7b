"""``run``: the collector. Scrape every kubelet each window, process, write to the sinks.

    heapster-columnar run --source='kubernetes.summary_api:https://kubernetes.default' \\
        --sink=log --metric_resolution=15s

Flag names are Heapster's (``_`` and ``-`` both work). SIGINT/SIGTERM finish the window in
progress, close the sinks and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import pyarrow as pa

from heapster_columnar.cli._errors import CommandError
from heapster_columnar.errors import ConfigError
from heapster_columnar.manager.build import RunConfig, build, check, default_spool_dir
from heapster_columnar.manager.clock import parse_duration
from heapster_columnar.model.quantity import parse_quantities


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """Heapster's flags accept ``_`` and ``-`` interchangeably."""
    spellings = sorted({f"--{name}", f"--{name.replace('_', '-')}"}, key=lambda s: "-" in s[2:])
    parser.add_argument(*spellings, dest=name, **kwargs)  # type: ignore[arg-type]


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        name,
        help="collect metrics from a cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _flag(parser, "source", required=True, help="kubernetes.summary_api:<url>?<options> (README: source options)")
    _flag(
        parser,
        "sink",
        action="append",
        default=[],
        help="sink URI, repeatable: log, memory, parquet:<dir or URL>, duckdb:<file>, influxdb:<url> (README: sinks)",
    )
    _flag(parser, "metric_resolution", default="60s", help="window length (>= 5s; Heapster's default 60s)")
    _flag(parser, "scrape_offset", default="5s", help="collect this long after a window ends (Heapster: 5s)")
    _flag(parser, "sink_export_data_timeout", default="20s", help="per-sink time limit for one window")
    _flag(parser, "label_separator", default=",", help="separator in the `labels` label")
    _flag(parser, "store_label", action="append", default=[], help="copy label `name` (or `new=name`), repeatable")
    _flag(parser, "ignore_label", action="append", default=[], help="label key left out of `labels`, repeatable")
    _flag(parser, "disable_metric_sink", action="store_true", help="no in-memory window store")
    _flag(parser, "spool_dir", default=None, help="where durable sinks keep windows they could not take yet")
    _flag(parser, "spool_max_size", default="1Gi", help="bound of each sink's spool (Kubernetes quantity: 1Gi, 500M)")
    _flag(parser, "sink_queue", type=int, default=2, help="windows a durable sink may queue in memory")
    _flag(parser, "windows", type=int, default=None, help="stop after this many windows (scripts, tests)")


def config_of(args: argparse.Namespace) -> RunConfig:
    try:
        return RunConfig(
            source=args.source,
            sinks=args.sink,
            resolution=parse_duration(args.metric_resolution),
            offset=parse_duration(args.scrape_offset),
            sink_timeout=parse_duration(args.sink_export_data_timeout),
            label_separator=args.label_separator,
            store_labels=[s for arg in args.store_label for s in arg.split(",") if s],
            ignore_labels=[s for arg in args.ignore_label for s in arg.split(",") if s],
            disable_metric_sink=args.disable_metric_sink,
            spool_dir=Path(args.spool_dir) if args.spool_dir else default_spool_dir(),
            spool_max_bytes=_size(args.spool_max_size, "--spool_max_size"),
            sink_queue=args.sink_queue,
        )
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    config = config_of(args)
    try:
        check(config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if any(s.split(":")[0] == "log" for s in config.sinks):
        logging.getLogger("heapster_columnar.sinks.log").setLevel(logging.INFO)
    manager_log = logging.getLogger("heapster_columnar.manager")
    if manager_log.getEffectiveLevel() > logging.INFO:  # windows and shutdown are worth a line each
        manager_log.setLevel(logging.INFO)
    return asyncio.run(_collect(config, args.windows))


async def _collect(config: RunConfig, windows: int | None) -> int:
    try:
        collector = build(config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await collector.manager.run(stop, windows=windows)
    finally:
        await collector.aclose()
    return 0


def _size(text: str, flag: str) -> int:
    """A byte count in Kubernetes quantity syntax (``1Gi``, ``500M``, ``1048576``)."""
    try:
        value = parse_quantities(pa.array([text.strip()]), milli=False)[0].as_py()
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise ConfigError(f"{flag}: {text!r} is not a positive size (examples: 1Gi, 500M, 1048576)")
    return int(value)
