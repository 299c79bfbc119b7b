"""SimulatedCluster: API server + kubelet fleet on loopback, in a background event loop.

Use it as a context manager (tests, the demo, benchmarks) or through ``heapster-columnar simulate``.
Everything binds 127.x addresses only; TLS material and the kubeconfig go to a work directory that
is removed on exit unless the caller gave one. Clusters above 100 nodes, and warm-up, use worker
processes started with ``spawn`` (safe beside the event-loop thread), so a script that starts one
needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from heapster_columnar.simulator.faults import PERIODIC, period_key, restarts_between, seconds_of
from heapster_columnar.simulator.kubelet import KubeletFleet, render_summary
from heapster_columnar.simulator.objects import namespace_object, node_object, pod_objects
from heapster_columnar.simulator.payloads import NodeShape, summary_document
from heapster_columnar.simulator.render import SummaryTemplate
from heapster_columnar.simulator.spec import ClusterSpec, Fault, kubelet_ip, node_name

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _templates_of_nodes(
    indices: list[int], shape: NodeShape, faults: dict[int, dict[Fault, float]], at: int
) -> dict[int, SummaryTemplate]:
    """Summary templates of some nodes, built in a worker process while the cluster already serves."""
    return {
        i: SummaryTemplate.build(partial(render_summary, i, shape=shape, faults=faults.get(i, {})), at) for i in indices
    }


def _pods_of_nodes(indices: range, shape: NodeShape, now: datetime) -> list[list[dict[str, Any]]]:
    """Pod objects of some nodes (runs in a worker process for large clusters)."""
    return [pod_objects(summary_document(i, at=now, shape=shape), seed=shape.seed, index=i) for i in indices]


class SimulatedCluster:
    """A running simulated cluster. ``with SimulatedCluster(ClusterSpec(nodes=3)) as c: ...``"""

    def __init__(
        self,
        spec: ClusterSpec,
        *,
        workdir: Path | None = None,
        bad_certificate: bool = False,
        progress: Callable[[Iterator[int]], Iterator[int]] | None = None,
        clock: Callable[[], float] = time.time,
        warm: bool = False,
    ) -> None:
        self.spec = spec
        self.shape = NodeShape(pods_per_node=spec.pods_per_node, seed=spec.seed, memory_wave=False)
        self.faults = spec.faults.assign(spec.nodes, spec.seed)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="heapster-sim-"))
        self._bad_certificate = bad_certificate
        self._progress = progress
        self._clock = clock
        self._warm = warm
        self._warmed = threading.Event()
        self._warmer = threading.Thread(target=self._warm_up, name="template-warm-up", daemon=True)
        self._pool: ProcessPoolExecutor | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulated-cluster", daemon=True)
        self._pods: dict[int, list[dict[str, Any]]] = {}
        self.api_port = 0
        self.ca_path: Path | None = None
        self.fleet: KubeletFleet
        self.startup_seconds = 0.0

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> SimulatedCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        started = time.perf_counter()
        self._build_objects()
        self._thread.start()
        self._call(self._start())
        self.write_kubeconfig()
        self.startup_seconds = time.perf_counter() - started
        if self._warm:
            self._warmer.start()

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Block until every kubelet's body template is built (first scrapes are then cheap).

        False at once for a cluster started without ``warm=True``.
        """
        if not self._warm:
            return False
        self._warmed.wait(timeout)
        return self._warmed.is_set()

    def _warm_up(self) -> None:
        """Build body templates in worker processes, so the first scrape does not pay for them."""
        periodic = {i for i, f in self.faults.items() if any(p in f for p in PERIODIC)}
        todo = [i for i in range(self.spec.nodes) if i not in periodic]
        chunks = [todo[k : k + 50] for k in range(0, len(todo), 50)]
        at = int(self._clock())
        try:
            with ProcessPoolExecutor(
                min(os.cpu_count() or 1, max(len(chunks), 1)), mp_context=multiprocessing.get_context("spawn")
            ) as pool:
                self._pool = pool
                jobs = [pool.submit(_templates_of_nodes, c, self.shape, self.faults, at) for c in chunks]
                for job in jobs:
                    templates = job.result()
                    if self._loop.is_closed():
                        return
                    self._loop.call_soon_threadsafe(self.fleet.add_templates, templates)
        except (RuntimeError, OSError):  # closing while warming: the templates are simply built later
            return
        finally:
            self._warmed.set()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._warmer.is_alive():
            self._warmer.join(timeout=30)
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=600)

    # --- addresses ---------------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.spec.https else "http"

    @property
    def api_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def source_uri(self) -> str:
        """The ``--source`` to give ``heapster-columnar run`` (Heapster's URI form)."""
        return f"kubernetes.summary_api:{self.api_url}?inClusterConfig=false&auth={self.kubeconfig_path}"

    def kubelet_url(self, index: int) -> str:
        return f"{self.scheme}://{kubelet_ip(index)}:{self.fleet.ports[index]}"

    # --- truth, for tests ----------------------------------------------------------------------------

    def summary(self, index: int, at: float) -> dict[str, Any]:
        """The document node ``index`` serves at wall-clock second ``at`` (faults applied)."""
        return self.fleet.document(index, at)

    def pods(self, index: int) -> list[dict[str, Any]]:
        return self._pods[index]

    def delete_pod(self, namespace: str, name: str) -> None:
        """Delete a pod from the API (watchers see DELETED); safe to call from any thread."""

        async def delete() -> None:
            obj = self.store.get("pods", name, namespace)
            if obj is not None:
                self.store.delete("pods", obj)

        self._call(delete())

    # --- internals ---------------------------------------------------------------------------------

    def _build_objects(self) -> None:
        """Pod objects for every node, read off each node's Summary; big clusters use every core."""
        now = datetime.now(UTC)
        chunks = [range(i, min(i + 100, self.spec.nodes)) for i in range(0, self.spec.nodes, 100)]
        chunk_iter: Iterator[int] = iter(range(len(chunks)))
        if self._progress is not None:
            chunk_iter = self._progress(chunk_iter)
        workers = min(os.cpu_count() or 1, len(chunks))
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = pool.map(_pods_of_nodes, chunks, [self.shape] * len(chunks), [now] * len(chunks))
                for k, pods in zip(chunk_iter, results, strict=True):
                    self._pods.update(zip(chunks[k], pods, strict=True))
        else:
            for k in chunk_iter:
                self._pods.update(zip(chunks[k], _pods_of_nodes(chunks[k], self.shape, now), strict=True))

    def _tls(self) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
        """(server context, context the API server uses to reach kubelets)."""
        if not self.spec.https:
            return None, None
        import trustme

        ca = trustme.CA()
        signer = trustme.CA() if self._bad_certificate else ca
        ips = ["127.0.0.1", *(kubelet_ip(i) for i in range(self.spec.nodes))]
        cert = signer.issue_cert(*ips, "localhost")
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server)
        self.ca_path = self.workdir / "ca.crt"
        ca.cert_pem.write_to_path(str(self.ca_path))
        client = ssl.create_default_context(cafile=str(self.ca_path))
        return server, client

    async def _start(self) -> None:
        from heapster_columnar.simulator.apiserver import create_app, start_apiserver
        from heapster_columnar.simulator.store import ObjectStore

        server_ssl, client_ssl = self._tls()
        self.fleet = KubeletFleet(
            self.spec.nodes,
            shape=self.shape,
            faults=self.faults,
            pods_of=self.pods,
            port=self.spec.kubelet_port,
            token=self.spec.token,
            ssl_context=server_ssl,
            clock=self._clock,
        )
        await self.fleet.start()
        self.store = ObjectStore()
        created = datetime(2024, 1, 1, tzinfo=UTC)
        namespaces = set(DEFAULT_NAMESPACES)
        for index in range(self.spec.nodes):
            ready = Fault.NOT_READY not in self.faults.get(index, {})
            self.store.add(
                "nodes",
                node_object(index, shape=self.shape, port=self.fleet.ports[index], ready=ready, created=created),
            )
            for pod in self._pods[index]:
                namespaces.add(pod["metadata"]["namespace"])
                self.store.add("pods", pod)
        for name in sorted(namespaces):
            self.store.add("namespaces", namespace_object(name, seed=self.spec.seed))
        headers = {"Authorization": f"Bearer {self.spec.token}"} if self.spec.token else {}
        self._http = httpx.AsyncClient(verify=client_ssl or True, headers=headers, timeout=30)
        by_name = {node_name(i): i for i in range(self.spec.nodes)}

        def kubelet_of(name: str) -> str | None:
            index = by_name.get(name)
            return None if index is None else self.kubelet_url(index)

        app = create_app(self.store, token=self.spec.token, kubelet_url=kubelet_of, http_client=self._http)
        self._fault_task = asyncio.get_running_loop().create_task(self._follow_faults())
        self._api_runner, self.api_port = await start_apiserver(
            app, port=self.spec.apiserver_port, ssl_context=server_ssl
        )

    async def _follow_faults(self) -> None:
        """Keep the API's pods in step with periodic kubelet faults, as watchers would see them:
        restarts update ``restartCount`` (MODIFIED), churn replaces pods (DELETED, then ADDED)."""
        periodic = {i: f for i, f in self.faults.items() if any(p in f for p in PERIODIC)}
        done: dict[int, tuple[int, ...]] = {}  # the period each node was last brought in step for
        counted: dict[str, int] = {}
        while periodic:
            now = self._clock()
            for index, faults in periodic.items():
                period = period_key(faults, int(now))
                if done.get(index) == period:
                    continue  # nothing changes inside a period: no work per node per second
                if Fault.CHURN in faults:
                    self._reconcile_pods(index, now)
                if Fault.RESTART in faults:
                    self._count_restarts(index, faults[Fault.RESTART], now, counted)
                # kubelet samples lag the clock by up to max_lag_seconds: settle once they caught up
                if period_key(faults, int(now) - self.shape.max_lag_seconds - 1) == period:
                    done[index] = period
            await asyncio.sleep(1)

    def _reconcile_pods(self, index: int, now: float) -> None:
        served = pod_objects(self.fleet.document(index, now), seed=self.spec.seed, index=index)
        have = {p["metadata"]["uid"]: p for p in self._pods[index]}
        want = {p["metadata"]["uid"]: p for p in served}
        for uid in have.keys() - want.keys():
            meta = have[uid]["metadata"]
            current = self.store.get("pods", meta["name"], meta["namespace"])
            if current is not None:
                self.store.delete("pods", current)
        for uid in want.keys() - have.keys():
            self.store.add("pods", want[uid])
        self._pods[index] = [have.get(p["metadata"]["uid"], p) for p in served]

    def _count_restarts(self, index: int, period: float, now: float, counted: dict[str, int]) -> None:
        for pod in self._pods[index]:
            status = pod["status"]["containerStatuses"][0]
            count = restarts_between(seconds_of(status["state"]["running"]["startedAt"]), period, now)
            if counted.get(pod["metadata"]["uid"]) == count:
                continue
            counted[pod["metadata"]["uid"]] = count
            statuses = [dict(status, restartCount=count), *pod["status"]["containerStatuses"][1:]]
            current = self.store.get("pods", pod["metadata"]["name"], pod["metadata"]["namespace"])
            if current is not None:
                self.store.update("pods", dict(current, status=dict(current["status"], containerStatuses=statuses)))

    async def _stop(self) -> None:
        """Undo whatever part of ``_start`` ran (it may have failed half way, e.g. a port in use)."""
        task = getattr(self, "_fault_task", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if hasattr(self, "fleet"):
            await self.fleet.close()
        if hasattr(self, "_api_runner"):
            await self._api_runner.cleanup()
        if hasattr(self, "_http"):
            await self._http.aclose()

    def write_kubeconfig(self) -> Path:
        """A kubeconfig for kubectl and the kubernetes client (JSON is valid YAML)."""
        cluster: dict[str, Any] = {"server": self.api_url}
        if self.ca_path is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_path.read_bytes()).decode()
        user = {"token": self.spec.token} if self.spec.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "simulated", "cluster": cluster}],
            "users": [{"name": "simulated", "user": user}],
            "contexts": [{"name": "simulated", "context": {"cluster": "simulated", "user": "simulated"}}],
            "current-context": "simulated",
        }
        self.kubeconfig_path.write_text(json.dumps(config, indent=2))
        return self.kubeconfig_path
