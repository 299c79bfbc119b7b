"""The vectorized Summary decoder against a plain-Python reference decoder.

The reference below walks each document with ``json.loads`` and ordinary loops, following
HEAPSTER.md §3.3-3.4 the way Heapster's ``metrics/sources/summary/summary.go`` does, plus the
project's documented choices (docs/deviations.md, docs/schema.md):

- an absent or ``null`` field gives no point (no zero filling);
- uint64 values above 2^63-1 (kubelets send 2^64-1 for "unknown") are treated as absent;
- ``uptime`` = now - startTime in whole ms; no uptime without a startTime;
- a container's ephemeral storage is ``rootfs.usedBytes + logs.usedBytes`` only when both are there.

Metric names and the stats field each one is read from come from the catalogue; the traversal is
written out here. The two decoders are compared on the bundled real payloads and on random
documents (hypothesis), as multisets of point rows.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from heapster_columnar.model import catalogue
from heapster_columnar.model.catalogue import EntityType
from heapster_columnar.model.points import to_points
from heapster_columnar.model.schema import ENRICHED_LABELS
from heapster_columnar.samples import summary_paths
from heapster_columnar.sources.summary import DecodeResult, decode_summaries

# When a property fails, hypothesis' pytest plugin imports libcst to suggest a patch; libcst's
# import warns, and with `filterwarnings = error` that turns the failure report into an
# INTERNALERROR. Importing it here once, quietly, keeps failures readable.
with warnings.catch_warnings(), contextlib.suppress(ImportError):  # no libcst: the plugin skips it too
    warnings.simplefilter("ignore")
    import hypothesis.extra._patching  # noqa: F401

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
WINDOW_END = datetime(2024, 1, 1, 12, 1, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

# HEAPSTER.md §3.4: legacy names of system containers; anything else is kept as is.
SYSTEM_CONTAINER_NAMES = {"runtime": "docker-daemon", "misc": "system"}
# HEAPSTER.md §3.3: userDefinedMetrics types Heapster maps 1:1; any other type is skipped.
USER_METRIC_TYPES = ("gauge", "cumulative", "delta")


class Point(NamedTuple):
    """One row of the points table, reduced to the columns the decoder determines."""

    type: str
    metric: str
    nodename: str | None
    namespace_name: str | None
    pod_name: str | None
    pod_id: str | None
    container_name: str | None
    resource_id: str | None
    make: str | None
    model: str | None
    accelerator_id: str | None
    value_int: int | None
    value: float
    sample_time: datetime | None
    start_time: datetime | None


# --- reference decoder -----------------------------------------------------------------------------


def wire_int(value: Any) -> int | None:
    """A uint64 wire value as Heapster's int64: None when absent, null or above int64 max."""
    if value is None:
        return None
    assert isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT64_MAX, value
    return value if value <= INT64_MAX else None


def wire_time(value: Any) -> datetime | None:
    """An RFC 3339 wire time in UTC, at the points table's millisecond precision; null → None."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value).astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def epoch_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def lookup(stats: Any, path: str) -> Any:
    """Value at a dotted path inside a stats object; None when any step is absent or null."""
    for key in path.split("."):
        if not isinstance(stats, dict):
            return None
        stats = stats.get(key)
    return stats


def first_time(stats: dict[str, Any], *blocks: str) -> datetime | None:
    """Heapster's getScrapeTime: the time of the first of ``blocks`` that is present and has one."""
    for block in blocks:
        moment = wire_time(lookup(stats, f"{block}.time"))
        if moment is not None:
            return moment
    return None


