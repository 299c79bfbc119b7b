"""Heapster's pipeline written row at a time, as the Go code does it: the yardstick for the columnar one.

One window goes through the same steps as in Heapster (HEAPSTER.md §3, §5): each Summary body is
``json.loads``-ed and walked into a dict of MetricSets keyed by Heapster's key strings
(``node:n``, ``node:n/container:kubelet``, ``namespace:ns/pod:p``, ``namespace:ns/pod:p/container:c``,
``namespace:ns``, ``cluster``); the rate calculator looks each key up in the previous window's
counters; the enrichers look pods, namespaces and nodes up in dicts (the informers' caches); the
aggregators loop over the sets and add. Nothing here is vectorized, on purpose: it shows what the
columnar pipeline saves, and it is written independently of the package (only the HEAPSTER.md and
docs/ text), so comparing the two outputs checks the package.

Output: ``{(type, nodename, namespace_name, pod_name, container_name, metric, resource_id): value}``
(``resource_id`` holds the accelerator id for accelerator metrics, None for plain metrics), ints for
int64 metrics and floats for double ones, as our points table has them.

Where docs/deviations.md says we differ from Heapster, this follows OUR behaviour, so the outputs are
comparable:

- 1: values above 2^63-1 (kubelets send 2^64-1 for "unknown") are absent, not negative;
- 2: a container ``rootfs``/``logs`` without ``usedBytes`` gives no ephemeral storage (no crash);
- 3: a document that is not a Summary (bad JSON, no ``node.nodeName``) is skipped, the others decode;
- 4: the extension metrics are decoded too (``memory/swap_usage``, ``memory/swap_available``,
  ``process/count``, the six PSI totals);
- 7: ``hostname``/``host_id`` come from the API's Node objects (set in the pod enricher);
- 8: pods the pod aggregator creates keep their ``nodename`` (so the node aggregator counts them);
- 9: no cumulative metric (uptime, cpu/usage, page faults, network counters, PSI) is summed into
  pods; ``custom/*`` metrics are, whatever their kind;
- 10: a sum of nothing stays absent; the autoscaling enricher reads a missing value as 0;
- 11: placeholder sets carry start/sample times (only the rate calculator reads them, and it never
  sees placeholders);
- 12: a counter that went down (or is negative) gives no rate for that metric; the entity guards
  (sample time strictly later, same start time, both unknown start times count as equal) still
  gate all of an entity's rates;
- 13: ``cpu/usage_rate = Δns // (Δt_ms · 1000)``, Heapster's truncated millicores without the
  int64 overflow;
- 14: float rates in float64, ``Δ · 1000 / Δt_ms``;
- 17: a quantity beyond int64 is "no value" (a request or capacity then reads as absent / 0).

Also: Heapster's rate calculator kept the whole previous batch (mutated by the later processors);
here the previous window's decoded counters are kept, which gives the same rates (placeholders
never carry counters). Heapster's restart count comes from the container status with the same
name, whether or not the spec container matched; kept so.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import cache
from typing import Any, NamedTuple

__all__ = [
    "ApiObjects",
    "HeapsterReference",
    "LabeledMetric",
    "MetricSet",
    "PointKey",
    "RateState",
    "entity_labels",
    "points_of",
    "quantity",
]

INT64_MAX = 2**63 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)

NODE, SYS_CONTAINER, POD, CONTAINER, NS, CLUSTER = "node", "sys_container", "pod", "pod_container", "ns", "cluster"
SYSTEM_CONTAINER_NAMES = {"runtime": "docker-daemon", "misc": "system", "kubelet": "kubelet"}  # §3.4
USER_METRIC_TYPES = ("gauge", "cumulative", "delta")

# (stats block, field, metric) per HEAPSTER.md §3.3, then our extensions (deviation 4)
CPU_MEMORY = (
    ("cpu", "usageCoreNanoSeconds", "cpu/usage"),
    ("memory", "usageBytes", "memory/usage"),
    ("memory", "workingSetBytes", "memory/working_set"),
    ("memory", "rssBytes", "memory/rss"),
    ("memory", "pageFaults", "memory/page_faults"),
    ("memory", "majorPageFaults", "memory/major_page_faults"),
    ("swap", "swapUsageBytes", "memory/swap_usage"),
    ("swap", "swapAvailableBytes", "memory/swap_available"),
)
NETWORK = (
    ("rxBytes", "network/rx"),
    ("rxErrors", "network/rx_errors"),
    ("txBytes", "network/tx"),
    ("txErrors", "network/tx_errors"),
)
PSI = (("cpu", "cpu/psi_"), ("memory", "memory/psi_"), ("io", "io/psi_"))  # block.psi.{some,full}.total
FILESYSTEM = (
    ("usedBytes", "filesystem/usage"),
    ("capacityBytes", "filesystem/limit"),
    ("availableBytes", "filesystem/available"),
    ("inodes", "filesystem/inodes"),
    ("inodesFree", "filesystem/inodes_free"),
)
ACCELERATOR = (
    ("memoryTotal", "accelerator/memory_total"),
    ("memoryUsed", "accelerator/memory_used"),
    ("dutyCycle", "accelerator/duty_cycle"),
)
# §5.1: counter -> rate; cpu/usage_rate is the only int one (millicores)
RATES = (
    ("cpu/usage", "cpu/usage_rate"),
    ("memory/page_faults", "memory/page_faults_rate"),
    ("memory/major_page_faults", "memory/major_page_faults_rate"),
    ("network/rx", "network/rx_rate"),
    ("network/rx_errors", "network/rx_errors_rate"),
    ("network/tx", "network/tx_rate"),
    ("network/tx_errors", "network/tx_errors_rate"),
)
# deviation 9: every cumulative metric stays out of pod sums (Heapster listed the standard ones)
CUMULATIVE = frozenset(
    {
        "uptime",
        "cpu/usage",
        "memory/page_faults",
        "memory/major_page_faults",
        *(metric for _, metric in NETWORK),
        *(f"{prefix}{kind}" for _, prefix in PSI for kind in ("some", "full")),
    }
)
NAMESPACE_METRICS = ("cpu/usage_rate", "memory/usage", "cpu/request", "cpu/limit", "memory/request", "memory/limit")
NODE_METRICS = (*NAMESPACE_METRICS[2:], "ephemeral_storage/request", "ephemeral_storage/limit")
# API resource name -> metric stem, millicores?
RESOURCES = (("cpu", "cpu", True), ("memory", "memory", False), ("ephemeral-storage", "ephemeral_storage", False))
STANDARD_RESOURCES = frozenset(name for name, _, _ in RESOURCES)

Value = int | float
PointKey = tuple[str, str | None, str | None, str | None, str | None, str, str | None]
EntityKey = tuple[str, str | None, str | None, str | None, str | None]


class LabeledMetric(NamedTuple):
    """Heapster's ``LabeledMetric``: a name, its own labels (resource_id, make/model/accelerator_id), a value."""

    name: str
    labels: dict[str, str | None]
    value: int


