"""Synthetic kubelet ``/stats/summary`` documents shaped like k8s 1.28 + containerd, for scale tests.

The real payloads we have stop at 18 pods per node (samples/kubelet/SOURCES.md), so load tests need
generated ones. A document is a pure function of ``(shape, node_index, at)``: pods, names, start times
and rates come from an RNG seeded with ``(shape.seed, node_index)`` only, so documents for one node at
two times describe the same pods, and ``at`` only moves the clock (plus a slow wave on memory).

Counter rule, which tests and rate checks rely on: every cumulative counter is the entity's integer
per-second rate times the whole seconds from its ``startTime`` to its block's ``time``. For CPU the rate
is published, so ``usageCoreNanoSeconds == usageNanoCores * (cpu.time - startTime)``. All cpu, memory,
swap and fs blocks of one document carry the node sample time ``floor(at) - lag`` (``lag`` fixed per
node, at most ``max_lag_seconds``); a pod's ``network.time`` is a further fixed 0-5 s older. A parent's
rate is at least the sum of its children's and it starts no later than they do, so pod >= sum of its
containers and node >= the "pods" system container >= sum of pods, for counters and gauges alike.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np

from heapster_columnar.simulator.spec import node_name

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a test dependency, the stdlib is the fallback
    orjson = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_SHAPE",
    "MARK_BASE",
    "TIME_MARK",
    "MarkedDocument",
    "NodeShape",
    "cluster_documents",
    "marked_document",
    "summary_bytes",
    "summary_document",
]

MIB = 1 << 20
GIB = 1 << 30
MAX_SPAN = timedelta(days=5 * 365)  # with <= 64 cores every counter then stays below 2^63
NODE_INTERFACES = ("eth0", "tunl0", "ip6tnl0", "cni0", "flannel.1", "eth1", "docker0", "vxlan.calico")
POD_INTERFACES = ("eth0", "tunl0", "ip6tnl0")  # idle tunnel devices show up in every netns (minikube 1.28)
IDLE_INTERFACES = frozenset({"tunl0", "ip6tnl0"})
SYSTEM_CONTAINERS = ("pods", "kubelet", "runtime", "misc")
# Extra volumes after the service-account token; index 0 (`data`) is a PVC, the others use the nodefs.
EXTRA_VOLUMES = ("data", "config", "tmp-dir", "cache")
DAEMONSETS = (("kube-system", "kube-proxy"), ("kube-system", "calico-node"), ("monitoring", "node-exporter"))
_DEPLOYMENTS = """default/web payments/payments-api payments/ledger-worker checkout/checkout checkout/cart
    catalog/catalog-api search/search-indexer auth/auth-gateway auth/keycloak kube-system/coredns
    kube-system/metrics-server monitoring/prometheus-adapter ingress-nginx/ingress-nginx-controller
    cert-manager/cert-manager data-pipeline/spark-executor"""
APPS = tuple(tuple(pair.split("/")) for pair in _DEPLOYMENTS.split())  # (namespace, Deployment)
SIDECARS = ("istio-proxy", "config-reloader", "log-shipper")
# Node daemons: CPU millicores (lo, hi) and working set MiB (lo, hi), from the real samples' ranges.
DAEMONS = {"kubelet": (20, 80, 40, 120), "runtime": (10, 50, 50, 300), "misc": (5, 30, 100, 400)}
_ALPHABET = np.array(list("bcdfghjklmnpqrstvwxz2456789"))  # Kubernetes' rand.String alphabet
_NAME_SPACE = len(_ALPHABET) ** 5
# Marks for templates (see _Clock): real counters stay below 2^63 but also below MARK_BASE (a node
# has at most 64 cores for five years), and a time mark has an RFC 3339 time's 20 characters.
MARK_BASE = 8_000_000_000_000_000_000
TIME_MARK = "~{:019d}"


@dataclass(frozen=True, kw_only=True)
class NodeShape:
    """What every simulated node looks like; ranges are inclusive, all randomness comes from ``seed``."""

    pods_per_node: int = 30
    containers_per_pod: tuple[int, int] = (1, 3)  # drawn with weight 1/k: most pods have one container
    volumes_per_pod: tuple[int, int] = (1, 3)
    interfaces_per_node: int = 3
    interfaces_per_pod: int = 1
    system_containers: tuple[str, ...] = ("pods", "kubelet", "runtime")  # containerd on systemd; add "misc"
    node_cores: int = 8
    node_memory_bytes: int = 32 * GIB
    node_disk_bytes: int = 100 * GIB
    max_lag_seconds: int = 10
    epoch: datetime = datetime(2024, 1, 1, tzinfo=UTC)  # every start time lies before this
    seed: int = 0
    memory_wave: bool = True  # a slow ±5 % wave on memory; the live simulator turns it off

    def __post_init__(self) -> None:
        (c_lo, c_hi), (v_lo, v_hi), n_if, p_if = (
            self.containers_per_pod,
            self.volumes_per_pod,
            self.interfaces_per_node,
            self.interfaces_per_pod,
        )
        rules = {
            "1 <= containers_per_pod <= 4": 1 <= c_lo <= c_hi <= 1 + len(SIDECARS),
            "1 <= volumes_per_pod <= 5": 1 <= v_lo <= v_hi <= 1 + len(EXTRA_VOLUMES),
            "1 <= interfaces_per_node <= 8, 1 <= interfaces_per_pod <= 3": 1 <= n_if <= 8 and 1 <= p_if <= 3,
            "1 <= node_cores <= 64 (keeps counters below 2^63)": 1 <= self.node_cores <= 64,
            "memory >= 4 GiB, disk >= 50 GiB": self.node_memory_bytes >= 4 * GIB and self.node_disk_bytes >= 50 * GIB,
            f"system_containers among {SYSTEM_CONTAINERS}": set(self.system_containers) <= set(SYSTEM_CONTAINERS),
            "0 <= pods_per_node <= 500": 0 <= self.pods_per_node <= 500,
            "seed >= 0, 0 <= max_lag_seconds <= 3600": self.seed >= 0 and 0 <= self.max_lag_seconds <= 3600,
            "epoch is timezone-aware": self.epoch.tzinfo is not None,
        }
        broken = [rule for rule, ok in rules.items() if not ok]
        if broken:
            raise ValueError(f"invalid NodeShape: {'; '.join(broken)}")


DEFAULT_SHAPE = NodeShape()


def _mix(rng: np.random.Generator, bounds: tuple[int, int], n: int, *, skew: bool) -> np.ndarray:
    """Counts in ``bounds`` (weight 1/k if ``skew``), with every node getting the same mix, shuffled.

    Stratifying keeps every node's document size within a few KB of the others instead of drifting
    with how many multi-container pods a node happened to draw.
    """
    sizes = np.arange(bounds[0], bounds[1] + 1)
    weights = 1 / sizes if skew else np.ones(len(sizes))
    quota = np.diff(np.round(np.cumsum(weights) / weights.sum() * n).astype(np.int64), prepend=0)
    return rng.permutation(np.repeat(sizes, quota))


@lru_cache(maxsize=65_536)  # a document repeats a handful of instants hundreds of times
def rfc3339(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def name_codes(values: np.ndarray, width: int) -> list[str]:
    """Integers spelled in Kubernetes' name alphabet, so generated suffixes look like real ones."""
    digits = (values.astype(np.int64)[:, None] // len(_ALPHABET) ** np.arange(width)) % len(_ALPHABET)
    return ["".join(row) for row in _ALPHABET[digits].tolist()]


@lru_cache(maxsize=1024)
def _rs_hash(seed: int, app: str) -> str:
    """ReplicaSet hash shared by one Deployment's pods on every node, as in a real cluster."""
    digest = hashlib.blake2b(f"{seed}/{app}".encode(), digest_size=8).digest()
    return name_codes(np.array([int.from_bytes(digest, "little") % len(_ALPHABET) ** 10]), 10)[0]


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    """Random (version 4) pod UIDs, drawn from the node's RNG so they repeat with the seed."""
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hx = raw.tobytes().hex()
    return [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}" for h in (hx[32 * i : 32 * i + 32] for i in range(n))]


def _fs(t: str, available: int, capacity: int, used: int, free: int, inodes: int, inodes_used: int) -> dict[str, Any]:
    """FsStats, keys in the kubelet's order."""
    return {
        "time": t,
        "availableBytes": available,
        "capacityBytes": capacity,
        "usedBytes": used,
        "inodesFree": free,
        "inodes": inodes,
        "inodesUsed": inodes_used,
    }


def _memory(t: str, usage: int, ws: int, rss: int, faults: int, major: int, limit: int = 0) -> dict[str, Any]:
    """MemoryStats; ``availableBytes`` only when there is a limit, as kubelets do."""
    memory = {
        "time": t,
        "availableBytes": limit - ws,
        "usageBytes": usage,
        "workingSetBytes": ws,
        "rssBytes": rss,
        "pageFaults": faults,
        "majorPageFaults": major,
    }
    if not limit:
        del memory["availableBytes"]
    return memory


def _network(t: str, names: Iterable[str], counters: list[list[int]]) -> dict[str, Any]:
    """Default interface inline (always the first) plus the full ``interfaces`` list."""
    interfaces = [
        {"name": n, "rxBytes": rx, "rxErrors": rxe, "txBytes": tx, "txErrors": txe}
        for n, (rx, rxe, tx, txe) in zip(names, counters, strict=False)
    ]
    return {"time": t, **interfaces[0], "interfaces": interfaces}


def _seconds(at: datetime, shape: NodeShape) -> int:
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if not shape.epoch <= at <= shape.epoch + MAX_SPAN:
        raise ValueError(f"`at` must lie within five years after shape.epoch ({shape.epoch.isoformat()})")
    return math.floor(at.timestamp())


class _Clock:
    """How the values that move with time are written: plainly, or as marks for a template.

    Plain: a counter is ``rate * elapsed`` and a time its RFC 3339 string. Marking (``marks`` set):
    each counter becomes a unique 19-digit placeholder ``MARK_BASE + id`` and each distinct time a
    ``TIME_MARK`` string, with the value at ``ts`` and the per-second rate kept beside them, so a
    template comes out of a single render instead of two renders diffed.
    """

    def __init__(self, marks: bool) -> None:
        self.marks = marks
        self.bases: list[np.ndarray] = []
        self.rates: list[np.ndarray] = []
        self.count = 0
        self.times: dict[int, str] = {}

    def counter(self, rate: np.ndarray | int, elapsed: np.ndarray | int) -> np.ndarray:
        """``rate * elapsed`` where ``elapsed`` grows by one each second."""
        value = np.asarray(rate * elapsed, dtype=np.int64)
        if not self.marks:
            return value
        self.bases.append(value.ravel())
        self.rates.append(np.broadcast_to(np.asarray(rate, dtype=np.int64), value.shape).ravel())
        ids = MARK_BASE + self.count + np.arange(value.size, dtype=np.int64).reshape(value.shape)
        self.count += value.size
        return ids

    def stamp(self, seconds: int) -> str:
        if not self.marks:
            return rfc3339(seconds)
        return self.times.setdefault(seconds, TIME_MARK.format(len(self.times)))


@dataclass(frozen=True, slots=True)
class MarkedDocument:
    """A Summary document whose moving values are marks (see ``_Clock``), for ``SummaryTemplate``."""

    document: dict[str, Any]
    bases: np.ndarray  # counter value at the render's sample time, by mark id
    rates: np.ndarray  # its change per second, by mark id
    times: np.ndarray  # epoch seconds, by time mark id


def summary_document(node_index: int, *, at: datetime, shape: NodeShape = DEFAULT_SHAPE) -> dict[str, Any]:
    """The Summary document node ``node-{node_index:05d}`` serves at ``at`` (see the module rule)."""
    return _document(node_index, at, shape, _Clock(marks=False))


def marked_document(node_index: int, *, at: datetime, shape: NodeShape = DEFAULT_SHAPE) -> MarkedDocument:
    """``summary_document`` with every counter and sample time marked, for building a template."""
    clock = _Clock(marks=True)
    document = _document(node_index, at, shape, clock)
    bases = np.concatenate(clock.bases) if clock.bases else np.zeros(0, np.int64)
    rates = np.concatenate(clock.rates) if clock.rates else np.zeros(0, np.int64)
    return MarkedDocument(document, bases, rates, np.array(list(clock.times), dtype=np.int64))


def _document(node_index: int, at: datetime, shape: NodeShape, clock: _Clock) -> dict[str, Any]:
    if node_index < 0:
        raise ValueError("node_index must be >= 0")
    now = _seconds(at, shape)
    rng = np.random.default_rng([shape.seed, node_index])
    epoch, n_pods = math.floor(shape.epoch.timestamp()), shape.pods_per_node
    ts = now - int(rng.integers(0, shape.max_lag_seconds + 1))
    t = clock.stamp(ts)

    # Start times: node, its daemons, pods, containers; a parent never starts after its children.
    node_start = epoch - int(rng.integers(86_400, 60 * 86_400))
    sys_start = dict(zip(SYSTEM_CONTAINERS, (node_start + rng.integers(5, 60, 4)).tolist(), strict=True))
    kubelet = sys_start["pods"] = sys_start["kubelet"]
    n_ds = min(len(DAEMONSETS), n_pods)
    latest = epoch - shape.max_lag_seconds - 600
    pod_start = np.concatenate(
        [kubelet + rng.integers(10, 120, n_ds), rng.integers(kubelet + 120, latest, n_pods - n_ds)]
    )
    n_cont = _mix(rng, shape.containers_per_pod, n_pods, skew=True)
    owner = np.repeat(np.arange(n_pods), n_cont)
    n_c = len(owner)
    c_start = pod_start[owner] + rng.integers(0, 60, n_c)
    c_elapsed = ts - c_start

    def per_pod(values: np.ndarray) -> np.ndarray:
        return np.bincount(owner, weights=values, minlength=n_pods).astype(np.int64)

    # Containers: lognormal CPU and memory (many idle, a few heavy), capped to fit the node.
    pod_cpu_extra = rng.integers(100_000, 1_000_000, n_pods)
    c_cpu = np.clip(rng.lognormal(math.log(20e6), 1.2, n_c), 5e5, 2e9)
    fit = min(1.0, max(0.01, (0.6e9 * shape.node_cores - pod_cpu_extra.sum()) / max(c_cpu.sum(), 1.0)))
    c_cpu = (c_cpu * fit).astype(np.int64)
    c_ws = np.clip(rng.lognormal(math.log(60 * MIB), 1.0, n_c), MIB, 4 * GIB)
    c_ws *= min(1.0, 0.45 * shape.node_memory_bytes / max(1.4 * c_ws.sum(), 1.0))
    wave = 1 + 0.05 * np.sin(2 * np.pi * ts / rng.integers(1800, 7200, n_c) + rng.uniform(0, 2 * np.pi, n_c))
    if not shape.memory_wave:
        wave = np.ones(n_c)
    usage_f, rss_f = rng.uniform(1.0, 1.3, n_c), rng.uniform(0.6, 1.0, n_c)
    ws, usage, rss = ((c_ws * f * wave).astype(np.int64) for f in (1.0, usage_f, rss_f))
    limit = np.where(rng.random(n_c) < 0.5, np.ceil(c_ws * rng.uniform(2, 5, n_c) / MIB) * MIB, 0).astype(np.int64)
    c_pf, c_major = rng.integers(0, 50, n_c), (rng.random(n_c) < 0.05).astype(np.int64)
    rootfs = np.stack([rng.integers(1, 12_800, n_c) * 4096, rng.integers(1, 200, n_c)], axis=1)
    logs = np.stack([rng.integers(1, 5_000, n_c) * 4096, rng.integers(1, 6, n_c)], axis=1)
    procs = rng.integers(1, 20, n_c)
    counters = [clock.counter(c, c_elapsed) for c in (c_cpu, c_pf, c_major)]
    containers = np.stack([c_start, c_cpu, usage, ws, rss, limit, *counters, *rootfs.T, *logs.T], axis=1).tolist()

    # Pods: sums of their containers plus the sandbox's own overhead.
    extra_ws = rng.integers(200_000, 1_000_000, n_pods)
    pod_cpu, pod_ws, pod_usage = per_pod(c_cpu) + pod_cpu_extra, per_pod(ws) + extra_ws, per_pod(usage) + 2 * extra_ws
    pod_rss, pod_major = per_pod(rss) + extra_ws // 2, per_pod(c_major)
    pod_pf = per_pod(c_pf) + rng.integers(0, 5, n_pods)
    pod_limit = np.where(per_pod(limit > 0) == n_cont, per_pod(limit) + 4 * MIB, 0)
    net_lag = rng.integers(0, 6, n_pods)
    pod_net = np.zeros((n_pods, shape.interfaces_per_pod, 4), np.int64)  # rx bytes, rx errors, tx bytes, tx errors /s
    pod_net[:, 0, 0] = np.clip(rng.lognormal(math.log(5_000), 1.5, n_pods), 0, 50e6)
    pod_net[:, 0, 2] = np.clip(rng.lognormal(math.log(4_000), 1.5, n_pods), 0, 50e6)
    pod_net[:, 0, 1::2] = rng.random((n_pods, 2)) < 0.01  # a rare flaky link: one error a second
    pod_net_counters = clock.counter(pod_net, (ts - net_lag - pod_start)[:, None, None]).tolist()

    # Volumes: the projected service-account token (tmpfs), then PVC / configMap / emptyDir extras.
    allocatable = shape.node_memory_bytes - shape.node_memory_bytes // 20
    n_extra = _mix(rng, shape.volumes_per_pod, n_pods, skew=False) - 1
    kinds = (rng.integers(0, len(EXTRA_VOLUMES), n_pods)[:, None] + np.arange(len(EXTRA_VOLUMES))) % len(EXTRA_VOLUMES)
    size = (n_pods, len(EXTRA_VOLUMES))
    vol = np.stack([rng.integers(1, 25_000, size) * 4096, rng.integers(2, 500, size)], axis=2)  # bytes, inodes
    on_nodefs = (np.arange(len(EXTRA_VOLUMES)) < n_extra[:, None]) & (kinds != 0)
    pod_eph = np.stack([per_pod(col) for col in (rootfs + logs).T], axis=1) + (
        np.take_along_axis(vol, kinds[:, :, None], 1) * on_nodefs[:, :, None]
    ).sum(1)
    pvc_capacity = (rng.choice([10, 20, 50], n_pods) * GIB).tolist()
    api_suffix = name_codes(rng.integers(0, _NAME_SPACE, n_pods), 5)
    # A bijection of the global pod index, so pod names never collide across the cluster.
    pod_suffix = name_codes((np.arange(n_pods) + node_index * n_pods + 1_234_567) * 7_368_787 % _NAME_SPACE, 5)
    apps = rng.integers(0, len(APPS), n_pods).tolist()
    uids = _uuids(rng, n_pods)

    # System containers, name -> (cpu rate, usage, working set, rss, page-fault rate, major-fault rate,
    # memory limit); "pods" is the kubepods cgroup, so it holds every pod plus a little of its own.
    ranges = np.array(list(DAEMONS.values()))
    cpus, wss = rng.integers(ranges[:, 0], ranges[:, 1]) * 1_000_000, rng.integers(ranges[:, 2], ranges[:, 3]) * MIB
    faults = rng.integers(1, 30, len(DAEMONS)).tolist()
    daemons: dict[str, tuple[int, ...]] = {
        name: (c, w + w // 16, w, w * 7 // 8, f, 0, 0)
        for name, c, w, f in zip(DAEMONS, cpus.tolist(), wss.tolist(), faults, strict=True)
    }
    kube_ws = int(rng.integers(1, 20)) * MIB
    own = (int(rng.integers(1, 10)) * 1_000_000, kube_ws, kube_ws, 0, int(rng.integers(0, 10)), 0, allocatable)
    pod_sums = [int(x.sum()) for x in (pod_cpu, pod_usage, pod_ws, pod_rss, pod_pf, pod_major)] + [0]
    daemons["pods"] = tuple(a + b for a, b in zip(pod_sums, own, strict=True))

    # Node filesystem (images share it, as with containerd's default root): OS + images + pods' writes.
    images = int(rng.integers(2, 15)) * GIB + int(rng.integers(0, 1 << 18)) * 4096
    image_inodes, base_inodes = int(rng.integers(40_000, 120_000)), int(rng.integers(150_000, 400_000))
    fs_used = int(rng.integers(5, 15)) * GIB + images + int(pod_eph[:, 0].sum())
    fs_inodes_used = base_inodes + image_inodes + int(pod_eph[:, 1].sum())
    cap, inodes = shape.node_disk_bytes, shape.node_disk_bytes // 16_384
    avail, free = max(0, cap - fs_used - cap // 20), max(0, inodes - fs_inodes_used)

    def nodefs(used: int, inodes_used: int) -> dict[str, Any]:
        return _fs(t, avail, cap, used, free, inodes, inodes_used)

    token_inodes = allocatable // 8192
    token = _fs(t, allocatable - 12_288, allocatable, 12_288, token_inodes - 9, token_inodes, 9)
    counters = [clock.counter(c, ts - pod_start) for c in (pod_cpu, pod_pf, pod_major)]
    columns = [pod_start, pod_cpu, pod_usage, pod_ws, pod_rss, pod_limit, *counters, net_lag, per_pod(procs), n_extra]
    pod_rows = np.stack([*columns, *pod_eph.T], axis=1).tolist()
    pod_names = POD_INTERFACES[: shape.interfaces_per_pod]
    vol_rows, kinds_l = vol.tolist(), kinds.tolist()
    pods, ci = [], 0
    for p, (start, cpu, pusage, pws, prss, plimit, cpu_ns, pf, major, lag, nproc, nx, eph, eph_in) in enumerate(
        pod_rows
    ):
        namespace, app = DAEMONSETS[p] if p < n_ds else APPS[apps[p]]
        name = f"{app}-{pod_suffix[p]}" if p < n_ds else f"{app}-{_rs_hash(shape.seed, app)}-{pod_suffix[p]}"
        cs = []
        for k, (cstart, ccpu, cu, cws, crss, clim, ccpu_ns, cpf, cmaj, ru, ri, lu, li) in enumerate(
            containers[ci : ci + int(n_cont[p])]
        ):
            cs.append(
                {
                    "name": app if k == 0 else SIDECARS[k - 1],
                    "startTime": rfc3339(cstart),
                    "cpu": {"time": t, "usageNanoCores": ccpu, "usageCoreNanoSeconds": ccpu_ns},
                    "memory": _memory(t, cu, cws, crss, cpf, cmaj, clim),
                    "rootfs": nodefs(ru, ri),
                    "logs": nodefs(lu, li),
                    "swap": {"time": t, "swapAvailableBytes": 0, "swapUsageBytes": 0},
                }
            )
        ci += len(cs)
        volumes = [token | {"name": f"kube-api-access-{api_suffix[p]}"}]
        for kind in kinds_l[p][:nx]:
            used, vin = vol_rows[p][kind]
            if kind:
                volumes.append(nodefs(used, vin) | {"name": EXTRA_VOLUMES[kind]})
            else:
                pvc, pvc_inodes = pvc_capacity[p], pvc_capacity[p] // 16_384
                pvc_ref = {"name": f"data-{name}", "namespace": namespace}
                pvc_fs = _fs(t, pvc - used, pvc, used, pvc_inodes - vin, pvc_inodes, vin)
                volumes.append(pvc_fs | {"name": "data", "pvcRef": pvc_ref})
        pods.append(
            {
                "podRef": {"name": name, "namespace": namespace, "uid": uids[p]},
                "startTime": rfc3339(start),
                "containers": cs,
                "cpu": {"time": t, "usageNanoCores": cpu, "usageCoreNanoSeconds": cpu_ns},
                "memory": _memory(t, pusage, pws, prss, pf, major, plimit),
                "network": _network(clock.stamp(ts - lag), pod_names, pod_net_counters[p]),
                "volume": volumes,
                "ephemeral-storage": nodefs(eph, eph_in),
                "process_stats": {"process_count": nproc},
                "swap": {"time": t, "swapUsageBytes": 0},
            }
        )

    # System containers and the node: each one's rates cover everything it contains.
    system = []
    for name in shape.system_containers:
        cpu, susage, sws, srss, spf, smajor, slimit = daemons[name]
        scpu, sfaults, smajors = (int(clock.counter(r, ts - sys_start[name])) for r in (cpu, spf, smajor))
        memory = _memory(t, susage, sws, srss, sfaults, smajors, slimit)
        start, swap = rfc3339(sys_start[name]), {"time": t, "swapUsageBytes": 0}
        cpu_stats = {"time": t, "usageNanoCores": cpu, "usageCoreNanoSeconds": scpu}
        system.append({"name": name, "startTime": start, "cpu": cpu_stats, "memory": memory, "swap": swap})
    e = ts - node_start
    node_cpu, _, node_ws, node_rss, node_pf, node_major = (sum(d[i] for d in daemons.values()) for i in range(6))
    node_cpu += int(rng.integers(50, 200)) * 1_000_000  # the rest of the OS
    node_ws += int(rng.integers(200, 800)) * MIB
    node_rss += 64 * MIB
    node_pf += int(rng.integers(10, 100))
    node_usage = max(node_ws, min(node_ws + int(rng.integers(512, 4096)) * MIB, shape.node_memory_bytes - 1))
    names = NODE_INTERFACES[: shape.interfaces_per_node]
    node_net = rng.integers(0, 20_000, (len(names), 4)) * np.array([1, 0, 1, 0])
    host = np.array([rng.integers(10_000, 200_000), 0, rng.integers(5_000, 50_000), 0])
    node_net[0] = pod_net[:, 0].sum(axis=0) + host
    node_net[[n in IDLE_INTERFACES for n in names]] = 0
    ncpu, nfaults, nmajors = (int(clock.counter(r, e)) for r in (node_cpu, node_pf, node_major))
    return {
        "node": {
            "nodeName": node_name(node_index),
            "systemContainers": system,
            "startTime": rfc3339(node_start),
            "cpu": {"time": t, "usageNanoCores": node_cpu, "usageCoreNanoSeconds": ncpu},
            "memory": _memory(t, node_usage, node_ws, node_rss, nfaults, nmajors, shape.node_memory_bytes),
            "network": _network(t, names, clock.counter(node_net, e).tolist()),
            "fs": nodefs(fs_used, fs_inodes_used),
            "runtime": {"imageFs": nodefs(images, image_inodes)},
            "rlimit": {"time": t, "maxpid": 4_194_304, "curproc": int(procs.sum()) + int(rng.integers(300, 800))},
            "swap": {"time": t, "swapAvailableBytes": 0, "swapUsageBytes": 0},
        },
        "pods": pods,
    }


def _dumps(document: dict[str, Any]) -> bytes:
    if orjson is not None:
        return orjson.dumps(document)
    return json.dumps(document, separators=(",", ":")).encode()


def summary_bytes(node_index: int, *, at: datetime, shape: NodeShape = DEFAULT_SHAPE) -> bytes:
    """The document as a kubelet sends it: compact JSON (about 80 KB at the default shape)."""
    return _dumps(summary_document(node_index, at=at, shape=shape))


def cluster_documents(
    nodes: int, *, at: datetime, shape: NodeShape = DEFAULT_SHAPE, progress: bool = False
) -> list[bytes]:
    """Documents of nodes ``0..nodes-1`` at one instant, as one scrape window would receive them.

    ``progress`` draws a rich progress bar on stderr (none if rich is missing): 5,000 nodes take a while.
    """
    indices: Iterable[int] = range(nodes)
    if progress:
        try:
            from rich.console import Console
            from rich.progress import track
        except ImportError:
            pass
        else:
            indices = track(indices, description="kubelet summaries", console=Console(stderr=True))
    return [summary_bytes(i, at=at, shape=shape) for i in indices]
