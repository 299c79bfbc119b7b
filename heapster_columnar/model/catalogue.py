"""The metric catalogue: every metric Heapster knew, plus our documented extensions, as data.

Every other module derives metric names, kinds and value types from this table; no metric name is
spelled anywhere else in the package. Rows follow HEAPSTER.md §1 (names, kinds, units, value types,
entity types). ``origin`` says which stage produces a metric, ``summary_field`` where the Summary
decoder reads it (a path inside an entity's stats blocks).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass


class Kind(enum.StrEnum):
    """Heapster's metric kind; ``cumulative`` metrics are counters the rate calculator diffs."""

    CUMULATIVE = "cumulative"
    GAUGE = "gauge"
    DELTA = "delta"


class ValueType(enum.StrEnum):
    """Heapster's value-type strings. int64 values are kept exact end to end."""

    INT64 = "int64"
    DOUBLE = "double"


class Unit(enum.StrEnum):
    """Heapster's unit strings (``count`` renders as the empty string in its API)."""

    COUNT = ""
    BYTES = "bytes"
    MILLISECONDS = "ms"
    NANOSECONDS = "ns"
    MILLICORES = "millicores"
    MICROSECONDS = "us"


class EntityType(enum.StrEnum):
    """Values of the ``type`` label (note ``ns``, not ``namespace``)."""

    NODE = "node"
    SYS_CONTAINER = "sys_container"
    POD = "pod"
    POD_CONTAINER = "pod_container"
    NAMESPACE = "ns"
    CLUSTER = "cluster"


class Origin(enum.StrEnum):
    """Which pipeline stage produces a metric."""

    SUMMARY = "summary"  # decoded from the kubelet /stats/summary document
    RATE = "rate"  # rate calculator
    ENRICHER = "enricher"  # pod / namespace / node-autoscaling enrichers
    LEGACY = "legacy"  # only Heapster's cAdvisor `kubernetes` source produced it; we never do
    EXTENSION = "extension"  # not in Heapster: newer Summary fields we carry (documented)


N, S, P, C, NS, CL = (
    EntityType.NODE,
    EntityType.SYS_CONTAINER,
    EntityType.POD,
    EntityType.POD_CONTAINER,
    EntityType.NAMESPACE,
    EntityType.CLUSTER,
)

