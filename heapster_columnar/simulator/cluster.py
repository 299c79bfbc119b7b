"""SimulatedCluster: API server + kubelet fleet on loopback, in a background event loop.

Use it as a context manager (tests, the demo, benchmarks) or through ``heapster-columnar simulate``.
Everything binds 127.x addresses only; TLS material and the kubeconfig go to a work directory that
is removed on exit unless the caller gave one. Clusters above 100 nodes build their pods and body
templates in worker processes started with ``spawn`` (safe beside the event-loop thread), so a script that starts one
needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import asyncio
import base64
import gc
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
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from heapster_columnar.simulator.faults import PERIODIC, period_key, restarts_between, seconds_of
from heapster_columnar.simulator.kubelet import KubeletFleet, build_template
from heapster_columnar.simulator.objects import namespace_object, node_object, pod_objects
from heapster_columnar.simulator.payloads import NodeShape, marked_document
from heapster_columnar.simulator.render import SummaryTemplate
from heapster_columnar.simulator.spec import ClusterSpec, Fault, kubelet_ip, node_name

if TYPE_CHECKING:
    from heapster_columnar.simulator.apiserver import ApiService

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic GC while building millions of long-lived dicts (they hold no cycles).

    Each collection would rescan everything built so far: at 5,000 nodes that was a third of
    start-up, in the workers and again when the main process unpickles their results.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


Prepared = tuple[list[dict[str, Any]], SummaryTemplate | None]  # a node's Pod objects and body template


def prepare_nodes(indices: range, shape: NodeShape, faults: dict[int, dict[Fault, float]], at: int) -> list[Prepared]:
    """Pod objects and body template of some nodes, from one render each (worker processes run it;
    benchmarks use it to make windows without serving them).

    Nodes with periodic faults get no template here: theirs changes every period, so it is built
    on demand.
    """
    when = datetime.fromtimestamp(at, UTC)
    with _collector_paused():
        return [_prepare_node(i, shape, faults.get(i, {}), when, at) for i in indices]


def _prepare_node(i: int, shape: NodeShape, node_faults: dict[Fault, float], when: datetime, at: int) -> Prepared:
    marked = marked_document(i, at=when, shape=shape)
    pods = pod_objects(marked.document, seed=shape.seed, index=i)  # reads constants only, not marks
    periodic = any(f in node_faults for f in PERIODIC)
    template = None if periodic else build_template(i, at, shape=shape, faults=node_faults, marked=marked)
    return pods, template


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
    ) -> None:
        self.spec = spec
        self.shape = NodeShape(pods_per_node=spec.pods_per_node, seed=spec.seed, memory_wave=False)
        self.faults = spec.faults.assign(spec.nodes, spec.seed)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="heapster-sim-"))
        self._bad_certificate = bad_certificate
        self._progress = progress
        self._clock = clock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulated-cluster", daemon=True)
        self._pods: dict[int, list[dict[str, Any]]] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._created = datetime(2024, 1, 1, tzinfo=UTC)
        self._namespaces = set(DEFAULT_NAMESPACES)
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
        """Kubelets listen first; nodes are built (in workers) and stored as they come; the API
        server opens last, so its first list already shows the whole cluster."""
        started = time.perf_counter()
        with _collector_paused():
            results = self._prepare_all()
            self._thread.start()
            self._call(self._start_kubelets())
            for indices, prepared in results:
                self._keep(indices, prepared)
            self._call(self._start_api())
        gc.freeze()  # the objects above live as long as the cluster: keep later collections off them
        self.write_kubeconfig()
        self.startup_seconds = time.perf_counter() - started

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._thread.is_alive():
            self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def register_api_service(self, service: ApiService) -> None:
        """Front an aggregated API (``/apis/<group>/...``) as the Kubernetes aggregation layer
        does, e.g. our own metrics.k8s.io for ``kubectl top``."""
        from heapster_columnar.simulator.apiserver import register_api_service

        async def register() -> None:
            register_api_service(self._api_app, service)

        self._call(register())

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
        uri = f"kubernetes.summary_api:{self.api_url}?inClusterConfig=false&auth={self.kubeconfig_path}"
        return uri if self.spec.https else uri + "&kubeletHttps=false"

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

    def _prepare_all(self) -> Iterator[tuple[range, list[Prepared]]]:
        """Pods and body templates of every node, so the first scrape is as cheap as any other.

        Both come from one render per node (~6 ms). Above 100 nodes, chunks go to one worker
        process per core at once (they start while the kubelets bind); results are yielded in order.
        """
        at = int(self._clock())
        chunks = [range(i, min(i + 100, self.spec.nodes)) for i in range(0, self.spec.nodes, 100)]
        args = (self.shape, self.faults, at)
        workers = min(os.cpu_count() or 1, len(chunks))
        if workers > 1:
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            jobs = [(chunk, self._pool.submit(prepare_nodes, chunk, *args)) for chunk in chunks]
            results: Iterator[tuple[range, list[Prepared]]] = ((chunk, job.result()) for chunk, job in jobs)
        else:
            results = ((c, prepare_nodes(c, *args)) for c in chunks)
        if self._progress is None:
            return results
        return (chunk for _, chunk in zip(self._progress(iter(range(len(chunks)))), results, strict=True))

    def _keep(self, indices: range, prepared: list[Prepared]) -> None:
        """Install some nodes' templates and store their Node and Pod objects."""
        for index, (pods, template) in zip(indices, prepared, strict=True):
            self._pods[index] = pods
            if template is not None:
                self.fleet.add_templates({index: template})
            ready = Fault.NOT_READY not in self.faults.get(index, {})
            port = self.fleet.ports[index]
            self.store.add("nodes", node_object(index, shape=self.shape, port=port, ready=ready, created=self._created))
            for pod in pods:
                self._namespaces.add(pod["metadata"]["namespace"])
                self.store.add("pods", pod)

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

    async def _start_kubelets(self) -> None:
        from heapster_columnar.simulator.store import ObjectStore

        self._server_ssl, self._client_ssl = self._tls()
        self.fleet = KubeletFleet(
            self.spec.nodes,
            shape=self.shape,
            faults=self.faults,
            pods_of=self.pods,
            port=self.spec.kubelet_port,
            token=self.spec.token,
            ssl_context=self._server_ssl,
            clock=self._clock,
        )
        await self.fleet.start()
        self.store = ObjectStore()

    async def _start_api(self) -> None:
        from heapster_columnar.simulator.apiserver import create_app, start_apiserver

        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for name in sorted(self._namespaces):
            self.store.add("namespaces", namespace_object(name, seed=self.spec.seed))
        headers = {"Authorization": f"Bearer {self.spec.token}"} if self.spec.token else {}
        self._http = httpx.AsyncClient(verify=self._client_ssl or True, headers=headers, timeout=30)
        by_name = {node_name(i): i for i in range(self.spec.nodes)}

        def kubelet_of(name: str) -> str | None:
            index = by_name.get(name)
            return None if index is None else self.kubelet_url(index)

        app = create_app(self.store, token=self.spec.token, kubelet_url=kubelet_of, http_client=self._http)
        self._api_app = app
        self._fault_task = asyncio.get_running_loop().create_task(self._follow_faults())
        self._api_runner, self.api_port = await start_apiserver(
            app, port=self.spec.apiserver_port, ssl_context=self._server_ssl
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
