"""``simulate --backfill``: months of realistic history written straight into a Parquet store.

Notebooks and benchmarks need weeks of data with the shapes right-sizing looks for (a daily and
weekly cycle, spikes, workloads that ask for far more or far less than they use, pods that come
and go); collecting that takes weeks, and rendering kubelet documents for it takes hours. This
generator skips the pipeline: an hour is one (containers x windows) numpy matrix per metric, the
sums Heapster's aggregators would give are grouped row sums of it, and the hour is written
already in the compactor's row order as the one file of its partition. Each closed UTC day's
rollups are computed from the points still in memory.

Names follow the live simulator (``node-00000``, the namespace/app catalogue of
:mod:`.payloads`, ReplicaSet pods ``<app>-<hash>-<suffix>``, DaemonSet pods ``<app>-<suffix>``),
so a backfilled store reads like collected history. Everything is a function of the seed.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs

from heapster_columnar.analysis.rollups import rollup_frames, write_rollups
from heapster_columnar.errors import ConfigError
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.schema import POINTS_SCHEMA, TIME
from heapster_columnar.simulator.objects import _owner, namespace_object, node_object
from heapster_columnar.simulator.payloads import APPS, DAEMONSETS, SIDECARS, NodeShape, _rs_hash, name_codes
from heapster_columnar.simulator.spec import node_name
from heapster_columnar.sinks._parquet_layout import POINTS
from heapster_columnar.sinks.parquet_history import HistoryWriter
from heapster_columnar.sources.objects import namespaces_table, nodes_table, pods_tables

__all__ = ["BackfillReport", "Progress", "backfill", "default_end"]

Progress = Callable[[Iterable[date]], Iterable[date]]

MIB, GIB = 1 << 20, 1 << 30
PAGE = 4096  # working sets are whole pages (as the kernel counts them), which keeps them exact in int32
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
CPU, WS, USAGE = "cpu/usage_rate", "memory/working_set", "memory/usage"
CPU_REQ, MEM_REQ = "cpu/request", "memory/request"
NODE_RATIOS = (
    "cpu/node_allocatable",
    "memory/node_allocatable",
    "cpu/node_utilization",
    "memory/node_utilization",
    "cpu/node_reservation",
    "memory/node_reservation",
)
METRICS = tuple(sorted((CPU, WS, USAGE, CPU_REQ, MEM_REQ, *NODE_RATIOS)))  # dictionary index = string rank
TYPES = ("cluster", "node", "ns", "pod", "pod_container")
_METRIC = {m: i for i, m in enumerate(METRICS)}
_TYPE = {t: i for i, t in enumerate(TYPES)}
NULL = 1 << 30  # label index of a null: sorts last, where the compactor puts nulls
ROLLUP_BATCH_ROWS = 4_000_000  # points per rollup_frames call (the day is split by node)

# The kind of load each app of the catalogue carries; the numbers are drawn from the seed.
_KIND = {
    "web": "serving",
    "payments-api": "serving",
    "checkout": "serving",
    "cart": "serving",
    "catalog-api": "serving",
    "auth-gateway": "serving",
    "ingress-nginx-controller": "serving",
    "keycloak": "jvm",
    "ledger-worker": "batch",
    "search-indexer": "batch",
    "spark-executor": "batch",
}


@dataclass(frozen=True, slots=True)
class _Kind:
    cpu: float  # median millicores of the app container at the weekday peak (before calibration)
    memory: float  # median MiB
    amp: tuple[float, float]  # share of the load that follows the day
    weekend: tuple[float, float]  # weekend load / weekday load
    spikes: tuple[float, float]  # traffic spikes per hour (all pods of the workload at once)
    mem_coupling: tuple[float, float]  # how much memory follows the load
    leaky: float  # chance the app's memory grows until a periodic drop
    lifetime: tuple[float, float]  # days a pod lives before it is replaced
    rollouts: tuple[float, float]  # days between rollouts


_KINDS = {
    "serving": _Kind(120, 300, (0.5, 0.85), (0.35, 0.6), (0.02, 0.08), (0.05, 0.25), 0.2, (2, 7), (2, 6)),
    "jvm": _Kind(150, 900, (0.4, 0.7), (0.4, 0.7), (0.01, 0.04), (0.0, 0.1), 1.0, (3, 10), (4, 10)),
    "batch": _Kind(90, 600, (0.1, 0.3), (0.7, 1.0), (0.0, 0.02), (0.2, 0.5), 0.5, (0.25, 1), (3, 7)),
    "system": _Kind(15, 60, (0.05, 0.2), (0.8, 1.0), (0.0, 0.01), (0.0, 0.05), 0.0, (10, 30), (7, 21)),
}
# sidecar -> cpu millicores (lo, hi), memory MiB (lo, hi), share of the app's load it follows,
#            request (m, Mi), limit (m, Mi; 0 = none): the values their charts ship with
_SIDECAR = {
    "istio-proxy": ((10, 40), (60, 150), 0.8, (100, 128), (2000, 1024)),
    "config-reloader": ((1, 3), (15, 30), 0.0, (10, 32), (50, 64)),
    "log-shipper": ((5, 30), (50, 120), 0.6, (50, 100), (0, 0)),
}
# request / p90 usage: over-requesting, under-requesting, about right (shares 30 %, 20 %, 50 %)
_CATEGORIES = ((2.0, 4.0), (0.5, 0.8), (0.8, 1.2))
# what a node of the default shape has requested, as clusters are run (cpu, memory)
RESERVATION_TARGET = (0.65, 0.6)
_SHAPE = NodeShape()
_ALLOCATABLE = (
    _SHAPE.node_cores * 1000 - 80 - 10 * _SHAPE.node_cores,  # node_object's allocatable
    _SHAPE.node_memory_bytes - _SHAPE.node_memory_bytes // 20,
)


@dataclass(frozen=True, slots=True)
class BackfillReport:
    """What a backfill wrote; ``rows`` counts points, ``snapshots`` versions of the pods table."""

    location: str
    first: datetime  # first window end
    last: datetime  # last window end
    resolution: timedelta
    windows: int
    rows: int
    nodes: int
    pods: int  # pods that ever ran (churn included)
    snapshots: int
    rollup_days: tuple[date, ...]
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def default_end(now: datetime | None = None) -> datetime:
    """The last whole hour before ``now`` (UTC): a backfill then ends on an hour boundary."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now.replace(minute=0, second=0, microsecond=0)


# -- workloads -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Workload:
    namespace: str
    app: str
    daemonset: bool