def started_after(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Go's ``a.StartTime.After(b.StartTime)``; a null start time is Go's zero time, before any other."""
    start_a, start_b = wire_time(a.get("startTime")), wire_time(b.get("startTime"))
    if start_a is None:
        return False
    return start_b is None or start_a > start_b


class Entity(NamedTuple):
    type: EntityType
    nodename: str | None
    namespace_name: str | None = None
    pod_name: str | None = None
    pod_id: str | None = None
    container_name: str | None = None
    sample_time: datetime | None = None
    start_time: datetime | None = None


class Reference:
    """Collects the points of the documents it is given, in plain Python."""

    def __init__(self, now: datetime) -> None:
        self.now_ms = epoch_ms(now)
        self.points: list[Point] = []

    def emit(
        self,
        entity: Entity,
        metric: str,
        value: int | float,
        *,
        resource_id: str | None = None,
        accelerator: tuple[str | None, str | None, str | None] = (None, None, None),
    ) -> None:
        make, model, accelerator_id = accelerator
        self.points.append(
            Point(
                type=entity.type.value,
                metric=metric,
                nodename=entity.nodename,
                namespace_name=entity.namespace_name,
                pod_name=entity.pod_name,
                pod_id=entity.pod_id,
                container_name=entity.container_name,
                resource_id=resource_id,
                make=make,
                model=model,
                accelerator_id=accelerator_id,
                value_int=value if isinstance(value, int) else None,
                value=float(value),
                sample_time=entity.sample_time,
                start_time=entity.start_time,
            )
        )

    # -- pieces shared by the entity kinds --

    def plain(self, entity: Entity, stats: dict[str, Any], ephemeral: int | None) -> None:
        """uptime, ephemeral_storage/usage and every catalogue metric read from a stats field."""
        if entity.start_time is not None:
            self.emit(entity, catalogue.UPTIME.name, self.now_ms - epoch_ms(entity.start_time))
        if ephemeral is not None:
            self.emit(entity, catalogue.EPHEMERAL_STORAGE_USAGE.name, ephemeral)
        for metric in catalogue.summary_plain_metrics():
            if entity.type not in metric.entities:
                continue  # e.g. network/* exists for nodes and pods only, process/count for pods
            assert metric.summary_field is not None
            value = wire_int(lookup(stats, metric.summary_field))
            if value is not None:
                self.emit(entity, metric.name, value)

    def filesystem(self, entity: Entity, fs: Any, resource_id: str) -> None:
        if not isinstance(fs, dict):
            return
        for metric in catalogue.summary_labeled_metrics("filesystem/"):
            value = wire_int(fs.get(metric.summary_field))
            if value is not None:
                self.emit(entity, metric.name, value, resource_id=resource_id)

    def container(self, kind: EntityType, container: dict[str, Any], labels: dict[str, str]) -> None:
        name = container["name"]
        if kind is EntityType.SYS_CONTAINER:
            name = SYSTEM_CONTAINER_NAMES.get(name, name)
        entity = Entity(
            type=kind,
            container_name=name,
            sample_time=first_time(container, "cpu", "memory"),
            start_time=wire_time(container.get("startTime")),
            **labels,
        )
        rootfs, logs = container.get("rootfs"), container.get("logs")
        ephemeral = None
        if isinstance(rootfs, dict) and isinstance(logs, dict):
            root_used, logs_used = wire_int(rootfs.get("usedBytes")), wire_int(logs.get("usedBytes"))
            if root_used is not None and logs_used is not None and root_used + logs_used <= INT64_MAX:
                ephemeral = root_used + logs_used
        self.plain(entity, container, ephemeral)
        self.filesystem(entity, rootfs, "/")
        self.filesystem(entity, logs, "logs")
        for accelerator in container.get("accelerators") or []:
            if accelerator is None:
                continue
            names = (accelerator.get("make"), accelerator.get("model"), accelerator.get("id"))
            for metric in catalogue.summary_labeled_metrics("accelerator/"):
                value = wire_int(accelerator.get(metric.summary_field))
                if value is not None:
                    self.emit(entity, metric.name, value, accelerator=names)
        # Heapster keeps custom metrics in the MetricValues map: one value per name, the last one wins.
        custom: dict[str, float] = {}
        for metric in container.get("userDefinedMetrics") or []:
            if metric is None or metric.get("type") not in USER_METRIC_TYPES or metric.get("value") is None:
                continue
            custom[metric["name"]] = float(metric["value"])
        for metric_name, value in custom.items():
            self.emit(entity, catalogue.CUSTOM_PREFIX + metric_name, value)

    # -- one document --

    def document(self, raw: bytes) -> None:
        doc = json.loads(raw)
        node = doc["node"]
        nodename = node["nodeName"]
        entity = Entity(
            type=EntityType.NODE,
            nodename=nodename,
            sample_time=first_time(node, "cpu", "memory", "network"),
            start_time=wire_time(node.get("startTime")),
        )
        self.plain(entity, node, wire_int(lookup(node, "fs.usedBytes")))
        self.filesystem(entity, node.get("fs"), "/")
        for container in node.get("systemContainers") or []:
            if container is not None:
                self.container(EntityType.SYS_CONTAINER, container, {"nodename": nodename})

        for pod in doc.get("pods") or []:
            if pod is None:
                continue
            ref = pod["podRef"]
            labels = {
                "nodename": nodename,
                "namespace_name": ref["namespace"],
                "pod_name": ref["name"],
                "pod_id": ref["uid"],
            }
            entity = Entity(
                type=EntityType.POD,
                sample_time=first_time(pod, "network"),  # pods: network.time only
                start_time=wire_time(pod.get("startTime")),
                **labels,
            )
            self.plain(entity, pod, wire_int(lookup(pod, "ephemeral-storage.usedBytes")))
            for volume in pod.get("volume") or []:
                if volume is not None:
                    self.filesystem(entity, volume, "Volume:" + (volume.get("name") or ""))

            # Repeated names: a container replaces the one kept so far, unless that one started later.
            kept: dict[str, dict[str, Any]] = {}
            for container in pod.get("containers") or []:
                old = kept.get(container["name"])
                if old is not None and started_after(old, container):
                    continue
                kept[container["name"]] = container
            for container in kept.values():
                self.container(EntityType.POD_CONTAINER, container, labels)


def reference_points(documents: Iterable[bytes], now: datetime = NOW) -> list[Point]:
    reference = Reference(now)
    for raw in documents:
        reference.document(raw)
    return reference.points


# --- the vectorized decoder, reduced to the same rows -----------------------------------------------


def vectorized_points(result: DecodeResult) -> list[Point]:
    table = to_points(result.batch, WINDOW_END)
    assert table.column("timestamp").to_pylist() == [WINDOW_END] * table.num_rows
    for label in ENRICHED_LABELS:
        assert table.column(label).null_count == table.num_rows, f"{label} is for the enrichers to fill"
    return [Point(**row) for row in table.select(list(Point._fields)).to_pylist()]


def assert_same_points(actual: Sequence[Point], expected: Sequence[Point]) -> None:
    got, want = Counter(actual), Counter(expected)
    if got == want:
        return
    missing, unexpected = want - got, got - want
    lines = [f"{missing.total()} expected points missing, {unexpected.total()} unexpected"]
    lines += [f"  missing:    {p}" for p in sorted(missing.elements(), key=repr)[:20]]
    lines += [f"  unexpected: {p}" for p in sorted(unexpected.elements(), key=repr)[:20]]
    raise AssertionError("\n".join(lines))


def decode(
    docs: Sequence[bytes], *, now: datetime = NOW, sources: Sequence[str] | None = None, chunk_bytes: int | None = None
) -> DecodeResult:
    extra = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    return decode_summaries(docs, now=now, sources=sources, **extra)


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


# --- the reference itself, on hand-written documents ---------------------------------------------------


def test_reference_follows_the_rules_on_a_hand_written_document() -> None:
    """What the property tests take on trust, spelled out once with values read off the document."""
    t = "2024-01-01T11:00:00Z"
    sample = datetime(2024, 1, 1, 11, 0, tzinfo=UTC)

    def app(start: str, cpu: int) -> dict[str, Any]:
        return {"name": "app", "startTime": start, "cpu": {"time": t, "usageCoreNanoSeconds": cpu}}

    doc = {
        "node": {
            "nodeName": "n",
            "startTime": None,  # no uptime
            "memory": {"time": t, "usageBytes": UINT64_MAX},  # unknown: no point
            "systemContainers": [{"name": "runtime", "rootfs": {"usedBytes": 5}, "logs": {"inodes": 3}}],
        },
        "pods": [
            {
                "podRef": {"name": "p", "namespace": "ns", "uid": "u"},
                "cpu": {"time": t, "usageCoreNanoSeconds": 1},  # pods take network.time only
                "containers": [
                    app("2024-01-01T10:00:00Z", 10),
                    app("2024-01-01T10:30:00Z", 20),
                    app("2024-01-01T10:30:00Z", 30),  # ties with the one before and comes later: kept
                    app("2024-01-01T10:15:00Z", 40),
                    {
                        "name": "gpu",
                        "accelerators": [{"make": "nvidia", "model": "t4", "id": "0", "dutyCycle": 7}],
                        "userDefinedMetrics": [
                            {"name": "qps", "type": "gauge", "value": 1.5},
                            {"name": "qps", "type": "delta", "value": 2},
                            {"name": "qps", "type": "histogram", "value": 3.0},
                        ],
                    },
                ],
            }
        ],
    }
    pod = {"nodename": "n", "namespace_name": "ns", "pod_name": "p", "pod_id": "u"}
    none4 = (None, None, None, None)

    def point(kind: str, metric: str, labels: dict[str, str], *rest: Any) -> Point:
        return Point(kind, metric, *(labels.get(k) for k in Point._fields[2:7]), *rest)

    docker = {"nodename": "n", "container_name": "docker-daemon"}
    app_, gpu = {**pod, "container_name": "app"}, {**pod, "container_name": "gpu"}
    start = datetime(2024, 1, 1, 10, 30, tzinfo=UTC)
    expected = [
        point("sys_container", "filesystem/usage", docker, "/", None, None, None, 5, 5.0, None, None),
        point("sys_container", "filesystem/inodes", docker, "logs", None, None, None, 3, 3.0, None, None),
        point("pod", "cpu/usage", pod, *none4, 1, 1.0, None, None),
        point("pod_container", "uptime", app_, *none4, 5_400_000, 5_400_000.0, sample, start),
        point("pod_container", "cpu/usage", app_, *none4, 30, 30.0, sample, start),
        point("pod_container", "accelerator/duty_cycle", gpu, None, "nvidia", "t4", "0", 7, 7.0, None, None),
        point("pod_container", "custom/qps", gpu, *none4, None, 2.0, None, None),
    ]
    assert_same_points(reference_points([encode(doc)]), expected)


# --- the real payloads --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", summary_paths(), ids=lambda p: p.name)
def test_real_payload_matches_reference(path: Path) -> None:
    raw = path.read_bytes()
    result = decode([raw], sources=[path.name])
    assert result.errors == ()
    assert result.documents == 1
    expected = reference_points([raw])
    assert expected, "the reference found no points"
    assert_same_points(vectorized_points(result), expected)


def test_all_real_payloads_in_one_call_match_reference() -> None:
    paths = summary_paths()
    assert len(paths) >= 11
    raws = [p.read_bytes() for p in paths]
    result = decode(raws, sources=[p.name for p in paths])
    assert result.errors == ()
    assert result.documents == len(paths)
    assert_same_points(vectorized_points(result), reference_points(raws))


# --- disagreements found by the properties below, pinned as plain examples -------------------------------


def test_repeated_user_metric_name_gives_one_point_the_last() -> None:
    """Heapster: ``MetricValues[custom/<name>] = value`` per entry, so the last valid entry wins."""
    container = {
        "name": "c",
        "userDefinedMetrics": [
            {"name": "qps", "type": "gauge", "value": 1.0},
            {"name": "qps", "type": "gauge", "value": 2.0},
        ],
    }
    pod = {"podRef": {"name": "p", "namespace": "ns", "uid": "u"}, "containers": [container]}
    raw = encode({"node": {"nodeName": "n"}, "pods": [pod]})
    points = vectorized_points(decode([raw]))
    assert [p.value for p in points if p.metric == "custom/qps"] == [2.0]
    assert_same_points(points, reference_points([raw]))


# --- random documents ---------------------------------------------------------------------------------

U64_EDGES = (
    0,
    1,
    2**32 - 1,
    2**53 - 1,
    2**53,
    2**53 + 1,
    2**62 + 1,
    INT64_MAX - 1,
    INT64_MAX,
    INT64_MAX + 1,
    2**63 + 1,
    UINT64_MAX - 1,
    UINT64_MAX,
)
uint64s = st.one_of(st.integers(0, 10**12), st.sampled_from(U64_EDGES), st.integers(0, UINT64_MAX))
floats = st.floats(allow_nan=False, allow_infinity=False)
LABEL_WORDS = ("app", "sidecar", "kube-system", "a/b", "x y", "ünï", "", "名前", "new\nline", "\u2028")
label_text = st.sampled_from(LABEL_WORDS) | st.text(max_size=6)
EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)
SPAN_S = 15 * 365 * 86400  # 2015-2030: some start times lie after `now` (negative uptime)


SECONDS = st.integers(0, SPAN_S)
FRACTIONS = st.sampled_from(["", "", "", "", ".5", ".25", ".125", ".000", ".999", ".07"])
ZONES = st.sampled_from(["Z", "Z", "Z", "+00:00", "+02:00", "-05:30"])


@st.composite
def wire_times(draw: st.DrawFn) -> str:
    """RFC 3339 like the kubelet writes (second precision, ``Z``), sometimes with a fraction or offset."""
    moment = EARLIEST + timedelta(seconds=draw(SECONDS))
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + draw(FRACTIONS) + draw(ZONES)


nows = st.integers(0, SPAN_S * 1000).map(lambda ms: EARLIEST + timedelta(milliseconds=ms))

ABSENT = object()  # a key left out of its object


class Slot(NamedTuple):
    """A placeholder for a counter or a time, filled from the document's pools once it is drawn.

    Every counter and time of a document comes from a small per-document pool: one draw per
    field keeps generation fast, and equal values (tied start times, shared sample times,
    repeated counters) come up often.
    """

    pool: str
    index: int


def fill(value: Any, pools: dict[str, list[Any]]) -> Any:
    if isinstance(value, Slot):
        pool = pools[value.pool]
        return pool[value.index % len(pool)]
    if isinstance(value, dict):
        return {key: fill(item, pools) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, pools) for item in value]
    return value


def field(values: Sequence[Any]) -> st.SearchStrategy[Any]:
    """One draw: the key absent, null, or one of ``values`` (present most of the time)."""
    return st.sampled_from([ABSENT, None, *values])


number = field([Slot("number", i) for i in range(6)])
time = field([Slot("time", i) for i in range(4)])
# fields no decoder reads: any value of the right wire type
unread_number = field([0, 7, 2**53 + 1, UINT64_MAX])
unread_float = field([0.0, 1.25, 99.5])
unread_text = field(["", "eth0"])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | floats | label_text,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(label_text, inner, max_size=2),
    max_leaves=4,
)
# Keys no decoder knows, with any JSON under them: they must be ignored.
unknown_fields = st.dictionaries(st.sampled_from(["x-", "x-extra", "x-ünï", "x-\n"]), json_values, min_size=1)


# Strategies are built once: hypothesis validates every new strategy object on its first draw.
ONE_IN_16 = st.integers(0, 15)
BLOCK_PRESENCE = st.sampled_from([ABSENT, None, True, True, True])
USER_METRIC_NAMES = st.sampled_from(["qps", "qps", "latency", "", "ünï"])
USER_METRIC_KINDS = st.sampled_from([*USER_METRIC_TYPES, *USER_METRIC_TYPES, "GAUGE", "counter", "", None, ABSENT])
USER_METRIC_VALUES = st.one_of(floats, floats, floats, st.integers(-(2**70), 2**70), st.none(), st.just(ABSENT))


@st.composite
def _obj(
    draw: st.DrawFn, required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unknown = draw(ONE_IN_16)  # now and then, unknown keys before or after the known ones
    if unknown == 0:
        out.update(draw(unknown_fields))
    for key, strategy in required.items():
        out[key] = draw(strategy)
    for key, strategy in optional.items():
        value = draw(strategy)
        if value is not ABSENT:
            out[key] = value
    if unknown == 1:
        out.update(draw(unknown_fields))
    return out


def obj(required: dict[str, st.SearchStrategy[Any]] | None = None, **optional: st.SearchStrategy[Any]) -> Any:
    """A JSON object; ``optional`` strategies may give ABSENT to leave their key out."""
    return _obj(required or {}, optional)


@st.composite
def _block(draw: st.DrawFn, strategy: st.SearchStrategy[Any]) -> Any:
    presence = draw(BLOCK_PRESENCE)
    return draw(strategy) if presence is True else presence


def block(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An optional object or list: absent, null, or drawn from ``strategy``."""
    return _block(strategy)


def lists_with_nulls(element: st.SearchStrategy[Any], max_size: int = 3) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.one_of(element, element, element, st.none()), max_size=max_size)


