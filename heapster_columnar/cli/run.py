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
from aiohttp import web

from heapster_columnar.api.server import ApiOptions, create_app, serve, warm
from heapster_columnar.cli._errors import CommandError
from heapster_columnar.errors import ConfigError
from heapster_columnar.manager.build import RunConfig, build, check, default_spool_dir
from heapster_columnar.manager.clock import parse_duration
from heapster_columnar.manager.loop import WindowOutcome
from heapster_columnar.model.quantity import parse_quantities
from heapster_columnar.sinks.memory import MemorySink


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
    api = parser.add_argument_group("HTTP APIs (health, /metrics, metrics.k8s.io, model API) on one port")
    api.add_argument(
        "--heapster-port",
        "--heapster_port",
        dest="heapster_port",
        type=int,
        default=8082,
        help="port of every API (Heapster's 8082); 0 picks a free one, -1 serves none",
    )
    _flag(api, "listen_ip", default="", help="address to listen on (default: all)")
    _flag(api, "tls_cert", default=None, help="serve HTTPS with this certificate (with --tls_key)")
    _flag(api, "tls_key", default=None, help="private key of --tls_cert")
    _flag(api, "tls_client_ca", default=None, help="require client certificates signed by this CA")
    _flag(api, "allowed_users", default="", help="comma list of certificate CNs allowed (empty: any verified)")
    _flag(api, "api_token_file", default=None, help="also accept `Authorization: Bearer <token in this file>`")
    _flag(api, "healthz_max_age", default="3m", help="/healthz fails when the newest window is older")
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
    api = api_options_of(args)
    return asyncio.run(_collect(config, api, args.windows))


def api_options_of(args: argparse.Namespace) -> ApiOptions | None:
    if args.heapster_port < 0:
        return None
    try:
        options = ApiOptions(
            listen_ip=args.listen_ip,
            port=args.heapster_port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            allowed_users=tuple(u.strip() for u in args.allowed_users.split(",") if u.strip()),
            token_file=args.api_token_file,
            healthz_max_age=parse_duration(args.healthz_max_age),
        )
        options.check()
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    return options


async def _collect(config: RunConfig, api: ApiOptions | None, windows: int | None) -> int:
    try:
        collector = build(config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = None
    try:
        if api is not None:
            memory = collector.memory or MemorySink()
            app = create_app(memory, collector.telemetry, api, ready=collector.state.ready, history=collector.history)
            try:
                runner, port = await serve(app, api)
            except ConfigError as exc:
                raise CommandError(str(exc)) from None

            def prepare(outcome: WindowOutcome, app: web.Application = app) -> None:
                loop.run_in_executor(None, warm, app, outcome.window)  # kubectl top's list, off the loop

            collector.manager.on_window = prepare
            scheme = "https" if api.tls_cert else "http"
            logging.getLogger("heapster_columnar.manager").info(
                "serving the APIs on %s://%s:%d", scheme, api.listen_ip or "0.0.0.0", port
            )
        await collector.manager.run(stop, windows=windows)
    finally:
        if runner is not None:
            await runner.cleanup()
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
