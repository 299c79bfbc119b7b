"""The processor chain (all stages but rates) against a per-entity reference written like Heapster's Go.

The reference loops over MetricSets keyed as in ``ms_keys.go`` (HEAPSTER.md §2d), applying §5.2-§5.8 and
docs/deviations.md 7-11; it shares only the input builders with the package (objects -> dimension tables,
store-spec parsing). A Hypothesis property compares both on random windows as a multiset of entity rows
(type + key labels -> every label and metric value); hand-made windows pin a few cases.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from window_rows import T0, make_frames

from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.labels import LabelCopier
from heapster_columnar.processors.aggregate import ClusterAggregator, NamespaceAggregator, NodeAggregator, PodAggregator
from heapster_columnar.processors.autoscaling import NodeAutoscalingEnricher
from heapster_columnar.processors.chain import Pipeline
from heapster_columnar.processors.enrich import NamespaceEnricher, PodEnricher
from heapster_columnar.sources.objects import namespaces_table, nodes_table, pods_tables

NODE, SYS, POD, CONTAINER, NS, CLUSTER = "node", "sys_container", "pod", "pod_container", "ns", "cluster"
CUSTOM = "custom/"
COUNTERS = {"uptime", "cpu/usage"}  # the counters these windows carry; no counter is summed into pods (deviation 9)
NAMESPACE_METRICS = ("cpu/usage_rate", "memory/usage", "cpu/request", "cpu/limit", "memory/request", "memory/limit")
NODE_METRICS = (*NAMESPACE_METRICS[2:], "ephemeral_storage/request", "ephemeral_storage/limit")
STANDARD_RESOURCES = {"cpu": "cpu", "memory": "memory", "ephemeral-storage": "ephemeral_storage"}


# --- the reference ---------------------------------------------------------------------------------


@dataclass
class MetricSet:
    labels: dict[str, Any]  # label name -> value (plus start_time / sample_time)
    metrics: dict[str, int | float] = field(default_factory=dict)


def ms_key(labels: dict[str, Any]) -> str:
    """``metrics/core/ms_keys.go``: node:<n>[/container:<c>], namespace:<ns>[/pod:<p>[/container:<c>]], cluster."""
    kind = labels["type"]
    if kind == CLUSTER:
        return "cluster"
    key = f"node:{labels['nodename']}" if kind in (NODE, SYS) else f"namespace:{labels['namespace_name']}"
    key += f"/pod:{labels['pod_name']}" if kind in (POD, CONTAINER) else ""
    return key + (f"/container:{labels['container_name']}" if kind in (SYS, CONTAINER) else "")


_SUFFIX: dict[str, int | Fraction] = {"": 1, "m": Fraction(1, 1000), "k": 1000, "M": 10**6, "G": 10**9}
_SUFFIX |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(text: str | None, *, milli: bool = False) -> int:
    """resource.Quantity's MilliValue() / Value(), rounded up; an absent quantity is Go's zero value."""
    if text is None:
        return 0
    match = re.fullmatch(r"([0-9.]+)(e-?[0-9]+|[A-Za-z]*)", text)
    assert match, text
    number, suffix = match.groups()
    scale = Fraction(10) ** int(suffix[1:]) if suffix.startswith("e") else _SUFFIX[suffix]
    return math.ceil(Fraction(number) * scale * (1000 if milli else 1))


def named(items: list[dict[str, Any]] | None, name: str) -> dict[str, Any] | None:
    """The first spec container / container status called ``name`` (Go: loop, compare, break)."""
    return next((item for item in items or [] if item["name"] == name), None)


def carried(ms: MetricSet, *names: str) -> dict[str, Any]:
    return {n: ms.labels[n] for n in names if ms.labels.get(n) is not None}


class Reference:
    """Heapster's processors (HEAPSTER.md §5.2-§5.8) on one window, MetricSet by MetricSet."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.store = LabelCopier(scenario.separator, scenario.store, scenario.ignore).store  # (target, source)
        self.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in scenario.pods}
        self.namespaces = {n["metadata"]["name"]: n["metadata"]["uid"] for n in scenario.namespaces}
        self.nodes = {n["metadata"]["name"]: n for n in scenario.nodes}
        self.batch: dict[str, MetricSet] = {}
        for row in scenario.rows:
            ms = MetricSet({k: v for k, v in row.items() if isinstance(v, str | datetime)})
            ms.metrics = {k: v for k, v in row.items() if isinstance(v, int | float)}
            self.batch[ms_key(ms.labels)] = ms

    def run(self) -> list[dict[str, Any]]:
        stages = (self.pod_enricher, self.namespace_enricher, self.pod_aggregator, self.namespace_aggregator)
        for stage in (*stages, self.node_aggregator, self.cluster_aggregator, self.node_autoscaling_enricher):
            stage()
        return [{**ms.labels, **ms.metrics} for ms in self.batch.values()]

    def copy_labels(self, source: dict[str, str] | None, ms: MetricSet) -> None:  # util.LabelCopier.Copy
        source = source or {}
        rendered = sorted(f"{k}:{v}" for k, v in source.items() if k not in self.s.ignore)  # code points = bytes
        ms.labels["labels"] = self.s.separator.join(rendered)
        for target, name in self.store:
            if name in source:
                ms.labels[target] = source[name]

    # pod enricher --------------------------------------------------------------------------------
    def pod_enricher(self) -> None:
        for ms in self.batch.values():  # deviation 7: hostname / host_id from the API's nodes
            node = ms.labels.get("nodename")
            if ms.labels["type"] in (NODE, SYS, POD, CONTAINER) and node is not None:
                obj = self.nodes.get(node, {})
                addresses = (obj.get("status") or {}).get("addresses") or []
                hostnames = [a["address"] for a in addresses if a["type"] == "Hostname" and a["address"]]
                ms.labels.setdefault("hostname", hostnames[-1] if hostnames else node)
                if host_id := (obj.get("spec") or {}).get("externalID"):
                    ms.labels.setdefault("host_id", host_id)
        new: dict[str, MetricSet] = {}
        for ms in self.batch.values():
            if ms.labels["type"] not in (POD, CONTAINER):
                continue
            pod = self.pods.get((ms.labels["namespace_name"], ms.labels["pod_name"]))
            if pod is not None:  # an unknown pod is left as the kubelet reported it
                (self.add_container_info if ms.labels["type"] == CONTAINER else self.add_pod_info)(ms, pod, new)
        self.batch.update(new)

    def add_container_info(self, ms: MetricSet, pod: dict[str, Any], new: dict[str, MetricSet]) -> None:
        if spec := named(pod["spec"]["containers"], ms.labels["container_name"]):
            update_resources(ms, spec)
            ms.labels.setdefault("container_base_image", spec["image"])
        if status := named(pod["status"].get("containerStatuses"), ms.labels["container_name"]):
            ms.metrics["restart_count"] = status["restartCount"]
        ms.labels["pod_id"] = pod["metadata"]["uid"]
        self.copy_labels(pod["metadata"].get("labels"), ms)
        labels = {"type": POD, "namespace_name": ms.labels["namespace_name"], "pod_name": ms.labels["pod_name"]}
        pod_key = ms_key(labels)
        if pod_key not in self.batch and pod_key not in new:
            siblings = [c for c in self.batch.values() if c.labels["type"] == CONTAINER]
            mine = [c for c in siblings if ms_key(c.labels | {"type": POD}) == pod_key]
            stub = MetricSet(labels | carried(ms, "nodename", "hostname", "host_id"))
            stub.labels["start_time"] = min(c.labels["start_time"] for c in mine)  # deviation 11
            stub.labels["sample_time"] = max(c.labels["sample_time"] for c in mine)
            new[pod_key] = stub
            self.add_pod_info(stub, pod, new)

    def add_pod_info(self, ms: MetricSet, pod: dict[str, Any], new: dict[str, MetricSet]) -> None:
        meta = pod["metadata"]
        ms.labels["pod_id"] = meta["uid"]
        self.copy_labels(meta.get("labels"), ms)
        for spec in pod["spec"]["containers"]:
            labels = {"type": CONTAINER, "namespace_name": meta["namespace"], "pod_name": meta["name"]}
            labels |= {"container_name": spec["name"], "container_base_image": spec["image"], "pod_id": meta["uid"]}
            key = ms_key(labels)
            if key in self.batch or key in new:
                continue
            stub = MetricSet(labels | carried(ms, "nodename", "hostname", "host_id", "start_time", "sample_time"))
            self.copy_labels(meta.get("labels"), stub)
            update_resources(stub, spec)  # requests and limits only: no restart count (HEAPSTER.md §5.2)
            new[key] = stub

    # namespace enricher --------------------------------------------------------------------------
    def namespace_enricher(self) -> None:
        for ms in self.batch.values():
            if ms.labels["type"] in (POD, CONTAINER, NS) and ms.labels.get("namespace_name") in self.namespaces:
                ms.labels["namespace_id"] = self.namespaces[ms.labels["namespace_name"]]

    # aggregators ---------------------------------------------------------------------------------
    def pod_aggregator(self) -> None:
        had = {k: set(ms.metrics) for k, ms in self.batch.items() if ms.labels["type"] == POD}
        new: dict[str, MetricSet] = {}
        for ms in list(self.batch.values()):
            if ms.labels["type"] != CONTAINER or ms.labels.get("pod_name") is None:
                continue
            labels = {"type": POD, "namespace_name": ms.labels["namespace_name"], "pod_name": ms.labels["pod_name"]}
            key = ms_key(labels)
            pod = self.batch.get(key) or new.get(key)
            if pod is None:  # deviation 8: the created pod keeps its nodename; deviation 11: times
                names = ("pod_id", "namespace_id", "hostname", "host_id", "nodename", "start_time", "sample_time")
                pod = new[key] = MetricSet(labels | carried(ms, *names))
            if key in new:  # only created pods take their containers' earliest start and latest sample
                pod.labels["start_time"] = min(pod.labels["start_time"], ms.labels["start_time"])
                pod.labels["sample_time"] = max(pod.labels["sample_time"], ms.labels["sample_time"])
            for name, value in ms.metrics.items():
                if name not in COUNTERS and name not in had.get(key, ()):
                    pod.metrics[name] = pod.metrics.get(name, 0) + value
        self.batch.update(new)

    def _sum_into(self, source: MetricSet, target: MetricSet, metrics: tuple[str, ...]) -> None:
        for name in metrics:
            if name in source.metrics:
                target.metrics[name] = target.metrics.get(name, 0) + source.metrics[name]

    def namespace_aggregator(self) -> None:
        for pod in [ms for ms in self.batch.values() if ms.labels["type"] == POD]:
            if (ns := pod.labels.get("namespace_name")) is None:
                continue
            target = self.batch.setdefault(f"namespace:{ns}", MetricSet({"type": NS, "namespace_name": ns}))
            if "namespace_id" not in target.labels and pod.labels.get("namespace_id") is not None:
                target.labels["namespace_id"] = pod.labels["namespace_id"]
            self._sum_into(pod, target, NAMESPACE_METRICS)

    def node_aggregator(self) -> None:
        for pod in [ms for ms in self.batch.values() if ms.labels["type"] == POD and ms.labels.get("nodename")]:
            if (node := self.batch.get(f"node:{pod.labels['nodename']}")) is not None:  # never creates nodes
                self._sum_into(pod, node, NODE_METRICS)

    def cluster_aggregator(self) -> None:
        cluster = MetricSet({"type": CLUSTER})
        for ms in [ms for ms in self.batch.values() if ms.labels["type"] == NS]:
            self._sum_into(ms, cluster, NAMESPACE_METRICS)
        self.batch["cluster"] = cluster

    def node_autoscaling_enricher(self) -> None:
        for node in self.s.nodes:
            if (ms := self.batch.get(f"node:{node['metadata']['name']}")) is None:
                continue
            self.copy_labels(node["metadata"].get("labels"), ms)
            status = node.get("status") or {}
            capacity, allocatable = status.get("capacity") or {}, status.get("allocatable") or {}
            for resource, stem in STANDARD_RESOURCES.items():
                if resource == "ephemeral-storage" and not (resource in capacity and resource in allocatable):
                    continue
                milli = resource == "cpu"
                alloc = float(quantity(allocatable.get(resource), milli=milli))
                ms.metrics[f"{stem}/node_capacity"] = float(quantity(capacity.get(resource), milli=milli))
                ms.metrics[f"{stem}/node_allocatable"] = alloc
                if alloc != 0:
                    used = ms.metrics.get("cpu/usage_rate" if milli else f"{stem}/usage", 0)
                    ms.metrics[f"{stem}/node_utilization"] = used / alloc
                    ms.metrics[f"{stem}/node_reservation"] = ms.metrics.get(f"{stem}/request", 0) / alloc