_psi_data = obj(total=number, avg10=unread_float, avg60=unread_float, avg300=unread_float)
psi = block(obj(some=block(_psi_data), full=block(_psi_data)))
cpu = block(obj(time=time, usageNanoCores=unread_number, usageCoreNanoSeconds=number, psi=psi))
memory = block(
    obj(
        time=time,
        availableBytes=unread_number,
        usageBytes=number,
        workingSetBytes=number,
        rssBytes=number,
        pageFaults=number,
        majorPageFaults=number,
        psi=psi,
    )
)
_interface = obj(
    {"name": st.sampled_from(["eth0", "cali1"])},
    rxBytes=unread_number,
    rxErrors=unread_number,
    txBytes=unread_number,
    txErrors=unread_number,
)
network = block(
    obj(
        time=time,
        name=unread_text,
        interfaces=block(st.lists(_interface, max_size=2)),
        rxBytes=number,
        rxErrors=number,
        txBytes=number,
        txErrors=number,
    )
)
_fs_fields = {
    "time": time,
    "availableBytes": number,
    "capacityBytes": number,
    "usedBytes": number,
    "inodesFree": number,
    "inodes": number,
    "inodesUsed": unread_number,
}
fs = block(obj(**_fs_fields))
swap = block(obj(time=time, swapAvailableBytes=number, swapUsageBytes=number))
io = block(obj(time=time, psi=psi))
_volume = obj(
    **_fs_fields,
    name=block(label_text),
    pvcRef=block(obj(name=unread_text, namespace=unread_text)),
    volumeHealthStats=block(obj(abnormal=st.booleans())),
)
_accelerator = obj(
    {"make": st.sampled_from(["nvidia", "amd"]), "model": label_text, "id": label_text},
    memoryTotal=number,
    memoryUsed=number,
    dutyCycle=number,
)