@dataclass(slots=True)
class MetricSet:
    """Heapster's ``MetricSet``: one entity in one window."""

    labels: dict[str, str | None]
    values: dict[str, Value] = field(default_factory=dict)
    labeled: list[LabeledMetric] = field(default_factory=list)
    start_ms: int | None = None  # CollectionStartTime
    scrape_ms: int | None = None  # ScrapeTime


Batch = dict[str, MetricSet]


# --- helpers ---------------------------------------------------------------------------------------


def _ms(text: str | None) -> int | None:
    """RFC 3339 → epoch milliseconds (truncated); null is Go's zero time, here None."""
    if text is None:
        return None
    return (datetime.fromisoformat(text) - EPOCH) // ONE_MS


def _int(value: Any) -> int | None:
    """A uint64 field as int64; above 2^63-1 it is "unknown" (deviation 1)."""
    if value is None or value > INT64_MAX:
        return None
    return int(value)


_QUANTITY = re.compile(r"([+-]?)([0-9]*(?:\.[0-9]*)?)([numkMGTPE]?|[KMGTPE]i|[eE][+-]?[0-9]+)")
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


@cache  # Go parses a Quantity once, when the informer decodes the object
def quantity(text: str, *, milli: bool = False) -> int | None:
    """``MilliValue()`` / ``Value()`` of a Kubernetes quantity, rounded up (away from zero); None beyond int64."""
    match = _QUANTITY.fullmatch(text)
    if match is None or not text:
        raise ValueError(f"invalid quantity {text!r}")
    sign, number, suffix = match.groups()
    value = Fraction(number) if number.strip(".") else Fraction(0)
    if suffix[:1] in ("e", "E"):
        exponent = int(suffix[1:])
        if value and exponent > 40:
            return None
        value *= Fraction(10) ** max(exponent, -40)
    elif suffix.endswith("i"):
        value *= 2 ** (10 * "KMGTPE".index(suffix[0]) + 10)
    else:
        value *= Fraction(10) ** _DECIMAL[suffix]
    result = math.ceil(value * (1000 if milli else 1))
    result = -result if sign == "-" else result
    return result if -(2**63) <= result <= INT64_MAX else None