def update_resources(ms: MetricSet, spec: dict[str, Any]) -> None:
    resources = spec.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for resource, stem in STANDARD_RESOURCES.items():
        ms.metrics[f"{stem}/request"] = quantity(requests.get(resource), milli=resource == "cpu")
        ms.metrics[f"{stem}/limit"] = quantity(limits.get(resource), milli=resource == "cpu")
    for resource, text in requests.items():
        if resource not in STANDARD_RESOURCES:
            ms.metrics[f"{resource}/request"] = quantity(text)


# --- scenarios, the pipeline, the comparison ------------------------------------------------------


@dataclass
class Scenario:
    rows: list[dict[str, Any]]  # the kubelet window: keys, times, metrics, custom/* values
    pods: list[dict[str, Any]] = field(default_factory=list)  # API objects as list/watch return them
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    separator: str = ","
    store: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()


def run_pipeline(s: Scenario) -> list[dict[str, Any]]:
    entities = [{k: v for k, v in r.items() if not k.startswith(CUSTOM)} for r in s.rows]
    custom = [(i, k, v) for i, r in enumerate(s.rows) for k, v in r.items() if k.startswith(CUSTOM)]
    labeled = [{"entity": i, "metric": k, "value": v} for i, k, v in custom]
    copier = LabelCopier(s.separator, s.store, s.ignore)
    pods, containers = pods_tables(s.pods)
    dims = Dimensions(pods, containers, namespaces_table(s.namespaces), nodes_table(s.nodes))
    stages = [PodEnricher(copier), NamespaceEnricher(), PodAggregator(), NamespaceAggregator(), NodeAggregator()]
    pipeline = Pipeline([*stages, ClusterAggregator(), NodeAutoscalingEnricher(copier)])
    window = pipeline.process(make_frames(entities, labeled=labeled).to_batch(), T0, dims)
    assert window.failures == ()
    out = [{k: v for k, v in r.items() if v is not None} for r in window.frames.entities.to_dicts()]
    for r in window.frames.labeled.to_pylist():
        if r["metric"].startswith(CUSTOM):
            assert r["metric"] not in out[r["entity"]], ("two values", r)
            out[r["entity"]][r["metric"]] = r["value"]
    return out