_user_metric = obj({"name": USER_METRIC_NAMES}, time=time)


@st.composite
def user_metric(draw: st.DrawFn) -> dict[str, Any]:
    """UserDefinedMetric: mostly valid, so that custom metrics (and repeated names) are common."""
    metric = draw(_user_metric)
    kind = draw(USER_METRIC_KINDS)
    if kind is not ABSENT:
        metric["type"] = kind
    value = draw(USER_METRIC_VALUES)
    if value is not ABSENT:
        metric["value"] = value
    metric["units"], metric["labels"] = "", {"quantile": "0.99"}  # part of the type, never read
    return metric


_container_stats = {
    "startTime": time,
    "cpu": cpu,
    "memory": memory,
    "swap": swap,
    "io": io,
    "rootfs": fs,
    "logs": fs,
    "accelerators": block(lists_with_nulls(_accelerator, max_size=2)),
    "userDefinedMetrics": block(lists_with_nulls(user_metric(), max_size=4)),
}
unnamed_container = obj(**_container_stats)
pod_container = obj({"name": st.sampled_from(["app", "app", "sidecar", ""]) | label_text}, **_container_stats)
unnamed_pod = obj(
    startTime=time,
    containers=block(st.lists(pod_container, max_size=4)),  # few names, so repeats are common
    cpu=cpu,
    memory=memory,
    network=network,
    swap=swap,
    io=io,
    process_stats=block(obj(process_count=number)),
    volume=block(lists_with_nulls(_volume)),
    **{"ephemeral-storage": fs},
)
node_without_containers = obj(
    {"nodeName": st.sampled_from(["node-1", "node-2"]) | st.text(min_size=1, max_size=8)},
    startTime=time,
    cpu=cpu,
    memory=memory,
    network=network,
    fs=fs,
    swap=swap,
    io=io,
    runtime=block(obj(imageFs=fs, containerFs=fs)),
    rlimit=block(obj(time=time, maxpid=unread_number, curproc=unread_number)),
)
SYSTEM_CONTAINER_CANDIDATES = st.permutations(["kubelet", "runtime", "misc", "pods", "docker-daemon", "system", "ünï"])
ZERO_TO_THREE = st.integers(0, 3)
PODS_PRESENCE = st.sampled_from([ABSENT, None, True, True])
ONE_IN_8 = st.integers(0, 7)
NUMBER_POOLS = st.lists(uint64s, min_size=1, max_size=6)
TIME_POOLS = st.lists(wire_times(), min_size=1, max_size=4)


