"""``simulate``: a Kubernetes API server and one kubelet per node on loopback, until Ctrl-C.

With ``--backfill 30d --out PATH`` it writes that much synthetic history into a Parquet store
instead (no servers) and exits.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from heapster_columnar.analysis.store import parse_duration
from heapster_columnar.cli._errors import CommandError
from heapster_columnar.errors import ConfigError, SinkError
from heapster_columnar.simulator.backfill import backfill, default_end
from heapster_columnar.simulator.cluster import SimulatedCluster
from heapster_columnar.simulator.spec import ClusterSpec, FaultSpec


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    p = commands.add_parser(name, help="run a simulated cluster (API server + kubelets)", description=__doc__)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--pods-per-node", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--https", action="store_true", help="TLS with a generated CA (written to the work dir)")
    p.add_argument("--bad-certificate", action="store_true", help="serve a certificate the CA did not sign")
    p.add_argument("--token", help="require this bearer token on the API server and the kubelets")
    p.add_argument(
        "--faults",
        help="e.g. slow=0.05:3,hang=2,http500=0.01,truncated=1,uint64max=0.1,notready=1,restart=0.1:300,churn=0.2:120",
    )
    p.add_argument("--port", type=int, default=0, help="API server port (default: any free port)")
    p.add_argument("--kubelet-port", type=int, default=10250, help="port on every node address (0: any)")
    p.add_argument("--workdir", type=Path, help="where the kubeconfig and CA go (default: a temp dir)")
    history = p.add_argument_group("history", "write synthetic history to a Parquet store instead of serving")
    history.add_argument("--backfill", metavar="DURATION", help="that much history (e.g. 30d, 12h), then exit")
    history.add_argument("--out", metavar="PATH", help="the new store (a directory or URL); required with --backfill")
    history.add_argument("--resolution", metavar="DURATION", help="window length (default 60s)")
    history.add_argument(
        "--end", metavar="TIME", help="ISO time of the last window (default: the last whole hour, UTC)"
    )


def _progress(total: int):  # type: ignore[no-untyped-def]
    def wrap(items):  # type: ignore[no-untyped-def]
        try:
            from rich.console import Console
            from rich.progress import track
        except ImportError:
            return items
        return track(
            items, total=(total + 99) // 100, description="building nodes and pods", console=Console(stderr=True)
        )

    return wrap


def _day_progress(days: Iterable[date]) -> Iterable[date]:
    try:
        from rich.console import Console
        from rich.progress import track
    except ImportError:
        return days
    days = list(days)
    return track(days, total=len(days), description="backfilling days", console=Console(stderr=True))


def _backfill(args: argparse.Namespace) -> int:
    if not args.out:
        raise CommandError("--backfill needs --out PATH (the store to write)")
    try:
        duration = _duration("--backfill", args.backfill)
        resolution = _duration("--resolution", args.resolution or "60s")
        end = _end(args.end) if args.end else default_end()
        report = backfill(
            args.out,
            nodes=args.nodes,
            pods_per_node=args.pods_per_node,
            duration=duration,
            resolution=resolution,
            end=end,
            seed=args.seed,
            progress=_day_progress if sys.stderr.isatty() else None,
        )
    except (ConfigError, SinkError) as exc:
        raise CommandError(str(exc)) from None
    days = len(report.rollup_days)
    print(
        f"backfilled {report.first.isoformat()} .. {report.last.isoformat()} every {resolution.total_seconds():g} s: "
        f"{report.nodes} nodes, {report.pods} pods, {report.rows:,} points in {report.seconds:.1f} s "
        f"({report.rows_per_second:,.0f} points/s), {report.snapshots} pod snapshots, "
        f"rollups of {days} closed day{'' if days == 1 else 's'}"
    )
    print(f"store: {report.location}")
    return 0


def _duration(flag: str, text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def _end(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--end: {text!r} is not an ISO time (example: 2024-06-01T00:00:00Z)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def run(args: argparse.Namespace) -> int:
    if args.backfill is not None:
        return _backfill(args)
    for flag, value in (("--out", args.out), ("--resolution", args.resolution), ("--end", args.end)):
        if value is not None:
            raise CommandError(f"{flag} is only used with --backfill")
    try:
        spec = ClusterSpec(
            nodes=args.nodes,
            pods_per_node=args.pods_per_node,
            seed=args.seed,
            https=args.https,
            token=args.token,
            kubelet_port=args.kubelet_port,
            apiserver_port=args.port,
            faults=FaultSpec.parse(args.faults),
        )
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    cluster = SimulatedCluster(
        spec,
        workdir=args.workdir,
        bad_certificate=args.bad_certificate,
        progress=_progress(spec.nodes) if sys.stderr.isatty() else None,
    )
    try:
        cluster.start()
    except OSError as exc:
        cluster.close()
        raise CommandError(f"cannot start the simulator: {exc}") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (`cmd &`)
        signal.signal(signum, lambda *_: stop.set())
    print(f"simulated cluster: {spec.nodes} nodes x {spec.pods_per_node} pods, up in {cluster.startup_seconds:.1f} s")
    print(f"API server:  {cluster.api_url}")
    print(f"kubeconfig:  {cluster.kubeconfig_path}   (kubectl --kubeconfig {cluster.kubeconfig_path} get nodes)")
    print(f"--source={cluster.source_uri}")
    sys.stdout.flush()

    try:
        while not stop.wait(1.0):
            pass
    finally:
        cluster.close()
    return 0