def entity_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in ("type", "nodename", "namespace_name", "pod_name", "container_name"))


def normal(row: dict[str, Any]) -> dict[str, Any]:
    """Floats to 12 significant digits (sums of custom values and ratios may round differently)."""
    return {k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in row.items() if v is not None}


def check(s: Scenario) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Pipeline and reference agree as multisets of entity rows; returns the pipeline's rows by key."""
    got, want = run_pipeline(s), Reference(s).run()
    assert Counter(map(entity_key, got)) == Counter(map(entity_key, want))
    assert len(set(map(entity_key, want))) == len(want), "the scenario has two entities with one key"
    by_key = {entity_key(r): normal(r) for r in got}
    for row in want:
        assert by_key[entity_key(row)] == normal(row), entity_key(row)
    return by_key


# --- random windows -------------------------------------------------------------------------------

NODES, NAMESPACES, POD_NAMES = ("n1", "n2", "n3"), ("default", "kube-system", "team-a"), ("web", "db", "web-1")
PAIRS = [(ns, pod) for ns in NAMESPACES for pod in POD_NAMES]
POD_KEYS = st.lists(st.sampled_from(PAIRS), unique=True, min_size=2, max_size=5)
CONTAINER_NAMES = st.lists(st.sampled_from(("app", "sidecar", "istio-proxy")), unique=True, max_size=3)
SYS_NAMES = st.lists(st.sampled_from(("kubelet", "runtime")), unique=True, max_size=2)
LABEL_KEYS = ("app", "app.kubernetes.io/name", "app-tier", "app/x", "ap", "app_z", "App", "zone")
LABEL_VALUES = st.sampled_from(("x", "a.b", "v-1", "Z", ""))
LABELS = st.none() | st.dictionaries(st.sampled_from(LABEL_KEYS), LABEL_VALUES, min_size=1, max_size=4)
STORE_SPECS = ("team=app", "app", "name=app.kubernetes.io/name", "tier=app-tier", "zone")
GAUGES = ("cpu/usage_rate", "memory/usage", "memory/working_set", "ephemeral_storage/usage", "process/count")
WINDOW_METRICS = (*GAUGES, "cpu/usage", "uptime")  # and two counters, never summed
TIMES = st.sampled_from([T0 - timedelta(seconds=s) for s in (1, 7, 30, 95)])
CUSTOM_VALUES = st.dictionaries(st.sampled_from([f"{CUSTOM}qps", f"{CUSTOM}lag"]), st.sampled_from([0.5, 3.25]))
LIKELY = st.integers(0, 3).map(lambda n: n < 3)  # true 3 times in 4, and when shrunk