@st.composite
def summaries(draw: st.DrawFn) -> dict[str, Any]:
    node = draw(node_without_containers)
    # system containers: distinct after Heapster's renaming (`runtime` and `docker-daemon` would collide)
    names: dict[str, str] = {}
    for name in draw(SYSTEM_CONTAINER_CANDIDATES)[: draw(ZERO_TO_THREE)]:
        names.setdefault(SYSTEM_CONTAINER_NAMES.get(name, name), name)
    system_containers = [{"name": name, **draw(unnamed_container)} for name in names.values()]
    if system_containers or draw(st.booleans()):
        node["systemContainers"] = system_containers

    pods: list[dict[str, Any] | None] = []
    for i in range(draw(ZERO_TO_THREE)):
        # podRefs are distinct within a document (the index suffix makes them so)
        ref = {"name": draw(label_text) + str(i), "namespace": draw(label_text), "uid": draw(label_text)}
        pods.append({"podRef": ref, **draw(unnamed_pod)})
    if pods and draw(st.booleans()):
        pods.insert(draw(st.integers(0, len(pods))), None)
    doc: dict[str, Any] = {"node": node}
    presence = draw(PODS_PRESENCE)
    if pods or presence is True:
        doc["pods"] = pods
    elif presence is None:
        doc["pods"] = None
    if draw(ONE_IN_8) == 0:
        doc.update(draw(unknown_fields))
    pools = {"number": draw(NUMBER_POOLS), "time": draw(TIME_POOLS)}
    return fill(doc, pools)