class _Profiles:
    """The load model of each workload (w) and container role (r: 0 = the app, then sidecars)."""

    def __init__(self, seed: int, pods_per_node: int) -> None:
        self.workloads = [_Workload(ns, app, True) for ns, app in DAEMONSETS]
        self.workloads += [_Workload(ns, app, False) for ns, app in APPS]
        n, r = len(self.workloads), 1 + len(SIDECARS)
        rng = np.random.default_rng([seed, 0xB4C])
        kinds = [_KINDS["system" if w.daemonset else _KIND.get(w.app, "system")] for w in self.workloads]
        deployment = np.array([not w.daemonset for w in self.workloads])
        self.roles = np.ones(n, np.int64)
        self.roles[deployment] = rng.choice([1, 2, 3], int(deployment.sum()), p=np.array([6, 3, 2]) / 11)
        self.names = [[w.app, *SIDECARS[: int(self.roles[i]) - 1]] for i, w in enumerate(self.workloads)]

        def draw(pick: Callable[[_Kind], tuple[float, float]]) -> np.ndarray:
            bounds = np.array([pick(k) for k in kinds], np.float64)
            return rng.uniform(bounds[:, 0], bounds[:, 1])

        # per workload
        self.amp = draw(lambda k: k.amp)
        self.peak = rng.uniform(13.0, 16.5, n)  # hour of day (UTC) of the daily peak
        self.weekend = draw(lambda k: k.weekend)
        self.spike_rate = draw(lambda k: k.spikes)
        batch = np.array([k is _KINDS["batch"] for k in kinds])
        self.job_period = np.where(batch, rng.choice([1.0, 2.0, 4.0, 6.0], n), 0.0)  # hours; 0: no jobs
        self.job_phase = rng.uniform(0, 6, n)
        self.job_len = rng.uniform(10, 45, n) / 60
        self.job_mult = rng.uniform(3, 8, n)
        self.mem_coupling = draw(lambda k: k.mem_coupling)
        self.lifetime_h = np.where(deployment, draw(lambda k: k.lifetime) * 24, np.inf)  # DaemonSet pods stay
        self.rollout_h = draw(lambda k: k.rollouts) * 24 * np.where(deployment, 1, 2)
        # per workload x role
        self.cpu_base = np.zeros((n, r))
        self.mem_base = np.zeros((n, r))
        self.coupling = np.ones((n, r))
        self.cpu_base[:, 0] = np.clip([k.cpu for k in kinds] * rng.lognormal(0, 0.6, n), 3, 2000)
        self.mem_base[:, 0] = np.clip([k.memory * MIB for k in kinds] * rng.lognormal(0, 0.5, n), 16 * MIB, 8 * GIB)
        for j, name in enumerate(SIDECARS, start=1):
            (c_lo, c_hi), (m_lo, m_hi), coupling, _, _ = _SIDECAR[name]
            self.cpu_base[:, j] = rng.uniform(c_lo, c_hi, n)
            self.mem_base[:, j] = rng.uniform(m_lo, m_hi, n) * MIB
            self.coupling[:, j] = coupling
        self.noise = rng.uniform(0.06, 0.2, (n, r))  # sigma of the log-normal noise per window
        self.burst_rate = rng.uniform(0.02, 0.3, (n, r))  # minutes-long bursts per hour (GC, cron, cache)
        self.leak = np.zeros((n, r))
        self.leak[:, 0] = np.where(rng.random(n) < [k.leaky for k in kinds], rng.uniform(0.4, 1.2, n), 0.0)
        self.leak_period_h = np.ones((n, r))
        self.leak_period_h[:, 0] = rng.uniform(6, 72, n)
        self.cache = rng.uniform(0.05, 0.5, (n, r))  # page cache / working set (memory/usage - working set)
        self.cpu_req, self.mem_req = np.zeros((n, r)), np.zeros((n, r))
        self.cpu_lim, self.mem_lim = np.zeros((n, r)), np.zeros((n, r))

        # scale the apps so that a node of the default shape is as requested as real ones are;
        # sized for 30 pods a node (fewer pods leave nodes emptier, more make each pod smaller)
        cpu90, mem90 = self._p90(rng)
        slot = self._requests(cpu90, mem90, seed)
        fill = max(pods_per_node, 30)
        scale = [t * a / max(s * fill, 1.0) for t, a, s in zip(RESERVATION_TARGET, _ALLOCATABLE, slot, strict=True)]
        self.cpu_base[:, 0] *= scale[0]
        self.mem_base[:, 0] *= scale[1]
        self._requests(cpu90 * scale[0], mem90 * scale[1], seed)

    def _p90(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """p90 of each app container's cpu and working set over a reference week."""
        hours = np.arange(0, 7 * 24, 0.25)
        load = _load(self, hours)
        noise = np.exp(self.noise[:, :1] * rng.standard_normal(load.shape))
        cpu = np.quantile(self.cpu_base[:, :1] * load * noise, 0.9, axis=1)
        period = self.leak_period_h[:, :1]
        growth = 1 + self.leak[:, :1] * ((hours[None, :] % period) / period)
        memory = self.mem_base[:, :1] * (1 + self.mem_coupling[:, None] * (load - 1)) * growth
        return cpu, np.quantile(memory, 0.9, axis=1)

    def _requests(self, cpu90: np.ndarray, mem90: np.ndarray, seed: int) -> tuple[float, float]:
        """Set requests and limits; returns the mean (cpu, memory) request of a pod slot."""
        n = len(self.workloads)
        rng = np.random.default_rng([seed, 0xB4D])
        factors = []
        for _ in range(2):  # cpu, memory: a shuffled mix, so that every seed has each category
            counts = [max(1, round(0.3 * n)), max(1, round(0.2 * n))]
            category = rng.permutation(np.repeat([0, 1, 2], [*counts, n - sum(counts)]))
            bounds = np.array([_CATEGORIES[c] for c in category])
            factors.append(rng.uniform(bounds[:, 0], bounds[:, 1]))
        self.cpu_req[:, 0] = _nice(cpu90 * factors[0])
        self.mem_req[:, 0] = _nice(mem90 * factors[1] / MIB) * MIB
        cpu_limited, mem_limited = rng.random(n) < 0.3, rng.random(n) < 0.5
        self.cpu_lim[:, 0] = np.where(cpu_limited, _nice(self.cpu_req[:, 0] * rng.uniform(1.5, 3.0, n)), 0)
        peak = self.mem_base[:, 0] * (1 + self.leak[:, 0]) * 1.3
        mem_limit = np.maximum(self.mem_req[:, 0] * rng.uniform(1.2, 2.0, n), peak)
        self.mem_lim[:, 0] = np.where(mem_limited, _nice(mem_limit / MIB) * MIB, 0)
        for j, name in enumerate(SIDECARS, start=1):
            _, _, _, (c_req, m_req), (c_lim, m_lim) = _SIDECAR[name]
            self.cpu_req[:, j], self.mem_req[:, j] = c_req, m_req * MIB
            self.cpu_lim[:, j], self.mem_lim[:, j] = c_lim, m_lim * MIB
        has = np.arange(self.cpu_req.shape[1])[None, :] < self.roles[:, None]
        deployment = np.array([not w.daemonset for w in self.workloads])
        daemons = len(DAEMONSETS)
        out = []
        for req in (self.cpu_req, self.mem_req):
            pod = (req * has).sum(1)
            out.append(float(pod[~deployment].sum() + pod[deployment].mean() * (30 - daemons)) / 30)
        return out[0], out[1]


def _nice(values: np.ndarray) -> np.ndarray:
    """Up to two significant digits, as people write requests (137 -> 140, 2340 -> 2400)."""
    values = np.maximum(values, 1.0)
    scale = 10.0 ** np.maximum(np.floor(np.log10(values)) - 1, 0)
    out: np.ndarray = np.ceil(values / scale - 1e-9) * scale
    return out


def _load(p: _Profiles, hours: np.ndarray) -> np.ndarray:
    """(workloads x times) load factor: 1 at the weekday peak, ``1 - amp`` at night, weekends
    lower, batch jobs ``job_mult`` while they run. ``hours`` since the epoch, UTC."""
    hod = hours[None, :] % 24
    shape = ((1 + np.cos(2 * np.pi * (hod - p.peak[:, None]) / 24)) / 2) ** 2
    day = (np.floor(hours / 24) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    week = np.where((day >= 5)[None, :], p.weekend[:, None], 1.0)
    load = 1 - p.amp[:, None] + p.amp[:, None] * shape * week
    period = np.where(p.job_period > 0, p.job_period, 1.0)[:, None]
    running = ((hours[None, :] - p.job_phase[:, None]) % period < p.job_len[:, None]) & (p.job_period > 0)[:, None]
    out: np.ndarray = load * np.where(running, p.job_mult[:, None], 1.0)
    return out


# -- cluster state ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Change:
    """Pods replaced at one window of an hour: ``slots`` now run the pods ``pods``."""

    at: int  # window index in the hour
    slots: np.ndarray
    pods: np.ndarray


class _Cluster:
    """Nodes, pod slots (one place on one node that always holds a pod: a pod that goes is
    replaced on the same node) and every pod that ever ran, as columns indexed by pod id."""

    def __init__(self, p: _Profiles, nodes: int, pods_per_node: int, seed: int, start_ms: int) -> None:
        self.p, self.seed, self.n_nodes = p, seed, nodes
        rng = np.random.default_rng([seed, 0x5107])
        n_ds = min(len(DAEMONSETS), pods_per_node)
        deployments = rng.choice(np.arange(len(DAEMONSETS), len(p.workloads)), (nodes, pods_per_node - n_ds))
        self.workload = np.concatenate([np.broadcast_to(np.arange(n_ds), (nodes, n_ds)), deployments], axis=1).ravel()
        self.node = np.repeat(np.arange(nodes), pods_per_node)
        self.n_slots = len(self.workload)
        # container slots: a pod's containers are consecutive
        roles = p.roles[self.workload]
        self.c_slot = np.repeat(np.arange(self.n_slots), roles)
        self.c_role = np.arange(len(self.c_slot)) - np.repeat(np.cumsum(roles) - roles, roles)
        self.c_workload, self.c_node = self.workload[self.c_slot], self.node[self.c_slot]
        self.level = rng.normal(0, 0.1, len(self.c_slot))  # slow wander of each container's load (log)
        self.sys_cpu = rng.uniform(150, 350, nodes)  # kubelet, runtime, OS: millicores
        self.sys_mem = rng.uniform(1.2, 2.5, nodes) * GIB

        self.namespaces = sorted({p.workloads[w].namespace for w in np.unique(self.workload).tolist()})
        ns_index = {ns: i for i, ns in enumerate(self.namespaces)}
        self.workload_ns = np.array([ns_index.get(w.namespace, -1) for w in p.workloads])
        self.container_names = sorted({name for names in p.names for name in names})
        self.name_index = np.zeros(p.cpu_base.shape, np.int32)
        for w, names in enumerate(p.names):
            self.name_index[w, : len(names)] = [self.container_names.index(name) for name in names]
        self.node_names = [node_name(i) for i in range(nodes)]
        shape = NodeShape(seed=seed, pods_per_node=pods_per_node)
        created = datetime.fromtimestamp(start_ms // 1000 - 60 * 86400, UTC)
        self.nodes_table = nodes_table(
            [node_object(i, shape=shape, port=10250, ready=True, created=created) for i in range(nodes)]
        )
        self.alloc_cpu = np.asarray(self.nodes_table.column("allocatable_cpu").to_numpy(), np.float64)
        self.alloc_mem = np.asarray(self.nodes_table.column("allocatable_memory").to_numpy(), np.float64)
        all_namespaces = sorted({w.namespace for w in p.workloads})
        self.namespaces_table = namespaces_table([namespace_object(ns, seed=seed) for ns in all_namespaces])

        self.revision = np.zeros(len(p.workloads), np.int64)
        self.pod_slot = np.zeros(0, np.int64)
        self.pod_start = np.zeros(0, np.int64)  # ms
        self.pod_jitter = np.zeros((0, 2))  # the pod's share of its workload's load (cpu, memory)
        self.pod_revision = np.zeros(0, np.int64)
        self.pod_names: list[str] = []
        self.rng = np.random.default_rng([seed, 0xC4A2])
        ages = self.rng.uniform(HOUR_MS, 20 * DAY_MS, self.n_slots).astype(np.int64)
        self.current = self._add(np.arange(self.n_slots), (start_ms - ages) // 1000 * 1000)
        self._tables: list[tuple[pa.Table, pa.Table]] = []
        self._converted = 0
        self.convert()

    # pods ---------------------------------------------------------------------------------------

    def _add(self, slots: np.ndarray, start_ms: np.ndarray) -> np.ndarray:
        """New pods in ``slots``; returns their ids."""
        ids = np.arange(len(self.pod_names), len(self.pod_names) + len(slots))
        # a bijection of the pod id (the live simulator's of the slot), so names never repeat
        suffixes = name_codes((ids + 1_234_567) * 7_368_787 % 27**5, 5)
        prefixes: dict[int, str] = {}  # workload -> "<app>-" or "<app>-<hash>-"
        for w, suffix in zip(self.workload[slots].tolist(), suffixes, strict=True):
            if w not in prefixes:
                wl = self.p.workloads[w]
                prefixes[w] = f"{wl.app}-" if wl.daemonset else f"{wl.app}-{self._hash(w)}-"
            self.pod_names.append(prefixes[w] + suffix)
        self.pod_slot = np.r_[self.pod_slot, slots]
        self.pod_start = np.r_[self.pod_start, start_ms]
        self.pod_jitter = np.r_[self.pod_jitter, self.rng.lognormal(0, 0.15, (len(slots), 2))]
        self.pod_revision = np.r_[self.pod_revision, self.revision[self.workload[slots]]]
        return ids

    def _hash(self, w: int) -> str:
        """pod-template-hash of the workload's current ReplicaSet (revision 0: the live simulator's)."""
        app, rev = self.p.workloads[w].app, int(self.revision[w])
        if rev == 0:
            return _rs_hash(self.seed, app)
        digest = hashlib.blake2b(f"{self.seed}/{app}/{rev}".encode(), digest_size=8).digest()
        return name_codes(np.array([int.from_bytes(digest, "little") % 27**10]), 10)[0]

    def plan(self, hours: list[np.ndarray], res_ms: int, rng: np.random.Generator, since: int) -> list[_Change | None]:
        """The pod changes of these hours (evictions and reschedules, rollouts), at one window of
        each hour that starts after ``since`` (ms); the new pods are created (and converted to
        tables, once for all) up front."""
        p = self.p
        out: list[_Change | None] = []
        for ts in hours:
            if int(ts[0]) <= since:
                out.append(None)
                continue
            at = int(rng.integers(0, len(ts)))
            span = len(ts) * res_ms / HOUR_MS
            replace = rng.random(self.n_slots) < -np.expm1(-span / p.lifetime_h[self.workload])
            rolled = (rng.random(len(p.workloads)) < -np.expm1(-span / p.rollout_h)) & np.isin(
                np.arange(len(p.workloads)), self.workload
            )
            self.revision[rolled] += 1
            slots = np.flatnonzero(replace | rolled[self.workload])
            if not len(slots):
                out.append(None)
                continue
            start = (int(ts[at]) - res_ms) // 1000 * 1000  # started during the window that ends at ts[at]
            out.append(_Change(at, slots, self._add(slots, np.full(len(slots), start))))
        self.convert()
        return out

    def convert(self) -> None:
        """The Kubernetes objects of the pods added since the last call, through the collector's
        own converter (one call for many pods: its cost is mostly per call)."""
        if self._converted == len(self.pod_names):
            return
        objects = [self._pod_object(i) for i in range(self._converted, len(self.pod_names))]
        self._tables.append(pods_tables(objects))
        self._converted = len(self.pod_names)

    def _pod_object(self, pod: int) -> dict[str, Any]:
        p, slot = self.p, int(self.pod_slot[pod])
        w = int(self.workload[slot])
        workload, name, rev = p.workloads[w], self.pod_names[pod], int(self.pod_revision[pod])
        app, owner = _owner(name, workload.namespace, self.seed)
        containers, statuses = [], []
        for k, cname in enumerate(p.names[w]):
            resources: dict[str, Any] = {
                "requests": {"cpu": f"{int(p.cpu_req[w, k])}m", "memory": f"{int(p.mem_req[w, k]) // MIB}Mi"}
            }
            limits = {}
            if p.cpu_lim[w, k]:
                limits["cpu"] = f"{int(p.cpu_lim[w, k])}m"
            if p.mem_lim[w, k]:
                limits["memory"] = f"{int(p.mem_lim[w, k]) // MIB}Mi"
            if limits:
                resources["limits"] = limits
            image = f"registry.example/{app}:1.{rev}" if k == 0 else f"registry.example/{cname}:2.0"
            containers.append({"name": cname, "image": image, "resources": resources})
            statuses.append({"name": cname, "restartCount": 0})
        labels = {"app": app, "app.kubernetes.io/name": app, "tier": "system" if workload.daemonset else "workload"}
        if not workload.daemonset:
            labels["pod-template-hash"] = owner["name"].rsplit("-", 1)[-1]
        start = datetime.fromtimestamp(int(self.pod_start[pod]) / 1000, UTC)
        return {
            "metadata": {
                "name": name,
                "namespace": workload.namespace,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"heapster-columnar/backfill/{self.seed}/{pod}")),
                "labels": labels,
                "ownerReferences": [owner],
            },
            "spec": {"nodeName": self.node_names[int(self.node[slot])], "containers": containers},
            "status": {
                "phase": "Running",
                "startTime": start.isoformat().replace("+00:00", "Z"),
                "containerStatuses": statuses,
            },
        }

    def all_pods(self) -> tuple[pa.Table, pa.Table]:
        """(pods, containers) tables of every pod so far, in pod id order."""
        if len(self._tables) > 1:
            pods = pa.concat_tables([t[0] for t in self._tables]).combine_chunks()
            containers = pa.concat_tables([t[1] for t in self._tables]).combine_chunks()
            self._tables = [(pods, containers)]
        return self._tables[0]

    def dimensions(self) -> Dimensions:
        """The tables the API would list now: the pods in the slots."""
        pods, containers = self.all_pods()
        alive = np.sort(self.current)
        counts = self.p.roles[self.workload[self.pod_slot]]
        first = np.cumsum(counts) - counts
        n = counts[alive]
        rows = np.repeat(first[alive] - (np.cumsum(n) - n), n) + np.arange(n.sum())
        return Dimensions(
            pods.take(pa.array(alive)), containers.take(pa.array(rows)), self.namespaces_table, self.nodes_table
        )


# -- one hour --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Series:
    """Series of one metric and entity type: ``values`` (series x windows), their labels (indices
    into the hour's sorted dictionaries, NULL for none) and the windows each one covers."""

    type: str
    values: np.ndarray
    labels: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # namespace, node, pod, container
    first: np.ndarray | None = None  # None: every series covers the whole hour
    stop: np.ndarray | None = None


@dataclass
class _Hour:
    """One hour's points, and what the day's rollups need of it in compact form."""

    table: pa.Table | None
    ts: np.ndarray
    col_pod: np.ndarray  # pod id of each container row
    col_slot: np.ndarray  # container slot of each container row
    first: np.ndarray
    stop: np.ndarray
    cpu: np.ndarray  # (containers x windows) int32 millicores
    ws_pages: np.ndarray  # int32
    node_cpu: np.ndarray  # (nodes x windows) int64
    node_ws: np.ndarray


def _group_sum(matrix: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Row sums of ``matrix`` by ``groups`` (0..n-1) -> (n x windows); exact for integers."""
    out = np.zeros((n, matrix.shape[1]), matrix.dtype)
    if len(groups) == 0:
        return out
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    out[g[starts]] = np.add.reduceat(matrix[order], starts, axis=0)
    return out


def _step_sum(
    values: np.ndarray, groups: np.ndarray, n: int, first: np.ndarray, stop: np.ndarray, windows: int
) -> np.ndarray:
    """Per group and window the sum of ``values`` of the rows covering that window: requests,
    constant while a pod runs, summed from its start and stop instead of a full matrix."""
    steps = np.zeros((n, windows + 1), np.int64)
    np.add.at(steps, (groups, first), values)
    np.add.at(steps, (groups, stop), -values)
    out: np.ndarray = np.cumsum(steps, axis=1)[:, :windows]
    return out


class _NullColumns:
    """``n`` nulls of a type, as slices of one array per type shared by every unused column of
    every hour (allocating and zeroing 13 of them an hour cost a tenth of the hour)."""

    def __init__(self) -> None:
        self._arrays: dict[pa.DataType, pa.Array] = {}

    def __call__(self, kind: pa.DataType, n: int) -> pa.Array:
        array = self._arrays.get(kind)
        if array is None or len(array) < n:
            array = self._arrays[kind] = pa.nulls(n + n // 8, kind)  # room for hours with churn
        return array.slice(0, n)


def _nulls(n: int) -> np.ndarray:
    return np.full(n, NULL, np.int64)


class _Generator:
    """An hour of points from the cluster's state; owns the random stream of the load."""

    def __init__(self, cluster: _Cluster, resolution_ms: int, seed: int) -> None:
        self.c, self.res = cluster, resolution_ms
        self.rng = np.random.default_rng([seed, 0x10AD])
        self._names = np.zeros(0, dtype="U1")
        self._nulls = _NullColumns()

    def pod_names(self) -> np.ndarray:
        """Every pod name as a numpy string array, indexed by pod id."""
        if len(self._names) < len(self.c.pod_names):
            self._names = np.concatenate([self._names, np.array(self.c.pod_names[len(self._names) :])])
        return self._names

    def hour(self, ts: np.ndarray, before: np.ndarray, change: _Change | None) -> _Hour:
        """Points of the windows ``ts`` (ends, ms): the pods ``before`` in every slot, and from
        window ``change.at`` the new pods of the changed slots."""
        c, p, rng = self.c, self.c.p, self.rng
        n_w, n_cs = len(ts), len(c.c_slot)
        # rows: every container slot's pod of the start of the hour, then the replacements; the
        # rows of one pod are consecutive
        col_slot, col_pod = np.arange(n_cs), before[c.c_slot]
        first, stop = np.zeros(n_cs, np.int64), np.full(n_cs, n_w, np.int64)
        if change is not None:
            replaced = np.zeros(c.n_slots, bool)
            replaced[change.slots] = True
            new = np.flatnonzero(replaced[c.c_slot])
            stop[new] = change.at
            new_pod = np.zeros(c.n_slots, np.int64)
            new_pod[change.slots] = change.pods
            col_slot, col_pod = np.r_[col_slot, new], np.r_[col_pod, new_pod[c.c_slot[new]]]
            first, stop = np.r_[first, np.full(len(new), change.at)], np.r_[stop, np.full(len(new), n_w)]
            keep = first < stop
            col_slot, col_pod, first, stop = col_slot[keep], col_pod[keep], first[keep], stop[keep]
        n_c = len(col_slot)
        wl, role = c.c_workload[col_slot], c.c_role[col_slot]
        windows = np.arange(n_w)
        partial = np.flatnonzero((first > 0) | (stop < n_w))
        dead = (windows[None, :] < first[partial, None]) | (windows[None, :] >= stop[partial, None])

        # the workload's load, with traffic spikes that hit all its pods at once
        load_w = _load(p, ts / HOUR_MS)
        span = n_w * self.res / HOUR_MS
        for w in np.flatnonzero(rng.random(len(p.workloads)) < -np.expm1(-p.spike_rate * span)).tolist():
            start = int(rng.integers(0, n_w))
            length = max(1, math.ceil(rng.uniform(5, 30) * 60_000 / self.res))
            load_w[w, start : start + length] *= rng.uniform(1.5, 3.0)
        load = load_w[wl]
        coupling = p.coupling[wl, role][:, None]

        # cpu: base x the pod's share x load x a slow wander x noise; bursts; throttled at the limit
        level_before = c.level.copy()
        c.level = 0.85 * c.level + rng.normal(0, 0.08, n_cs)
        frac = (windows + 1) / n_w
        wander = level_before[col_slot][:, None] + (c.level - level_before)[col_slot][:, None] * frac[None, :]
        z = rng.standard_normal((n_c, n_w))
        scale = p.cpu_base[wl, role] * c.pod_jitter[col_pod, 0]
        cpu = scale[:, None] * (1 - coupling + coupling * load) * np.exp(wander + p.noise[wl, role][:, None] * z)
        bursting = np.flatnonzero(rng.random(n_c) < -np.expm1(-p.burst_rate[wl, role] * span))
        if len(bursting):
            begin = rng.integers(0, n_w, len(bursting))
            minutes = np.ceil(rng.uniform(1, 15, len(bursting)) * 60_000 / self.res).astype(np.int64)
            on = (windows[None, :] >= begin[:, None]) & (windows[None, :] < (begin + minutes)[:, None])
            cpu[bursting] *= np.where(on, rng.uniform(1.5, 5.0, len(bursting))[:, None], 1.0)
        limited = np.flatnonzero(p.cpu_lim[wl, role] > 0)
        cpu[limited] = np.minimum(cpu[limited], p.cpu_lim[wl[limited], role[limited]][:, None])
        cpu_i = np.rint(cpu).astype(np.int64)

        # memory (pages): follows the load a little, warms up after a start, leaky apps grow
        # until a periodic drop; memory/usage adds page cache; both stay under a limit
        mem = (p.mem_base[wl, role] * c.pod_jitter[col_pod, 1])[:, None] * (
            (1 + p.mem_coupling[wl][:, None] * (load - 1)) * (1 + 0.01 * z)
        )
        young = np.flatnonzero(c.pod_start[col_pod] > ts[0] - 3 * HOUR_MS)
        age = (ts[None, :] - c.pod_start[col_pod[young]][:, None]) / HOUR_MS
        mem[young] *= 1 - 0.3 * np.exp(-2 * age)
        leaky = np.flatnonzero(p.leak[wl, role] > 0)
        age = (ts[None, :] - c.pod_start[col_pod[leaky]][:, None]) / HOUR_MS
        period = p.leak_period_h[wl[leaky], role[leaky]][:, None]
        mem[leaky] *= 1 + p.leak[wl[leaky], role[leaky]][:, None] * (age % period) / period
        pages = np.maximum(mem / PAGE, 1).astype(np.int64)
        used = pages + (pages * p.cache[wl, role][:, None]).astype(np.int64)
        limited = np.flatnonzero(p.mem_lim[wl, role] > 0)
        lim_pages = (p.mem_lim[wl[limited], role[limited]] // PAGE).astype(np.int64)[:, None]
        pages[limited] = np.minimum(pages[limited], lim_pages * 98 // 100)
        used[limited] = np.minimum(used[limited], lim_pages)
        for matrix in (cpu_i, pages, used):
            matrix[partial] = np.where(dead, 0, matrix[partial])
        ws, usage = pages * PAGE, used * PAGE

        # pods (consecutive rows), namespaces, nodes (+ system overhead), cluster
        pod_start = np.flatnonzero(np.r_[True, col_pod[1:] != col_pod[:-1]])
        pod_ids = col_pod[pod_start]
        n_pods, n_ns, n_nodes = len(pod_ids), len(c.namespaces), c.n_nodes
        pod_ns = c.workload_ns[wl[pod_start]]
        pod_node = c.c_node[col_slot[pod_start]]
        pods = {m: np.add.reduceat(v, pod_start, axis=0) for m, v in ((CPU, cpu_i), (WS, ws), (USAGE, usage))}
        sys_cpu = np.rint(c.sys_cpu[:, None] * np.exp(0.05 * rng.standard_normal((n_nodes, n_w)))).astype(np.int64)
        sys_pages = (c.sys_mem[:, None] * (1 + 0.01 * rng.standard_normal((n_nodes, n_w))) / PAGE).astype(np.int64)
        system = {CPU: sys_cpu, WS: sys_pages * PAGE, USAGE: sys_pages * 13 // 10 * PAGE}
        nodes = {m: _group_sum(v, pod_node, n_nodes) + system[m] for m, v in pods.items()}
        cpu_req, mem_req = p.cpu_req[wl, role].astype(np.int64), p.mem_req[wl, role].astype(np.int64)
        node_of = c.c_node[col_slot]
        alloc_cpu, alloc_mem = c.alloc_cpu[:, None], c.alloc_mem[:, None]
        ratios = {
            "cpu/node_allocatable": np.broadcast_to(alloc_cpu, (n_nodes, n_w)),
            "memory/node_allocatable": np.broadcast_to(alloc_mem, (n_nodes, n_w)),
            "cpu/node_utilization": nodes[CPU] / alloc_cpu,
            "memory/node_utilization": nodes[USAGE] / alloc_mem,
            "cpu/node_reservation": _step_sum(cpu_req, node_of, n_nodes, first, stop, n_w) / alloc_cpu,
            "memory/node_reservation": _step_sum(mem_req, node_of, n_nodes, first, stop, n_w) / alloc_mem,
        }

        # labels: every dictionary is sorted, so an index is the string's rank
        names = self.pod_names()[pod_ids]
        order = np.argsort(names, kind="stable")
        pod_rank = np.empty(n_pods, np.int64)
        pod_rank[order] = np.arange(n_pods)
        rank_of_row = np.repeat(pod_rank, np.diff(np.r_[pod_start, n_c]))
        col_labels = (c.workload_ns[wl], node_of, rank_of_row, c.name_index[wl, role].astype(np.int64))
        pod_labels = (pod_ns, pod_node, pod_rank, _nulls(n_pods))
        ns_labels = (np.arange(n_ns), _nulls(n_ns), _nulls(n_ns), _nulls(n_ns))
        node_labels = (_nulls(n_nodes), np.arange(n_nodes), _nulls(n_nodes), _nulls(n_nodes))
        cluster_labels = (_nulls(1), _nulls(1), _nulls(1), _nulls(1))
        series: dict[str, list[_Series]] = {m: [] for m in METRICS}
        for m, values in ((CPU, cpu_i), (WS, ws), (USAGE, usage)):
            series[m] += [
                _Series("pod_container", values, col_labels, first, stop),
                _Series("pod", pods[m], pod_labels, first[pod_start], stop[pod_start]),
                _Series("ns", _group_sum(pods[m], pod_ns, n_ns), ns_labels),
                _Series("node", nodes[m], node_labels),
                _Series("cluster", nodes[m].sum(0, keepdims=True), cluster_labels),
            ]
        for m, req in ((CPU_REQ, cpu_req), (MEM_REQ, mem_req)):
            ns = _step_sum(req, c.workload_ns[wl], n_ns, first, stop, n_w)
            series[m] += [_Series("ns", ns, ns_labels), _Series("cluster", ns.sum(0, keepdims=True), cluster_labels)]
        for m, values in ratios.items():
            series[m].append(_Series("node", values, node_labels))
        dictionaries = (c.namespaces, c.node_names, names[order].tolist(), c.container_names)
        return _Hour(
            _table(ts, series, dictionaries, self._nulls),
            ts,
            col_pod,
            col_slot,
            first,
            stop,
            cpu_i.astype(np.int32),
            pages.astype(np.int32),
            nodes[CPU],
            nodes[WS],
        )


def _spread(out: np.ndarray, values: np.ndarray, counts: np.ndarray | None, windows: int) -> None:
    """Each series' value once per window it covers (``counts``; None: every window)."""
    if counts is None:
        out.reshape(len(values), windows)[:] = values[:, None]
    else:
        out[:] = np.repeat(values, counts)


def _table(
    ts: np.ndarray, series: dict[str, list[_Series]], dictionaries: tuple[list[str], ...], nulls: _NullColumns
) -> pa.Table:
    """The hour's rows in the compactor's order (type, metric, namespace, node, pod, container,
    time; nulls last), written once into preallocated columns."""
    n_w = len(ts)
    windows = np.arange(n_w)
    blocks = []
    for type_name, metric in ((t, m) for t in TYPES for m in METRICS):  # the compactor's first keys
        parts = [s for s in series[metric] if s.type == type_name]
        if not parts:
            continue
        labels = [np.concatenate([s.labels[i] for s in parts]) for i in range(4)]
        order = np.lexsort(labels[::-1])
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        sizes = [len(s.values) for s in parts]
        offsets = np.r_[0, np.cumsum(sizes)]
        first = np.zeros(len(order), np.int64)
        stop = np.full(len(order), n_w, np.int64)
        for s, lo, hi in zip(parts, offsets[:-1], offsets[1:], strict=True):
            if s.first is not None and s.stop is not None:
                first[position[lo:hi]], stop[position[lo:hi]] = s.first, s.stop
        blocks.append((metric, parts, [label[order] for label in labels], position, offsets, first, stop))
    n = sum(int((b[6] - b[5]).sum()) for b in blocks)
    out_ts = np.empty(n, np.int64)
    out_type = np.empty(n, np.int8)
    out_metric = np.empty(n, np.int16)
    out_value = np.empty(n, np.float64)
    out_int = np.zeros(n, np.int64)
    int_valid = np.ones(n, bool)
    out_labels = [np.empty(n, np.int32) for _ in range(4)]
    label_valid = [np.empty(n, bool) for _ in range(4)]
    cursor = 0
    for metric, parts, labels, position, offsets, first, stop in blocks:
        k = len(position)
        dtype = parts[0].values.dtype
        matrix = np.empty((k, n_w), dtype)
        types = np.empty(k, np.int8)
        for s, lo, hi in zip(parts, offsets[:-1], offsets[1:], strict=True):
            matrix[position[lo:hi]] = s.values
            types[position[lo:hi]] = _TYPE[s.type]
        counts = stop - first
        size = int(counts.sum())
        rows = slice(cursor, cursor + size)
        whole = size == k * n_w  # nobody came or went this hour: every series has every window
        mask = None if whole else (windows[None, :] >= first[:, None]) & (windows[None, :] < stop[:, None])

        spread = counts if mask is not None else None
        picked = matrix.ravel() if mask is None else matrix[mask]
        if mask is None:
            out_ts[rows].reshape(k, n_w)[:] = ts[None, :]
        else:
            out_ts[rows] = np.broadcast_to(ts, (k, n_w))[mask]
        out_value[rows] = picked
        if dtype.kind == "f":
            int_valid[rows] = False
        else:
            out_int[rows] = picked
        _spread(out_type[rows], types, spread, n_w)
        out_metric[rows] = _METRIC[metric]
        for i, label in enumerate(labels):
            null = label == NULL
            _spread(out_labels[i][rows], np.where(null, 0, label), spread, n_w)
            _spread(label_valid[i][rows], ~null, spread, n_w)
        cursor += size

    def dictionary(indices: np.ndarray, values: list[str], valid: np.ndarray | None, kind: pa.DataType) -> pa.Array:
        bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
        nulls = 0 if valid is None else n - int(np.count_nonzero(valid))
        array = pa.Array.from_buffers(kind, n, [bitmap, pa.py_buffer(indices)], null_count=nulls)
        return pa.DictionaryArray.from_arrays(array, pa.array(values, pa.string()), safe=False)

    ns, node, pod, container = (
        dictionary(out_labels[i], dictionaries[i], label_valid[i], pa.int32()) for i in range(4)
    )
    columns = {
        "timestamp": pa.Array.from_buffers(TIME, n, [None, pa.py_buffer(out_ts)]),
        "type": dictionary(out_type, list(TYPES), None, pa.int8()),
        "metric": dictionary(out_metric, list(METRICS), None, pa.int16()),
        "value": pa.Array.from_buffers(pa.float64(), n, [None, pa.py_buffer(out_value)]),
        "value_int": pa.Array.from_buffers(
            pa.int64(),
            n,
            [pa.py_buffer(np.packbits(int_valid, bitorder="little")), pa.py_buffer(out_int)],
            null_count=n - int(np.count_nonzero(int_valid)),
        ),
        "nodename": node,
        "namespace_name": ns,
        "pod_name": pod,
        "container_name": container,
    }
    arrays = [columns[f.name] if f.name in columns else nulls(f.type, n) for f in POINTS_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=POINTS_SCHEMA)


# -- writing ---------------------------------------------------------------------------------------


class _Writers:
    """Writing off the generating thread. Parquet encoding is most of a backfill's cost and one
    file is encoded by one thread, so up to two hours are written at once (one for large
    clusters, whose hours are big); snapshots are written in order by a thread of their own,
    and a day's rollups by another while the next day is generated (one day at a time)."""

    def __init__(self, writer: HistoryWriter, out: str) -> None:
        self.writer, self.out = writer, out
        self.points = ThreadPoolExecutor(2, thread_name_prefix="backfill-points")
        self.snapshots = ThreadPoolExecutor(1, thread_name_prefix="backfill-snapshots")
        self.rollups = ThreadPoolExecutor(1, thread_name_prefix="backfill-rollups")
        self._points: list[Future[str]] = []
        self._snapshots: list[Future[list[str]]] = []
        self._rollup: Future[None] | None = None

    def hour(self, table: pa.Table) -> None:
        in_flight = 2 if table.num_rows <= 4_000_000 else 1
        while len(self._points) >= in_flight:
            self._points.pop(0).result()
        self._points.append(self.points.submit(self.writer.write_partition, table, presorted=True))

    def snapshot(self, dimensions: Dimensions, valid_from: datetime) -> None:
        self._snapshots.append(self.snapshots.submit(self.writer.write_dimensions, dimensions, valid_from))

    def day(self, day: date, compute: Callable[[], tuple[pl.DataFrame, pl.DataFrame]]) -> None:
        if self._rollup is not None:
            self._rollup.result()
        self._rollup = self.rollups.submit(lambda: write_rollups(self.out, day, *compute()))

    def close(self) -> int:
        """Wait for everything; returns the number of pods snapshots stored."""
        for future in self._points:
            future.result()
        if self._rollup is not None:
            self._rollup.result()
        stored = sum("pods" in future.result() for future in self._snapshots)
        for pool in (self.points, self.snapshots, self.rollups):
            pool.shutdown()
        return stored

    def abort(self) -> None:
        for pool in (self.points, self.snapshots, self.rollups):
            pool.shutdown(cancel_futures=True)


class _Day:
    """The points a day's rollups read (cpu and working set of containers and nodes), compact."""

    def __init__(self) -> None:
        self.hours: list[_Hour] = []

    def rollups_of(
        self, cluster: _Cluster, names: np.ndarray, step: float
    ) -> Callable[[], tuple[pl.DataFrame, pl.DataFrame]]:
        """The day's rollups, to compute on another thread: takes the pods known now (the
        cluster's tables grow while the next day is generated; its other arrays are fixed)."""
        tables = cluster.all_pods()
        return lambda: self.rollups(cluster, names, step, tables)

    def rollups(
        self, cluster: _Cluster, names: np.ndarray, step: float, tables: tuple[pa.Table, pa.Table]
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(container_days, node_days) by :func:`rollup_frames`, a few nodes at a time: rows are
        per container and per node, so batches of nodes give the rows of the whole day."""
        pods_table, containers_table = tables
        pods, containers, nodes = (pl.from_arrow(t) for t in (pods_table, containers_table, cluster.nodes_table))
        assert isinstance(pods, pl.DataFrame) and isinstance(containers, pl.DataFrame)
        assert isinstance(nodes, pl.DataFrame)
        windows = sum(len(h.ts) for h in self.hours)
        per_node = (len(cluster.c_slot) // cluster.n_nodes + 1) * windows * 2
        batch = max(1, ROLLUP_BATCH_ROWS // per_node)
        container_days, node_days = [], []
        for lo in range(0, cluster.n_nodes, batch):
            in_batch = cluster.node_names[lo : lo + batch]
            batch_pods = pods.filter(pl.col("node_name").is_in(in_batch))
            keys = batch_pods.select("namespace", pl.col("name").alias("pod_name"))
            rows = rollup_frames(
                self._points(cluster, names, np.arange(lo, min(lo + batch, cluster.n_nodes))),
                containers=containers.join(keys, on=["namespace", "pod_name"]).lazy(),
                pods=batch_pods.lazy(),
                nodes=nodes.filter(pl.col("name").is_in(in_batch)).lazy(),
                step=step,
            )
            container_days.append(rows[0])
            node_days.append(rows[1])
        order = ["day", "namespace_name", "pod_name", "container_name", "nodename"]
        return pl.concat(container_days).sort(order), pl.concat(node_days).sort(["day", "nodename"])

    def _points(self, cluster: _Cluster, names: np.ndarray, nodes: np.ndarray) -> pl.LazyFrame:
        """cpu/usage_rate and memory/working_set of the containers and nodes of ``nodes``, labels
        as String (what the store's reader gives: Categorical would cost a cast in every call)."""
        in_batch = np.zeros(cluster.n_nodes, bool)
        in_batch[nodes] = True
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("ts", "cpu", "ws", "pod", "slot")}
        for h in self.hours:
            rows = np.flatnonzero(in_batch[cluster.c_node[h.col_slot]])
            windows = np.arange(len(h.ts))[None, :]
            mask = (windows >= h.first[rows, None]) & (windows < h.stop[rows, None])
            counts = (h.stop - h.first)[rows]
            parts["ts"].append(np.broadcast_to(h.ts[None, :], mask.shape)[mask])
            parts["cpu"].append(h.cpu[rows][mask])
            parts["ws"].append(h.ws_pages[rows][mask])
            parts["pod"].append(np.repeat(h.col_pod[rows], counts))
            parts["slot"].append(np.repeat(h.col_slot[rows], counts))
        pod, slot = np.concatenate(parts["pod"]), np.concatenate(parts["slot"])
        pod_ids = np.unique(np.concatenate([np.unique(h.col_pod) for h in self.hours]))
        lookup = np.zeros(int(pod_ids[-1]) + 1 if len(pod_ids) else 1, np.int64)
        lookup[pod_ids] = np.arange(len(pod_ids))
        workload, role = cluster.c_workload[slot], cluster.c_role[slot]

        def strings(values: list[str], index: np.ndarray) -> pl.Series:
            return pl.Series(values=values, dtype=pl.String).gather(index)

        labels = pl.DataFrame(
            {
                "timestamp": pl.Series(np.concatenate(parts["ts"])).cast(pl.Datetime("ms", "UTC")),
                "namespace_name": strings(cluster.namespaces, cluster.workload_ns[workload]),
                "pod_name": strings(names[pod_ids].tolist(), lookup[pod]),
                "container_name": strings(cluster.container_names, cluster.name_index[workload, role]),
                "nodename": strings(cluster.node_names, cluster.c_node[slot]),
            }
        ).lazy()
        node_labels = pl.DataFrame(
            {
                "timestamp": pl.Series(np.concatenate([np.tile(h.ts, len(nodes)) for h in self.hours])).cast(
                    pl.Datetime("ms", "UTC")
                ),
                "nodename": strings(
                    cluster.node_names, np.concatenate([np.repeat(nodes, len(h.ts)) for h in self.hours])
                ),
            }
        ).lazy()
        none = pl.lit(None, pl.String)
        frames = [
            labels.with_columns(
                type=pl.lit("pod_container"),
                metric=pl.lit(CPU),
                value=pl.Series(np.concatenate(parts["cpu"]), dtype=pl.Float64),
            ),
            labels.with_columns(
                type=pl.lit("pod_container"),
                metric=pl.lit(WS),
                value=pl.Series(np.concatenate(parts["ws"]).astype(np.float64) * PAGE),
            ),
        ]
        for metric, key in ((CPU, "node_cpu"), (WS, "node_ws")):
            values = np.concatenate([getattr(h, key)[nodes].ravel() for h in self.hours]).astype(np.float64)
            frames.append(
                node_labels.with_columns(
                    type=pl.lit("node"),
                    metric=pl.lit(metric),
                    value=pl.Series(values),
                    namespace_name=none,
                    pod_name=none,
                    container_name=none,
                )
            )
        columns = ["timestamp", "type", "metric", "namespace_name", "pod_name", "container_name", "nodename", "value"]
        return pl.concat([f.select(columns) for f in frames])


# -- the command -----------------------------------------------------------------------------------


def _check(nodes: int, pods_per_node: int, duration: timedelta, resolution: timedelta, seed: int) -> None:
    if nodes < 1:
        raise ConfigError(f"--nodes {nodes}: at least 1")
    if not 1 <= pods_per_node <= 500:
        raise ConfigError(f"--pods-per-node {pods_per_node}: 1 to 500")
    if seed < 0:
        raise ConfigError(f"--seed {seed}: 0 or more")
    if resolution < timedelta(seconds=1) or resolution % timedelta(milliseconds=1):
        raise ConfigError(f"--resolution {resolution.total_seconds():g}s: whole milliseconds, at least 1 s")
    if resolution > timedelta(days=1):
        raise ConfigError(f"--resolution {resolution.total_seconds():g}s: at most a day")
    if duration < resolution:
        raise ConfigError(f"--backfill {duration}: shorter than one window of --resolution ({resolution})")


def backfill(
    out: str,
    *,
    nodes: int = 20,
    pods_per_node: int = 30,
    duration: timedelta = timedelta(days=30),
    resolution: timedelta = timedelta(seconds=60),
    end: datetime | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> BackfillReport:
    """Write ``duration`` of history whose last window ends at ``end`` (default: the last whole
    hour) into a new store at ``out`` (a path or URL): points every ``resolution``, a dimension
    snapshot at every pod change, the rollups of each closed UTC day (every day before the newest
    window's, the first one too even if it starts after midnight: what ``materialize`` would
    store). ``progress`` wraps the
    iteration over days (a progress bar). ConfigError for bad arguments or a store with points."""
    _check(nodes, pods_per_node, duration, resolution, seed)
    started = time.perf_counter()
    end = default_end() if end is None else (end.replace(tzinfo=UTC) if end.tzinfo is None else end)
    res_ms = resolution // timedelta(milliseconds=1)
    count = duration // resolution
    end_ms = round(end.timestamp() * 1000)
    stamps = end_ms - res_ms * np.arange(count - 1, -1, -1, dtype=np.int64)
    first_ms, last_ms = int(stamps[0]), int(stamps[-1])
    writer = HistoryWriter(out)
    selector = pafs.FileSelector(writer.store.path(POINTS), recursive=True, allow_not_found=True)
    if any(i.base_name.endswith(".parquet") for i in writer.store.fs.get_file_info(selector)):
        raise ConfigError(f"--out {out}: the store already holds points (backfill writes a new one)")

    cluster = _Cluster(_Profiles(seed, pods_per_node), nodes, pods_per_node, seed, first_ms)
    generator = _Generator(cluster, res_ms, seed)
    churn = np.random.default_rng([seed, 0xC0DE])
    writer.write_dimensions(cluster.dimensions(), _when(first_ms))
    snapshots = 1
    days: dict[date, list[np.ndarray]] = {}
    for chunk in np.split(stamps, np.flatnonzero(np.diff(stamps // HOUR_MS)) + 1):
        days.setdefault(_when(int(chunk[0])).date(), []).append(chunk)
    rows, rollup_days = 0, []
    writers = _Writers(writer, out)
    try:
        for day in (progress or _all)(list(days)):
            hours = days[day]
            changes = cluster.plan(hours, res_ms, churn, since=first_ms)  # the first hour: initial pods
            midnight = round(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
            closed = midnight + DAY_MS <= last_ms  # the newest window's day may still grow: never stored
            buffer = _Day()
            for ts, change in zip(hours, changes, strict=True):
                before = cluster.current.copy()
                if change is not None:
                    cluster.current[change.slots] = change.pods
                    writers.snapshot(cluster.dimensions(), _when(int(ts[change.at])))
                hour = generator.hour(ts, before, change)
                assert hour.table is not None
                rows += hour.table.num_rows
                writers.hour(hour.table)
                hour.table = None
                if closed:
                    buffer.hours.append(hour)
            if closed:
                writers.day(day, buffer.rollups_of(cluster, generator.pod_names(), resolution.total_seconds()))
                rollup_days.append(day)
        snapshots += writers.close()
    except BaseException:
        writers.abort()
        raise
    return BackfillReport(
        location=out,
        first=_when(first_ms),
        last=_when(last_ms),
        resolution=resolution,
        windows=int(count),
        rows=rows,
        nodes=nodes,
        pods=len(cluster.pod_names),
        snapshots=snapshots,
        rollup_days=tuple(rollup_days),
        seconds=time.perf_counter() - started,
    )


def _all(days: Iterable[date]) -> Iterable[date]:
    return days


def _when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