def quantities(*suffixes: str) -> st.SearchStrategy[str]:
    number = st.just("0") | st.integers(0, 4000).map(str)
    return st.tuples(number, st.sampled_from(["", ".5", ".125"]), st.sampled_from(suffixes)).map("".join)


CPU, BYTES = quantities("", "m", "e-2"), quantities("", "m", "k", "M", "G", "Ki", "Mi", "Gi", "e3")
STANDARD = {"cpu": CPU, "memory": BYTES, "ephemeral-storage": BYTES}
CAPACITY = st.none() | st.fixed_dictionaries({"memory": BYTES}, optional={"cpu": CPU, "ephemeral-storage": BYTES})
ALLOCATABLE = st.fixed_dictionaries({"cpu": CPU, "ephemeral-storage": BYTES}, optional={"memory": BYTES})
LIMITS = st.fixed_dictionaries({}, optional=STANDARD | {"nvidia.com/gpu": BYTES})
REQUESTS = st.fixed_dictionaries({}, optional=STANDARD | {"nvidia.com/gpu": BYTES, "hugepages-2Mi": BYTES})
RESOURCES = st.fixed_dictionaries({"requests": REQUESTS, "limits": LIMITS})


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    rows: list[dict[str, Any]] = []

    def entity(**key: str) -> None:
        present, base = draw(st.integers(0, 2 ** len(WINDOW_METRICS) - 1)), draw(st.integers(0, 10**6))
        values = {m: base + 7919 * i for i, m in enumerate(WINDOW_METRICS) if present >> i & 1}  # 2 draws, not 14
        custom = draw(CUSTOM_VALUES) if key["type"] != NODE else {}
        row = {**key, "start_time": draw(TIMES), "sample_time": draw(TIMES), **values, **custom}
        rows.append(row)

    nodes: list[dict[str, Any]] = []
    for node in NODES:
        if draw(LIKELY):
            entity(type=NODE, nodename=node)
        for name in draw(SYS_NAMES):
            entity(type=SYS, nodename=node, container_name=name)
        if draw(LIKELY):  # known to the API
            kinds, names = st.sampled_from(["Hostname", "InternalIP"]), st.sampled_from(["", f"h-{node}", "x.y"])
            addresses = draw(st.lists(st.fixed_dictionaries({"type": kinds, "address": names}), max_size=3))
            status = {"capacity": draw(CAPACITY), "allocatable": draw(ALLOCATABLE), "addresses": addresses}
            external_id = draw(st.sampled_from([None, "", f"ext-{node}"]))
            meta = {"name": node, "uid": f"u-{node}", "labels": draw(LABELS)}
            nodes.append({"metadata": meta, "spec": {"externalID": external_id}, "status": status})
    pods: list[dict[str, Any]] = []
    for ns, name in draw(POD_KEYS):
        where = {"nodename": draw(st.sampled_from(NODES)), "namespace_name": ns, "pod_name": name}
        if draw(st.booleans()):
            entity(type=POD, **where, pod_id=f"k-{ns}-{name}")
        for c in draw(CONTAINER_NAMES):
            entity(type=CONTAINER, **where, container_name=c, pod_id=f"k-{ns}-{name}")
        if draw(st.booleans()):  # known to the API (maybe with containers the kubelet did not report)
            spec_names = draw(CONTAINER_NAMES)
            containers = [{"name": c, "image": f"reg/{c}", "resources": draw(RESOURCES)} for c in spec_names]
            statuses = [{"name": c, "restartCount": draw(st.integers(0, 4))} for c in spec_names if draw(st.booleans())]
            pod_meta = {"namespace": ns, "name": name, "uid": f"uid-{ns}-{name}", "labels": draw(LABELS)}
            pod = {"metadata": pod_meta, "spec": {"nodeName": where["nodename"], "containers": containers}}
            pods.append(pod | {"status": {"phase": "Running", "containerStatuses": statuses}})
    namespaces = [{"metadata": {"name": ns, "uid": f"uid-ns-{ns}"}} for ns in NAMESPACES if draw(LIKELY)]
    separator = draw(st.sampled_from([",", ";", " | "]))
    store = tuple(draw(st.lists(st.sampled_from(STORE_SPECS), unique=True, min_size=1, max_size=3)))
    ignore = tuple(draw(st.lists(st.sampled_from(LABEL_KEYS), unique=True, max_size=2)))
    return Scenario(rows, pods, namespaces, nodes, separator, store, ignore)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(scenarios())