INDENTS = st.sampled_from([None, 1, 2])
TRAILERS = st.sampled_from(["", "\n", " \n"])


@st.composite
def encoded(draw: st.DrawFn, doc: dict[str, Any]) -> bytes:
    """A document as a kubelet might send it: pretty or compact, ASCII-escaped or raw UTF-8."""
    text = json.dumps(doc, indent=draw(INDENTS), ensure_ascii=draw(st.booleans()))
    return (text + draw(TRAILERS)).encode()


documents = summaries().flatmap(encoded)
chunk_sizes = st.sampled_from([None, 1, 4096])  # None: the default (one chunk for everything)

# No shrinking: one example takes tens of milliseconds to decode, and hypothesis would spend its full
# five minutes shrinking a document before reporting. A failure lists the points that differ.
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


@PROPERTY
@given(docs=st.lists(documents, min_size=1, max_size=4), now=nows, chunk_bytes=chunk_sizes)
def test_random_documents_match_reference(docs: list[bytes], now: datetime, chunk_bytes: int | None) -> None:
    sources = [f"kubelet_summary:10.0.0.{i}:10255" for i in range(len(docs))]
    result = decode(docs, now=now, sources=sources, chunk_bytes=chunk_bytes)
    assert result.errors == ()
    assert result.documents == len(docs)
    assert_same_points(vectorized_points(result), reference_points(docs, now))