RATE_SUFFIX = "_rate"
FS_LABELS = ("resource_id",)
ACCELERATOR_LABELS = ("make", "model", "accelerator_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricDescriptor:
    """One catalogue row.

    ``entities`` lists the entity types carrying the metric once every processor has run;
    ``labels`` are the extra labels of a labeled metric (empty for plain metrics);
    ``summary_field`` is the dotted path inside a stats object (``cpu.usageCoreNanoSeconds``)
    for metrics the decoder reads straight from the Summary API. A rate is named after its counter
    plus ``_rate`` (Heapster's own convention), so ``rate_of`` is derived, never spelled twice.
    """

    name: str
    kind: Kind
    value_type: ValueType
    unit: Unit
    entities: frozenset[EntityType]
    origin: Origin
    description: str
    labels: tuple[str, ...] = ()
    summary_field: str | None = None

    @property
    def rate_of(self) -> str | None:
        """Name of the counter this rate is computed from, or None for a non-rate."""
        return self.name.removesuffix(RATE_SUFFIX) if self.name.endswith(RATE_SUFFIX) else None

    @property
    def labeled(self) -> bool:
        return bool(self.labels)

    @property
    def is_int(self) -> bool:
        return self.value_type is ValueType.INT64


def _m(
    name: str,
    kind: Kind,
    vt: ValueType,
    unit: Unit,
    entities: tuple[EntityType, ...],
    origin: Origin,
    description: str,
    *,
    labels: tuple[str, ...] = (),
    field: str | None = None,
) -> MetricDescriptor:
    return MetricDescriptor(
        name=name,
        kind=kind,
        value_type=vt,
        unit=unit,
        entities=frozenset(entities),
        origin=origin,
        description=description,
        labels=labels,
        summary_field=field,
    )


CUM, GAUGE = Kind.CUMULATIVE, Kind.GAUGE
INT, FLOAT = ValueType.INT64, ValueType.DOUBLE
SUM, RATE, ENR, LEG, EXT = Origin.SUMMARY, Origin.RATE, Origin.ENRICHER, Origin.LEGACY, Origin.EXTENSION
NSPC = (N, S, P, C)
ALL_AGG = (C, P, N, NS, CL)

# The table is kept one row per line on purpose (formatter off): it reads as the table in HEAPSTER.md §1.
# Rate rows name their counter implicitly: `<counter>_rate`, as in Heapster (checked below).
# fmt: off
CATALOGUE: tuple[MetricDescriptor, ...] = (
    # --- 1a. plain metrics ---
    (UPTIME := _m('uptime', CUM, INT, Unit.MILLISECONDS, NSPC, SUM, "ms since the entity's start time, on the collector's clock")),
    (CPU_USAGE := _m('cpu/usage', CUM, INT, Unit.NANOSECONDS, NSPC, SUM, 'cumulative CPU core-nanoseconds', field='cpu.usageCoreNanoSeconds')),
    (CPU_USAGE_RATE := _m('cpu/usage_rate', GAUGE, INT, Unit.COUNT, (N, S, P, C, NS, CL), RATE, 'CPU usage in millicores')),
    _m('cpu/load', GAUGE, INT, Unit.COUNT, NSPC, LEG, 'cAdvisor load average (legacy source only)'),
    _m('cpu/request', GAUGE, INT, Unit.COUNT, ALL_AGG, ENR, 'CPU request in millicores'),
    _m('cpu/limit', GAUGE, INT, Unit.COUNT, ALL_AGG, ENR, 'CPU limit in millicores'),
    (MEMORY_USAGE := _m('memory/usage', GAUGE, INT, Unit.BYTES, (N, S, P, C, NS, CL), SUM, 'total memory usage', field='memory.usageBytes')),
    (MEMORY_WORKING_SET := _m('memory/working_set', GAUGE, INT, Unit.BYTES, NSPC, SUM, 'memory working set', field='memory.workingSetBytes')),
    _m('memory/rss', GAUGE, INT, Unit.BYTES, NSPC, SUM, 'anonymous + swap-cache memory', field='memory.rssBytes'),
    _m('memory/cache', GAUGE, INT, Unit.BYTES, NSPC, LEG, 'page cache (legacy source only)'),
    _m('memory/page_faults', CUM, INT, Unit.COUNT, NSPC, SUM, 'minor + major page faults', field='memory.pageFaults'),
    _m('memory/major_page_faults', CUM, INT, Unit.COUNT, NSPC, SUM, 'major page faults', field='memory.majorPageFaults'),
    _m('memory/page_faults_rate', GAUGE, FLOAT, Unit.COUNT, NSPC, RATE, 'page faults per second'),
    _m('memory/major_page_faults_rate', GAUGE, FLOAT, Unit.COUNT, NSPC, RATE, 'major page faults per second'),
    _m('memory/request', GAUGE, INT, Unit.BYTES, ALL_AGG, ENR, 'memory request'),
    _m('memory/limit', GAUGE, INT, Unit.BYTES, ALL_AGG, ENR, 'memory limit'),
    _m('network/rx', CUM, INT, Unit.BYTES, (N, P), SUM, 'bytes received, default interface', field='network.rxBytes'),
    _m('network/rx_errors', CUM, INT, Unit.COUNT, (N, P), SUM, 'receive errors, default interface', field='network.rxErrors'),
    _m('network/tx', CUM, INT, Unit.BYTES, (N, P), SUM, 'bytes sent, default interface', field='network.txBytes'),
    _m('network/tx_errors', CUM, INT, Unit.COUNT, (N, P), SUM, 'send errors, default interface', field='network.txErrors'),
    _m('network/rx_rate', GAUGE, FLOAT, Unit.COUNT, (N, P), RATE, 'bytes received per second'),
    _m('network/rx_errors_rate', GAUGE, FLOAT, Unit.COUNT, (N, P), RATE, 'receive errors per second'),
    _m('network/tx_rate', GAUGE, FLOAT, Unit.COUNT, (N, P), RATE, 'bytes sent per second'),
    _m('network/tx_errors_rate', GAUGE, FLOAT, Unit.COUNT, (N, P), RATE, 'send errors per second'),
    (EPHEMERAL_STORAGE_USAGE := _m('ephemeral_storage/usage', GAUGE, INT, Unit.BYTES, NSPC, SUM, 'local ephemeral storage used (rules: docs/schema.md)')),
    _m('ephemeral_storage/request', GAUGE, INT, Unit.BYTES, (N, P, C), ENR, 'ephemeral-storage request'),
    _m('ephemeral_storage/limit', GAUGE, INT, Unit.BYTES, (N, P, C), ENR, 'ephemeral-storage limit'),
    _m('restart_count', GAUGE, INT, Unit.COUNT, (P, C), ENR, "container restarts (Heapster's descriptor says cumulative; it emits a gauge)"),
    _m('cpu/node_capacity', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'node CPU capacity in millicores'),
    _m('cpu/node_allocatable', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'node allocatable CPU in millicores'),
    _m('cpu/node_utilization', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'cpu/usage_rate / allocatable'),
    _m('cpu/node_reservation', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'cpu/request / allocatable'),
    _m('memory/node_capacity', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'node memory capacity in bytes'),
    _m('memory/node_allocatable', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'node allocatable memory in bytes'),
    _m('memory/node_utilization', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'memory/usage / allocatable'),
    _m('memory/node_reservation', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'memory/request / allocatable'),
    _m('ephemeral_storage/node_capacity', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'node ephemeral-storage capacity in bytes'),
    _m('ephemeral_storage/node_allocatable', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'node allocatable ephemeral storage in bytes'),
    _m('ephemeral_storage/node_utilization', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'ephemeral_storage/usage / allocatable'),
    _m('ephemeral_storage/node_reservation', GAUGE, FLOAT, Unit.COUNT, (N,), ENR, 'ephemeral_storage/request / allocatable'),
    # --- extensions: Summary fields Heapster never knew, carried because users asked ---
    _m('memory/swap_usage', GAUGE, INT, Unit.BYTES, NSPC, EXT, 'swap in use (kubelet >= 1.28 `swap`)', field='swap.swapUsageBytes'),
    _m('memory/swap_available', GAUGE, INT, Unit.BYTES, NSPC, EXT, 'swap available (kubelet >= 1.28 `swap`)', field='swap.swapAvailableBytes'),
    _m('process/count', GAUGE, INT, Unit.COUNT, (P,), EXT, 'processes in the pod (`process_stats.process_count`)', field='process_stats.process_count'),
    _m('cpu/psi_some', CUM, INT, Unit.MICROSECONDS, NSPC, EXT, 'PSI: total time some task stalled on CPU (kernel total, as sent)', field='cpu.psi.some.total'),
    _m('cpu/psi_full', CUM, INT, Unit.MICROSECONDS, NSPC, EXT, 'PSI: total time all tasks stalled on CPU', field='cpu.psi.full.total'),
    _m('memory/psi_some', CUM, INT, Unit.MICROSECONDS, NSPC, EXT, 'PSI: total time some task stalled on memory', field='memory.psi.some.total'),
    _m('memory/psi_full', CUM, INT, Unit.MICROSECONDS, NSPC, EXT, 'PSI: total time all tasks stalled on memory', field='memory.psi.full.total'),
    _m('io/psi_some', CUM, INT, Unit.MICROSECONDS, NSPC, EXT, 'PSI: total time some task stalled on I/O', field='io.psi.some.total'),
    _m('io/psi_full', CUM, INT, Unit.MICROSECONDS, NSPC, EXT, 'PSI: total time all tasks stalled on I/O', field='io.psi.full.total'),
    # --- 1b. labeled metrics ---
    _m('filesystem/usage', GAUGE, INT, Unit.BYTES, NSPC, SUM, 'bytes used', labels=FS_LABELS, field='usedBytes'),
    _m('filesystem/limit', GAUGE, INT, Unit.BYTES, NSPC, SUM, 'filesystem capacity', labels=FS_LABELS, field='capacityBytes'),
    _m('filesystem/available', GAUGE, INT, Unit.BYTES, NSPC, SUM, 'bytes available', labels=FS_LABELS, field='availableBytes'),
    _m('filesystem/inodes', GAUGE, INT, Unit.BYTES, NSPC, SUM, 'inodes (Heapster declares bytes; it is a count)', labels=FS_LABELS, field='inodes'),
    _m('filesystem/inodes_free', GAUGE, INT, Unit.BYTES, NSPC, SUM, 'free inodes (declared bytes; a count)', labels=FS_LABELS, field='inodesFree'),
    _m('accelerator/memory_total', GAUGE, INT, Unit.BYTES, (S, C), SUM, 'accelerator memory', labels=ACCELERATOR_LABELS, field='memoryTotal'),
    _m('accelerator/memory_used', GAUGE, INT, Unit.BYTES, (S, C), SUM, 'accelerator memory in use', labels=ACCELERATOR_LABELS, field='memoryUsed'),
    _m('accelerator/duty_cycle', GAUGE, INT, Unit.COUNT, (S, C), SUM, 'percent busy over the last 10 s', labels=ACCELERATOR_LABELS, field='dutyCycle'),
    _m('disk/io_read_bytes', CUM, INT, Unit.BYTES, NSPC, LEG, 'bytes read (legacy source only)', labels=FS_LABELS),
    _m('disk/io_write_bytes', CUM, INT, Unit.BYTES, NSPC, LEG, 'bytes written (legacy source only)', labels=FS_LABELS),
    _m('disk/io_read_bytes_rate', GAUGE, FLOAT, Unit.COUNT, NSPC, LEG, 'bytes read per second (legacy only)', labels=FS_LABELS),
    _m('disk/io_write_bytes_rate', GAUGE, FLOAT, Unit.COUNT, NSPC, LEG, 'bytes written per second (legacy only)', labels=FS_LABELS),
)
# fmt: on

BY_NAME: dict[str, MetricDescriptor] = {m.name: m for m in CATALOGUE}
assert len(BY_NAME) == len(CATALOGUE), "duplicate metric name in the catalogue"
assert all(BY_NAME[m.rate_of].kind is CUM for m in CATALOGUE if m.rate_of), "a rate without a cumulative counter"

# Families whose names are made at run time (HEAPSTER.md §1a): `custom/<name>` from the kubelet's
# userDefinedMetrics (float, kind from the kubelet) and `<resource>/request` for extended resources.
CUSTOM_PREFIX = "custom/"
REQUEST_SUFFIX = "/request"

# Summary fields we read but Heapster ignored, and fields we deliberately skip (with the reason).
SKIPPED_SUMMARY_FIELDS: dict[str, str] = {
    "cpu.usageNanoCores": "kubelet's own averaged rate; we compute rates from the counter like Heapster",
    "memory.availableBytes": "derivable (limit - working set); Heapster ignored it",
    "fs.inodesUsed": "derivable (inodes - inodesFree); Heapster ignored it",
    "network.interfaces": "per-interface counters; Heapster used only the default interface",
    "node.runtime.imageFs / containerFs": "runtime image filesystem; Heapster ignored it",
    "node.rlimit": "pid limits; not a per-entity usage metric",
    "*.psi.*.avg10/avg60/avg300": "kernel moving averages; the cumulative totals are carried instead",
    "pods[].volume[].pvcRef": "claim reference; belongs with dimension tables, not points",
    "pods[].volume[].volumeHealthStats": "boolean health flag, not a metric",
}


def get(name: str) -> MetricDescriptor:
    """Return the descriptor for ``name``; KeyError names the unknown metric."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}") from None


def by_origin(*origins: Origin) -> Iterator[MetricDescriptor]:
    """Descriptors produced by any of ``origins``, in catalogue order."""
    return (m for m in CATALOGUE if m.origin in origins)


def summary_plain_metrics() -> tuple[MetricDescriptor, ...]:
    """Plain metrics read from a stats block field (Heapster's and the extensions)."""
    return tuple(m for m in CATALOGUE if m.summary_field is not None and not m.labeled and m.origin in (SUM, EXT))


def summary_labeled_metrics(prefix: str) -> tuple[MetricDescriptor, ...]:
    """Labeled metrics of one family (``filesystem/`` or ``accelerator/``) read from the Summary."""
    return tuple(m for m in CATALOGUE if m.labeled and m.origin is SUM and m.name.startswith(prefix))