def test_chain_matches_the_reference(scenario: Scenario) -> None:
    check(scenario)


# --- hand-made windows ----------------------------------------------------------------------------

T1, T2 = T0 - timedelta(seconds=20), T0 - timedelta(seconds=5)


def row(kind: str, node: str, *key: str, **values: Any) -> dict[str, Any]:
    """A kubelet row: ``key`` is (namespace, pod[, container]); metric names need ``**{...}``."""
    names = dict(zip(("namespace_name", "pod_name", "container_name"), key, strict=False))
    uid = {"pod_id": f"k-{key[1]}"} if len(key) > 1 else {}
    return {"type": kind, "nodename": node, **names, **uid, "start_time": T1, "sample_time": T2, **values}


def api_pod(name: str, *containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    statuses = [{"name": c, "restartCount": n} for c, n in extra.get("restarts", {}).items()]
    meta = {"namespace": "default", "name": name, "uid": f"uid-{name}", "labels": extra.get("labels")}
    return {"metadata": meta, "spec": {"containers": list(containers)}, "status": {"containerStatuses": statuses}}


def spec(name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "image": f"img/{name}", "resources": {"requests": requests or {}, "limits": limits or {}}}


def api_node(name: str, capacity: dict[str, str], allocatable: dict[str, str], **labels: str) -> dict[str, Any]:
    status = {"capacity": capacity, "allocatable": allocatable, "addresses": [{"type": "Hostname", "address": "h"}]}
    return {"metadata": {"name": name, "labels": labels}, "spec": {"externalID": f"ext-{name}"}, "status": status}


ALLOCATABLE_1 = {"cpu": "3920m", "memory": "1Gi", "ephemeral-storage": "9"}
NODE_1 = api_node("n1", {"cpu": "4", "memory": "1Gi"}, ALLOCATABLE_1, zone="a")
DEFAULT_NS = {"metadata": {"name": "default", "uid": "uid-ns-default"}}


def test_pod_with_its_own_values_and_containers() -> None:
    rows = [
        row(NODE, "n1", **{"cpu/usage_rate": 980, "memory/usage": 1 << 29}),
        row(POD, "n1", "default", "web", **{"memory/usage": 100, "cpu/usage_rate": 20}),
        row(CONTAINER, "n1", "default", "web", "app", **{"memory/usage": 30, "cpu/usage": 99, "custom/qps": 1.5}),
        row(CONTAINER, "n1", "default", "web", "side", **{"memory/usage": 40, "cpu/usage_rate": 7, "custom/qps": 2.0}),
    ]
    app = spec("app", {"cpu": "250m", "memory": "64Mi"}, {"cpu": "1"})
    side = spec("side", {"cpu": ".5", "nvidia.com/gpu": "1"})
    web = api_pod("web", app, side, labels={"app": "web", "app.kubernetes.io/name": "web", "app-tier": "fe"})
    out = check(Scenario(rows, [web], [DEFAULT_NS], [NODE_1], ";", ("team=app",), ("app-tier",)))
    pod = out[(POD, "n1", "default", "web", None)]
    assert (pod["memory/usage"], pod["cpu/usage_rate"], pod["cpu/request"], pod["cpu/limit"]) == (100, 20, 750, 1000)
    assert (pod["nvidia.com/gpu/request"], pod["custom/qps"], "cpu/usage" in pod) == (1, 3.5, False)
    assert (pod["labels"], pod["team"], pod["hostname"]) == ("app.kubernetes.io/name:web;app:web", "web", "h")
    node = out[(NODE, "n1", None, None, None)]
    assert (node["cpu/request"], node["labels"], node["memory/node_utilization"]) == (750, "zone:a", 0.5)
    assert node["cpu/node_reservation"] == pytest.approx(750 / 3920)
    assert "ephemeral_storage/node_capacity" not in node  # capacity does not list it
    assert out[(CLUSTER, None, None, None, None)]["memory/usage"] == 100


def test_container_and_pod_stubs() -> None:
    rows = [
        row(POD, "n1", "default", "web", **{"memory/usage": 10}),
        row(CONTAINER, "n1", "default", "web", "app"),
        row(CONTAINER, "n1", "default", "db", "main", start_time=T2, sample_time=T1),  # no pod row
    ]
    web = api_pod("web", spec("app", {"cpu": "1"}), spec("side", {"memory": "1Ki"}), labels={"app": "web"})
    db = api_pod("db", spec("main"), spec("backup", {"cpu": "2"}))
    out = check(Scenario(rows, [web, db], [DEFAULT_NS], [NODE_1]))
    side = out[(CONTAINER, "n1", "default", "web", "side")]
    assert (side["memory/request"], side["cpu/request"], side["container_base_image"]) == (1024, 0, "img/side")
    assert (side["pod_id"], side["labels"], side["hostname"], side["start_time"]) == ("uid-web", "app:web", "h", T1)
    db_pod = out[(POD, "n1", "default", "db", None)]
    assert (db_pod["start_time"], db_pod["sample_time"], db_pod["cpu/request"], db_pod["labels"]) == (T2, T1, 2000, "")
    assert out[(CONTAINER, "n1", "default", "db", "backup")]["namespace_id"] == "uid-ns-default"


def test_pod_created_by_the_aggregator_keeps_its_node() -> None:
    rows = [
        row(NODE, "n2", **{"memory/usage": 5}),
        row(CONTAINER, "n2", "team-a", "ghost", "x", **{"memory/usage": 3, "uptime": 9, "custom/lag": 0.5}),
        row(CONTAINER, "n2", "team-a", "ghost", "y", **{"memory/usage": 4, "custom/lag": 0.25}),
    ]
    out = check(Scenario(rows, nodes=[api_node("n2", {"cpu": "2"}, {"cpu": "0"})]))
    ghost = out[(POD, "n2", "team-a", "ghost", None)]
    assert (ghost["memory/usage"], ghost["custom/lag"], ghost["pod_id"], ghost["hostname"]) == (7, 0.75, "k-ghost", "h")
    assert "labels" not in ghost and "uptime" not in ghost and "namespace_id" not in ghost
    n2 = out[(NODE, "n2", None, None, None)]
    assert (n2["cpu/node_capacity"], n2["cpu/node_allocatable"], n2["memory/node_allocatable"]) == (2000.0, 0.0, 0.0)
    assert "cpu/node_utilization" not in n2 and "memory/node_utilization" not in n2


def test_container_stubs_get_no_restart_count() -> None:
    rows = [row(POD, "n1", "default", "web"), row(CONTAINER, "n1", "default", "web", "app")]
    web = api_pod("web", spec("app"), spec("side"), restarts={"app": 2, "side": 5})
    out = {entity_key(r): r for r in run_pipeline(Scenario(rows, [web], nodes=[NODE_1]))}
    assert "restart_count" not in out[(CONTAINER, "n1", "default", "web", "side")]
    assert out[(POD, "n1", "default", "web", None)]["restart_count"] == 2  # Heapster sums app's only
