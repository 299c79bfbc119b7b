"""``simulate``: a Kubernetes API server and one kubelet per node on loopback, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from heapster_columnar.cli._errors import CommandError
from heapster_columnar.errors import ConfigError
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


def run(args: argparse.Namespace) -> int:
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