def render_labels(labels: Mapping[str, str | None] | None, separator: str) -> str:
    """``util.LabelsToString``: sorted ``key:value`` strings (code-point order = UTF-8 byte order), joined."""
    return separator.join(sorted(f"{k}:{v or ''}" for k, v in (labels or {}).items()))


def pod_key(namespace: str | None, pod: str | None) -> str:
    return f"namespace:{namespace}/pod:{pod}"


# --- the informers' caches -------------------------------------------------------------------------


class ApiObjects:
    """What Heapster's pod, namespace and node listers hold: the API objects, indexed by name."""

    def __init__(
        self,
        pods: Iterable[Mapping[str, Any]] = (),
        namespaces: Iterable[Mapping[str, Any]] = (),
        nodes: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
        self.namespace_uids = {n["metadata"]["name"]: n["metadata"].get("uid") for n in namespaces}
        self.nodes = {n["metadata"]["name"]: n for n in nodes}


# --- Summary source (HEAPSTER.md §3.3, §3.4) -------------------------------------------------------


def _add_stats(ms: MetricSet, stats: Mapping[str, Any]) -> None:
    """cpu / memory / swap values, and the PSI totals, of a node, pod or container."""
    for block, name, metric in CPU_MEMORY:
        part = stats.get(block)
        if part and (value := _int(part.get(name))) is not None:
            ms.values[metric] = value
    for block, prefix in PSI:
        psi = (stats.get(block) or {}).get("psi")
        if psi:
            for kind in ("some", "full"):
                if (data := psi.get(kind)) and (value := _int(data.get("total"))) is not None:
                    ms.values[prefix + kind] = value


def _add_network(ms: MetricSet, network: Mapping[str, Any] | None) -> None:
    if network:
        for name, metric in NETWORK:
            if (value := _int(network.get(name))) is not None:
                ms.values[metric] = value


def _add_fs(ms: MetricSet, fs: Mapping[str, Any] | None, resource_id: str) -> None:
    if fs:
        for name, metric in FILESYSTEM:
            if (value := _int(fs.get(name))) is not None:
                ms.labeled.append(LabeledMetric(metric, {"resource_id": resource_id}, value))


def _add_uptime(ms: MetricSet, now_ms: int) -> None:
    if ms.start_ms is not None:
        ms.values["uptime"] = now_ms - ms.start_ms


def _time(stats: Mapping[str, Any], *blocks: str) -> int | None:
    """ScrapeTime: the first of these blocks' ``time`` that is set."""
    for block in blocks:
        part = stats.get(block)
        if part and part.get("time") is not None:
            return _ms(part["time"])
    return None


def _container(stats: Mapping[str, Any], labels: dict[str, str | None], now_ms: int) -> MetricSet:
    """A pod container or a system container (``decodeContainerStats``)."""
    ms = MetricSet(labels, start_ms=_ms(stats.get("startTime")), scrape_ms=_time(stats, "cpu", "memory"))
    _add_uptime(ms, now_ms)
    _add_stats(ms, stats)
    rootfs, logs = stats.get("rootfs"), stats.get("logs")
    if rootfs is not None and logs is not None:  # deviation 2: a missing usedBytes gives nothing
        used, logged = _int(rootfs.get("usedBytes")), _int(logs.get("usedBytes"))
        if used is not None and logged is not None and used + logged <= INT64_MAX:
            ms.values["ephemeral_storage/usage"] = used + logged
    _add_fs(ms, rootfs, "/")
    _add_fs(ms, logs, "logs")
    for accelerator in stats.get("accelerators") or ():
        tags = {
            "make": accelerator.get("make"),
            "model": accelerator.get("model"),
            "accelerator_id": accelerator.get("id"),
        }
        for name, metric in ACCELERATOR:
            if (value := _int(accelerator.get(name))) is not None:
                ms.labeled.append(LabeledMetric(metric, tags, value))
    for user in stats.get("userDefinedMetrics") or ():
        if user.get("type") in USER_METRIC_TYPES and user.get("name") is not None and user.get("value") is not None:
            ms.values[f"custom/{user['name']}"] = float(user["value"])
    return ms


def _start_rank(ms: MetricSet) -> int:
    return -(2**63) if ms.start_ms is None else ms.start_ms


def decode_summary(summary: Any, now_ms: int, batch: Batch) -> None:
    """One node's Summary into ``batch`` (later keys overwrite earlier ones, as Heapster's merge did)."""
    node = summary.get("node") if isinstance(summary, dict) else None
    nodename = node.get("nodeName") if isinstance(node, dict) else None
    if not nodename:
        raise ValueError("document has no `node` object with a `nodeName`")
    assert node is not None
    ms = MetricSet({"type": NODE, "nodename": nodename}, start_ms=_ms(node.get("startTime")))
    ms.scrape_ms = _time(node, "cpu", "memory", "network")
    _add_uptime(ms, now_ms)
    _add_stats(ms, node)
    _add_network(ms, node.get("network"))
    fs = node.get("fs")
    if fs and (used := _int(fs.get("usedBytes"))) is not None:
        ms.values["ephemeral_storage/usage"] = used
    _add_fs(ms, fs, "/")
    batch[f"node:{nodename}"] = ms

    for stats in node.get("systemContainers") or ():
        name = SYSTEM_CONTAINER_NAMES.get(stats.get("name"), stats.get("name"))
        labels = {"type": SYS_CONTAINER, "nodename": nodename, "container_name": name}
        batch[f"node:{nodename}/container:{name}"] = _container(stats, labels, now_ms)

    for pod in summary.get("pods") or ():
        ref = pod.get("podRef") or {}
        namespace, name, uid = ref.get("namespace"), ref.get("name"), ref.get("uid")
        labels = {"type": POD, "nodename": nodename, "namespace_name": namespace, "pod_name": name, "pod_id": uid}
        pms = MetricSet(labels, start_ms=_ms(pod.get("startTime")), scrape_ms=_time(pod, "network"))
        _add_uptime(pms, now_ms)
        _add_stats(pms, pod)
        _add_network(pms, pod.get("network"))
        process = pod.get("process_stats")
        if process and (count := _int(process.get("process_count"))) is not None:
            pms.values["process/count"] = count
        ephemeral = pod.get("ephemeral-storage")
        if ephemeral and (used := _int(ephemeral.get("usedBytes"))) is not None:
            pms.values["ephemeral_storage/usage"] = used
        for volume in pod.get("volume") or ():
            _add_fs(pms, volume, f"Volume:{volume.get('name') or ''}")
        key = pod_key(namespace, name)
        batch[key] = pms
        containers: dict[str, MetricSet] = {}
        for stats in pod.get("containers") or ():
            cname = stats.get("name")
            cms = _container(stats, {**labels, "type": CONTAINER, "container_name": cname}, now_ms)
            seen = containers.get(cname)
            # a name reported twice (terminated + running): the later start wins, then the later entry
            if seen is None or _start_rank(cms) >= _start_rank(seen):
                containers[cname] = cms
        for cname, cms in containers.items():
            batch[f"{key}/container:{cname}"] = cms


# --- processors (HEAPSTER.md §5) -------------------------------------------------------------------


@dataclass
class RateState:
    """What the rate calculator keeps between windows: the last accepted window's time and counters."""

    timestamp: datetime | None = None
    counters: dict[str, tuple[int | None, int | None, dict[str, int]]] = field(default_factory=dict)


class HeapsterReference:
    """Heapster's source and eight processors, MetricSet by MetricSet, on one window after another."""

    def __init__(
        self, api: ApiObjects, *, loads: Callable[[bytes], Any] = json.loads, label_separator: str = ","
    ) -> None:
        self.api = api
        self.loads = loads
        self.separator = label_separator
        self.state = RateState()
        self.errors: list[str] = []  # documents skipped in the last window, with the reason

    def process(self, documents: Sequence[bytes], now: datetime) -> dict[PointKey, Value]:
        """Decode, run the processors, return the window's points."""
        batch = self.decode(documents, now)
        self.run_processors(batch, now)
        return points_of(batch)

    def decode(self, documents: Sequence[bytes], now: datetime) -> Batch:
        now_ms = (now - EPOCH) // ONE_MS
        batch: Batch = {}
        self.errors = []
        for i, body in enumerate(documents):
            try:
                one: Batch = {}
                decode_summary(self.loads(body), now_ms, one)
            except (ValueError, TypeError, AttributeError) as exc:  # deviation 3: the others still decode
                self.errors.append(f"document[{i}]: {exc}")
                continue
            batch.update(one)
        return batch

    def run_processors(self, batch: Batch, now: datetime) -> None:
        self.rate_calculator(batch, now)
        self.pod_enricher(batch)
        self.namespace_enricher(batch)
        self.pod_aggregator(batch)
        self.namespace_aggregator(batch)
        self.node_aggregator(batch)
        self.cluster_aggregator(batch)
        self.node_autoscaling_enricher(batch)

    # 5.1 -------------------------------------------------------------------------------------------
    def rate_calculator(self, batch: Batch, now: datetime) -> None:
        state = self.state
        if state.timestamp is not None and now <= state.timestamp:
            return  # out of order: no rates, the previous window stays the reference
        if state.timestamp is not None:
            for key, ms in batch.items():
                old = state.counters.get(key)
                if old is None:
                    continue
                old_start, old_scrape, old_values = old
                if ms.scrape_ms is None or old_scrape is None or ms.scrape_ms <= old_scrape:
                    continue
                if ms.start_ms != old_start:
                    continue
                dt_ms = ms.scrape_ms - old_scrape
                for counter, rate in RATES:
                    new_value, old_value = ms.values.get(counter), old_values.get(counter)
                    if new_value is None or old_value is None or old_value < 0 or new_value < old_value:
                        continue  # deviation 12: a counter that went down gives no rate
                    delta = int(new_value) - old_value
                    if rate == "cpu/usage_rate":
                        ms.values[rate] = delta // (dt_ms * 1000)  # deviation 13: Heapster's value, no overflow
                    else:
                        ms.values[rate] = float(delta) * 1000.0 / float(dt_ms)
        counters: dict[str, tuple[int | None, int | None, dict[str, int]]] = {}
        for key, ms in batch.items():
            values = {c: int(ms.values[c]) for c, _ in RATES if c in ms.values}
            counters[key] = (ms.start_ms, ms.scrape_ms, values)
        self.state = RateState(now, counters)

    # 5.2 -------------------------------------------------------------------------------------------
    def pod_enricher(self, batch: Batch) -> None:
        for ms in batch.values():  # deviation 7: hostname / host_id from the API's Node
            nodename = ms.labels.get("nodename")
            if nodename is None:
                continue
            node = self.api.nodes.get(nodename) or {}
            if ms.labels.get("hostname") is None:
                hostname = nodename
                for address in (node.get("status") or {}).get("addresses") or ():
                    if address.get("type") == "Hostname" and address.get("address"):
                        hostname = address["address"]  # the last one wins
                ms.labels["hostname"] = hostname
            if ms.labels.get("host_id") is None and (external := (node.get("spec") or {}).get("externalID")):
                ms.labels["host_id"] = external
        new: Batch = {}
        for ms in list(batch.values()):
            kind = ms.labels["type"]
            if kind not in (POD, CONTAINER):
                continue
            pod = self.api.pods.get((ms.labels.get("namespace_name"), ms.labels.get("pod_name")))
            if pod is None:
                continue  # an unknown pod is left as the kubelet reported it
            if kind == POD:
                self._add_pod_info(ms, pod, batch, new)
            else:
                self._add_container_info(ms, pod, batch, new)
        batch.update(new)

    def _add_container_info(self, ms: MetricSet, pod: Mapping[str, Any], batch: Batch, new: Batch) -> None:
        name = ms.labels.get("container_name")
        for spec in pod["spec"].get("containers") or ():
            if spec.get("name") == name:
                _update_resources(ms, spec)
                if ms.labels.get("container_base_image") is None:
                    ms.labels["container_base_image"] = spec.get("image")
                break
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            if status.get("name") == name:
                if status.get("restartCount") is not None:
                    ms.values["restart_count"] = int(status["restartCount"])
                break
        meta = pod["metadata"]
        ms.labels["pod_id"] = meta.get("uid") or ms.labels.get("pod_id")
        ms.labels["labels"] = render_labels(meta.get("labels"), self.separator)
        pkey = pod_key(ms.labels.get("namespace_name"), ms.labels.get("pod_name"))
        if pkey in batch or pkey in new:
            return
        # Heapster's pod placeholder (never happens with the Summary source: pods always come with their containers)
        labels = {k: ms.labels.get(k) for k in ("namespace_name", "pod_name", "nodename", "hostname", "host_id")}
        stub = MetricSet({"type": POD, **labels, "pod_id": ms.labels.get("pod_id")})
        mine = [
            c
            for c in batch.values()
            if c.labels["type"] == CONTAINER
            and pod_key(c.labels.get("namespace_name"), c.labels.get("pod_name")) == pkey
        ]
        starts = [c.start_ms for c in mine if c.start_ms is not None]
        scrapes = [c.scrape_ms for c in mine if c.scrape_ms is not None]
        stub.start_ms, stub.scrape_ms = min(starts, default=None), max(scrapes, default=None)
        new[pkey] = stub
        self._add_pod_info(stub, pod, batch, new)

    def _add_pod_info(self, ms: MetricSet, pod: Mapping[str, Any], batch: Batch, new: Batch) -> None:
        meta = pod["metadata"]
        ms.labels["pod_id"] = meta.get("uid") or ms.labels.get("pod_id")
        rendered = render_labels(meta.get("labels"), self.separator)
        ms.labels["labels"] = rendered
        namespace, name = meta["namespace"], meta["name"]
        for spec in pod["spec"].get("containers") or ():
            ckey = f"{pod_key(namespace, name)}/container:{spec.get('name')}"
            if ckey in batch or ckey in new:
                continue
            labels: dict[str, str | None] = {
                "type": CONTAINER,
                "nodename": ms.labels.get("nodename"),
                "hostname": ms.labels.get("hostname"),
                "host_id": ms.labels.get("host_id"),
                "namespace_name": namespace,
                "pod_name": name,
                "pod_id": ms.labels["pod_id"],
                "container_name": spec.get("name"),
                "container_base_image": spec.get("image"),
                "labels": rendered,
            }
            stub = MetricSet(labels, start_ms=ms.start_ms, scrape_ms=ms.scrape_ms)  # deviation 11
            _update_resources(stub, spec)  # requests and limits only
            new[ckey] = stub

    # 5.3 -------------------------------------------------------------------------------------------
    def namespace_enricher(self, batch: Batch) -> None:
        uids = self.api.namespace_uids
        for ms in batch.values():
            namespace = ms.labels.get("namespace_name")
            if ms.labels["type"] in (POD, CONTAINER, NS) and namespace is not None:
                uid = uids.get(namespace)
                if uid is not None:
                    ms.labels["namespace_id"] = uid

    # 5.4 -------------------------------------------------------------------------------------------
    def pod_aggregator(self, batch: Batch) -> None:
        had = {key: set(ms.values) for key, ms in batch.items() if ms.labels["type"] == POD}
        new: Batch = {}
        for ms in list(batch.values()):
            if ms.labels["type"] != CONTAINER:
                continue
            namespace, name = ms.labels.get("namespace_name"), ms.labels.get("pod_name")
            if namespace is None or name is None:
                continue
            key = pod_key(namespace, name)
            pod = batch.get(key) or new.get(key)
            if pod is None:  # deviation 8: the created pod keeps its node
                carried = ("pod_id", "namespace_id", "hostname", "host_id", "nodename")
                labels = {"type": POD, "namespace_name": namespace, "pod_name": name}
                pod = new[key] = MetricSet(labels | {k: ms.labels.get(k) for k in carried})
                pod.start_ms, pod.scrape_ms = ms.start_ms, ms.scrape_ms
            elif key in new:  # deviation 11: earliest start, latest sample of its containers
                if ms.start_ms is not None:
                    pod.start_ms = ms.start_ms if pod.start_ms is None else min(pod.start_ms, ms.start_ms)
                if ms.scrape_ms is not None:
                    pod.scrape_ms = ms.scrape_ms if pod.scrape_ms is None else max(pod.scrape_ms, ms.scrape_ms)
            own = had.get(key, ())
            for metric, value in ms.values.items():
                if metric in CUMULATIVE or metric in own:
                    continue
                pod.values[metric] = pod.values[metric] + value if metric in pod.values else value
        batch.update(new)

    # 5.5-5.7 ---------------------------------------------------------------------------------------
    def namespace_aggregator(self, batch: Batch) -> None:
        new: Batch = {}
        for ms in batch.values():
            if ms.labels["type"] != POD or (namespace := ms.labels.get("namespace_name")) is None:
                continue
            key = f"namespace:{namespace}"
            target = batch.get(key) or new.get(key)
            if target is None:
                target = new[key] = MetricSet({"type": NS, "namespace_name": namespace})
            if target.labels.get("namespace_id") is None and ms.labels.get("namespace_id") is not None:
                target.labels["namespace_id"] = ms.labels["namespace_id"]
            _add_into(target, ms, NAMESPACE_METRICS)
        batch.update(new)

    def node_aggregator(self, batch: Batch) -> None:
        for ms in batch.values():
            if ms.labels["type"] != POD or not (nodename := ms.labels.get("nodename")):
                continue
            node = batch.get(f"node:{nodename}")
            if node is not None:  # never creates nodes
                _add_into(node, ms, NODE_METRICS)

    def cluster_aggregator(self, batch: Batch) -> None:
        cluster = MetricSet({"type": CLUSTER})
        for ms in batch.values():
            if ms.labels["type"] == NS:
                _add_into(cluster, ms, NAMESPACE_METRICS)
        batch["cluster"] = cluster

    # 5.8 -------------------------------------------------------------------------------------------
    def node_autoscaling_enricher(self, batch: Batch) -> None:
        for name, node in self.api.nodes.items():
            ms = batch.get(f"node:{name}")
            if ms is None:
                continue
            ms.labels["labels"] = render_labels(node["metadata"].get("labels"), self.separator)
            status = node.get("status") or {}
            capacity, allocatable = status.get("capacity") or {}, status.get("allocatable") or {}
            for resource, stem, milli in RESOURCES:
                cap = quantity(capacity[resource], milli=milli) if resource in capacity else None
                alloc = quantity(allocatable[resource], milli=milli) if resource in allocatable else None
                if resource == "ephemeral-storage" and (cap is None or alloc is None):
                    continue  # only when the node lists it in both
                ms.values[f"{stem}/node_capacity"] = float(cap or 0)
                ms.values[f"{stem}/node_allocatable"] = float(alloc or 0)
                if alloc:
                    used = ms.values.get("cpu/usage_rate" if milli else f"{stem}/usage", 0)
                    ms.values[f"{stem}/node_utilization"] = used / float(alloc)
                    ms.values[f"{stem}/node_reservation"] = ms.values.get(f"{stem}/request", 0) / float(alloc)


def _update_resources(ms: MetricSet, spec: Mapping[str, Any]) -> None:
    """``updateContainerResourcesAndLimits``: cpu in millicores, the rest in units; missing is 0."""
    resources = spec.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for resource, stem, milli in RESOURCES:
        for kind, given in (("request", requests), ("limit", limits)):
            text = given.get(resource)
            value = quantity(text, milli=milli) if text is not None else None
            ms.values[f"{stem}/{kind}"] = value if value is not None else 0
    for resource, text in requests.items():
        if resource not in STANDARD_RESOURCES and text is not None and (value := quantity(text)) is not None:
            ms.values[f"{resource}/request"] = value


def _add_into(target: MetricSet, source: MetricSet, metrics: Sequence[str]) -> None:
    for metric in metrics:
        if metric in source.values:
            value = source.values[metric]
            target.values[metric] = target.values[metric] + value if metric in target.values else value


# --- output ----------------------------------------------------------------------------------------


def entity_key(ms: MetricSet) -> EntityKey:
    labels = ms.labels
    return (
        str(labels["type"]),
        labels.get("nodename"),
        labels.get("namespace_name"),
        labels.get("pod_name"),
        labels.get("container_name"),
    )


def points_of(batch: Batch) -> dict[PointKey, Value]:
    """Every value of every set, keyed as the points table identifies it."""
    out: dict[PointKey, Value] = {}
    for ms in batch.values():
        base = entity_key(ms)
        for metric, value in ms.values.items():
            out[(*base, metric, None)] = value
        for labeled in ms.labeled:
            tags = labeled.labels
            resource = tags["resource_id"] if "resource_id" in tags else tags.get("accelerator_id")
            out[(*base, labeled.name, resource)] = labeled.value
    return out


ENRICHED_LABELS = ("pod_id", "hostname", "host_id", "namespace_id", "container_base_image", "labels")


def entity_labels(batch: Batch) -> dict[EntityKey, dict[str, str | None]]:
    """The enriched labels of every set (None where unset), to compare with the entity table."""
    return {entity_key(ms): {name: ms.labels.get(name) for name in ENRICHED_LABELS} for ms in batch.values()}