# --- one corrupted document among good ones ------------------------------------------------------------

# Fields the decoder reads, as paths from the document root (created when missing).
NUMBER_PATHS = (
    ("node", "cpu", "usageCoreNanoSeconds"),
    ("node", "memory", "usageBytes"),
    ("node", "network", "txErrors"),
    ("node", "fs", "capacityBytes"),
    ("node", "swap", "swapUsageBytes"),
)


def set_path(doc: dict[str, Any], path: Sequence[str], value: Any) -> None:
    target = doc
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A document the decoder must reject: truncated, not JSON, a string for a number, a bad time, no node."""
    doc = draw(summaries())  # freshly built by `fill`, free to edit
    kind = draw(st.sampled_from(["truncated", "not-json", "string-number", "bad-time", "no-node"]))
    if kind == "truncated":
        whole = draw(encoded(doc)).rstrip()
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == "not-json":
        return draw(
            st.sampled_from([b"<html>502 Bad Gateway</html>", b"not json", b"[]", b"42", b'"summary"', b"{"])
            | st.text(max_size=6).map(lambda s: ("<" + s).encode())
        )
    if kind == "string-number":
        set_path(doc, draw(st.sampled_from(NUMBER_PATHS)), draw(st.sampled_from(["123", "", "unknown"])))
    elif kind == "bad-time":
        set_path(doc, ("node", "startTime"), draw(st.sampled_from(["yesterday", "", "2024-13-01T00:00:00Z"])))
    else:
        how = draw(st.sampled_from(["delete", "null", "no-name"]))
        if how == "delete":
            del doc["node"]
        elif how == "null":
            doc["node"] = None
        else:
            del doc["node"]["nodeName"]
    return draw(encoded(doc))


@settings(PROPERTY, max_examples=100)
@given(
    good=st.lists(documents, min_size=1, max_size=3),
    bad=corrupted(),
    position=st.integers(0, 3),
    chunk_bytes=chunk_sizes,
)
def test_one_corrupted_document_is_named_and_the_rest_decode(
    good: list[bytes], bad: bytes, position: int, chunk_bytes: int | None
) -> None:
    position = min(position, len(good))
    docs = [*good[:position], bad, *good[position:]]
    sources = [f"kubelet_summary:10.0.0.{i}:10255" for i in range(len(docs))]
    result = decode(docs, sources=sources, chunk_bytes=chunk_bytes)
    assert [e.source for e in result.errors] == [sources[position]], result.errors
    assert result.errors[0].detail
    assert result.documents == len(good)
    assert_same_points(vectorized_points(result), reference_points(good))
