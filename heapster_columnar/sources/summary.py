"""Kubelet ``/stats/summary`` documents → MetricBatch, vectorized (HEAPSTER.md §3.3-3.4).

Documents are handed to pyarrow's multi-threaded JSON reader in chunks of many nodes, against the
explicit wire schema in :mod:`.summary_wire`; nested lists (system containers, pods, containers,
volumes, accelerators, user metrics) are flattened with list offsets, so no Python code runs per
pod, container or point. The only per-document Python work is finding the bad document when a
chunk fails to parse, so one broken kubelet never costs the others their window.

Where we differ from Heapster (all listed in docs/deviations.md): values above int64 (kubelets send
2^64-1 for "unknown") are treated as absent instead of wrapping to negative numbers; a container
whose ``rootfs``/``logs`` lacks ``usedBytes`` gets no ephemeral-storage value instead of crashing
the decode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from heapster_columnar.errors import PayloadError
from heapster_columnar.model import catalogue
from heapster_columnar.model.batch import MetricBatch, concat_batches
from heapster_columnar.model.catalogue import EntityType
from heapster_columnar.model.points import melt
from heapster_columnar.model.schema import LABELED_SCHEMA, METRIC_TYPE, TIME, entity_schema
from heapster_columnar.sources import summary_wire as wire

__all__ = ["DecodeResult", "decode_summaries"]

INT64_MAX = 2**63 - 1
DEFAULT_CHUNK_BYTES = 64 << 20
_MIN_BLOCK = 16 << 20
# Heapster's legacy names for system containers (HEAPSTER.md §3.4).
SYSTEM_CONTAINER_NAMES = {"runtime": "docker-daemon", "misc": "system"}
USER_METRIC_KINDS = tuple(k.value for k in catalogue.Kind)


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """What a set of documents decoded to, and what could not be decoded."""

    batch: MetricBatch
    errors: tuple[PayloadError, ...]
    unknown_values: int  # points not emitted because their value was above int64 max ("unknown")
    documents: int  # documents decoded successfully


def decode_summaries(
    documents: Sequence[bytes],
    *,
    now: datetime,
    sources: Sequence[str] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> DecodeResult:
    """Decode Summary documents (one per node) into one MetricBatch.

    ``now`` is the collector's clock for ``uptime`` (Heapster computes it at decode time);
    ``sources`` names each document in errors (node, URL or file); bad documents are reported in
    ``errors`` and skipped, every other document still decodes.
    """
    names = list(sources) if sources is not None else [f"document[{i}]" for i in range(len(documents))]
    if len(names) != len(documents):
        raise ValueError(f"{len(documents)} documents but {len(names)} source names")
    now_ms = int(now.timestamp() * 1000)
    parts: list[MetricBatch] = []
    errors: list[PayloadError] = []
    counter = _Counter()
    decoded = 0
    for start, stop in _chunks(documents, chunk_bytes):
        table, bad = _read_chunk(documents[start:stop], names[start:stop])
        errors.extend(bad)
        if table.num_rows:
            part, missing_node = _flatten(table, now_ms, counter)
            errors.extend(
                PayloadError(src, "document has no `node` object with a `nodeName`")
                for src in _names_at(table, missing_node)
            )
            decoded += table.num_rows - len(missing_node)
            parts.append(part)
    return DecodeResult(concat_batches(parts), tuple(errors), counter.unknown, decoded)


# --- reading ---------------------------------------------------------------------------------------

_SOURCE_COLUMN = "__source"


def _chunks(documents: Sequence[bytes], chunk_bytes: int) -> Iterator[tuple[int, int]]:
    start, size = 0, 0
    for i, doc in enumerate(documents):
        size += len(doc)
        if size >= chunk_bytes:
            yield start, i + 1
            start, size = i + 1, 0
    if start < len(documents):
        yield start, len(documents)


def _parse(documents: Sequence[bytes]) -> pa.Table:
    """One pyarrow JSON read over documents joined by newlines."""
    multiline = any(b"\n" in doc for doc in documents)
    block = max(_MIN_BLOCK, max(len(doc) for doc in documents) + 2)
    return pj.read_json(
        pa.BufferReader(b"\n".join(documents)),
        read_options=pj.ReadOptions(block_size=block),
        parse_options=pj.ParseOptions(
            explicit_schema=wire.SUMMARY, unexpected_field_behavior="ignore", newlines_in_values=multiline
        ),
    )


def _read_chunk(documents: Sequence[bytes], names: Sequence[str]) -> tuple[pa.Table, list[PayloadError]]:
    """Parse a chunk in one call; if that fails, find the bad documents one by one."""
    try:
        table = _parse(documents)
        if table.num_rows == len(documents):
            return _with_sources(table, names), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    good: list[pa.Table] = []
    errors: list[PayloadError] = []
    for doc, name in zip(documents, names, strict=True):
        try:
            if not doc.strip():
                raise PayloadError(name, "empty document")
            one = _parse([doc])
            if one.num_rows != 1:
                raise PayloadError(name, f"expected one JSON object, found {one.num_rows}")
            good.append(_with_sources(one, [name]))
        except PayloadError as exc:
            errors.append(exc)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            errors.append(PayloadError(name, f"invalid Summary JSON: {_clean(str(exc))}"))
    schema = wire.SUMMARY.append(pa.field(_SOURCE_COLUMN, pa.string()))
    return (pa.concat_tables(good) if good else schema.empty_table()), errors


def _with_sources(table: pa.Table, names: Sequence[str]) -> pa.Table:
    return table.append_column(_SOURCE_COLUMN, pa.array(names, pa.string()))


def _names_at(table: pa.Table, rows: np.ndarray) -> list[str]:
    return table.column(_SOURCE_COLUMN).take(pa.array(rows, pa.int64())).to_pylist() if len(rows) else []


def _clean(message: str) -> str:
    """pyarrow's messages, minus the row number (always 0 for a single document)."""
    for suffix in (" in row 0", "in row 0"):
        message = message.replace(suffix, "")
    return message.strip()


# --- flattening ------------------------------------------------------------------------------------


class _Counter:
    __slots__ = ("unknown",)

    def __init__(self) -> None:
        self.unknown = 0


def _f(array: pa.Array, path: str) -> pa.Array:
    """Nested struct field by dotted path; a null parent makes the child null. Times come out in ms."""
    for name in path.split("."):
        array = pc.struct_field(array, name)
    if array.type == wire.TIME:
        return array.cast(TIME, safe=False)  # truncate sub-millisecond fractions
    return array


def _int64(values: pa.Array, counter: _Counter) -> pa.Array:
    """uint64 → int64; values above int64 max are "unknown" (2^64-1) and become null, counted."""
    if values.type == pa.int64():
        return values
    biggest = pc.max(values).as_py()
    if biggest is not None and biggest > INT64_MAX:
        too_big = pc.greater(values, pa.scalar(INT64_MAX, pa.uint64()))
        counter.unknown += pc.sum(too_big).as_py() or 0
        values = pc.if_else(too_big, pa.scalar(None, pa.uint64()), values)
    return values.cast(pa.int64())


def _has(struct_type: pa.StructType, path: str) -> bool:
    head = path.split(".", 1)[0]
    return bool(struct_type.get_field_index(head) >= 0)


def _metric_columns(stats: pa.Array, counter: _Counter) -> dict[str, pa.Array]:
    """Plain field metrics available in this kind of stats object (node, pod or container)."""
    return {
        m.name: _int64(_f(stats, m.summary_field), counter)
        for m in catalogue.summary_plain_metrics()
        if m.summary_field is not None and _has(stats.type, m.summary_field)
    }


def _uptime(start: pa.Array, now_ms: int) -> pa.Array:
    return pc.subtract(pa.scalar(now_ms, pa.int64()), start.cast(pa.int64()))


def _container_ephemeral(containers: pa.Array, counter: _Counter) -> pa.Array:
    """rootfs.usedBytes + logs.usedBytes, only when both are present (HEAPSTER.md §3.3)."""
    rootfs = _int64(_f(containers, "rootfs.usedBytes"), counter).cast(pa.uint64())
    logs = _int64(_f(containers, "logs.usedBytes"), counter).cast(pa.uint64())
    return _int64(pc.add(rootfs, logs), counter)


def _entity_table(kind: EntityType, n: int, columns: dict[str, pa.Array]) -> pa.Table:
    schema = entity_schema()
    data = {"type": pa.array(np.full(n, kind.value, dtype=object), pa.string())}
    for field in schema:
        if field.name != "type":
            data[field.name] = columns.get(field.name, pa.nulls(n, field.type))
    return pa.Table.from_pydict(data, schema=schema)


def _group_key(owner: np.ndarray, names: pa.Array) -> np.ndarray:
    """One int64 per (owner row, name), so "same name in the same pod/container" is an equality."""
    encoded = pc.dictionary_encode(names)
    codes = encoded.indices.fill_null(-1).to_numpy().astype(np.int64) + 1
    key: np.ndarray = owner.astype(np.int64) * (len(encoded.dictionary) + 1) + codes
    return key


def _keep_last(key: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray | None:
    """Rows to keep so that each key keeps its last row by (rank, array position); None if keys are unique.

    Heapster keeps entities and metrics in maps, so of two entries with the same key the later one
    replaces the earlier (and, for containers, the later ``startTime`` wins first).
    """
    if len(np.unique(key)) == len(key):
        return None
    position = np.arange(len(key))
    order = np.lexsort((position, key) if rank is None else (position, rank, key))
    ordered = key[order]
    last = np.ones(len(key), dtype=bool)
    last[:-1] = ordered[:-1] != ordered[1:]
    return np.sort(order[last])


class _Labeled:
    """Collects labeled rows (filesystem, accelerator, custom) as they are found."""

    def __init__(self, counter: _Counter) -> None:
        self.parts: list[pa.Table] = []
        self.counter = counter

    def add_fields(self, stats: pa.Array, entity: np.ndarray, family: str, labels: dict[str, pa.Array]) -> None:
        """One labeled row per non-null field of a family, e.g. the five filesystem metrics."""
        metrics = catalogue.summary_labeled_metrics(family)
        columns = [_int64(_f(stats, m.summary_field or ""), self.counter) for m in metrics]
        rows, cols, values = melt(columns)
        if not len(rows):
            return
        index = pa.array(rows, pa.int64())
        out = {
            "entity": pa.array(entity[rows], pa.int64()),
            "metric": pa.DictionaryArray.from_arrays(pa.array(cols, pa.int16()), [m.name for m in metrics]),
        }
        for name in ("resource_id", "make", "model", "accelerator_id"):
            out[name] = labels[name].take(index) if name in labels else None
        out["value_int"] = values
        out["value"] = values.cast(pa.float64(), safe=False)
        self._append(out, len(rows))

    def add_custom(self, containers: pa.Array, entity_of_container: np.ndarray) -> None:
        """``custom/<name>`` float metrics from ``userDefinedMetrics``; unknown kinds are skipped."""
        lists = pc.struct_field(containers, "userDefinedMetrics")
        flat = lists.flatten()
        if not len(flat):
            return
        parent = pc.list_parent_indices(lists).to_numpy()
        keep = pc.and_kleene(
            pc.is_in(pc.struct_field(flat, "type"), pa.array(USER_METRIC_KINDS)),
            pc.and_(pc.is_valid(pc.struct_field(flat, "name")), pc.is_valid(pc.struct_field(flat, "value"))),
        ).fill_null(False)
        flat = flat.filter(keep)
        parent = parent[keep.to_numpy(zero_copy_only=False)]
        last = _keep_last(_group_key(parent, pc.struct_field(flat, "name")))
        if last is not None:  # a name repeated in one container: the later entry wins
            flat, parent = flat.take(pa.array(last)), parent[last]
        name = pc.binary_join_element_wise(catalogue.CUSTOM_PREFIX, pc.struct_field(flat, "name"), "")
        self._append(
            {
                "entity": pa.array(entity_of_container[parent], pa.int64()),
                "metric": name.dictionary_encode().cast(METRIC_TYPE),
                "value_int": pa.nulls(len(flat), pa.int64()),
                "value": pc.struct_field(flat, "value"),
            },
            len(flat),
        )

    def _append(self, columns: dict[str, pa.Array | None], n: int) -> None:
        data = {
            f.name: columns.get(f.name) if columns.get(f.name) is not None else pa.nulls(n, f.type)
            for f in LABELED_SCHEMA
        }
        self.parts.append(pa.Table.from_pydict(data, schema=LABELED_SCHEMA))

    def table(self) -> pa.Table:
        return pa.concat_tables(self.parts) if self.parts else LABELED_SCHEMA.empty_table()


def _const(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([value]))


def _containers(
    containers: pa.Array, base: int, labeled: _Labeled, counter: _Counter, now_ms: int
) -> tuple[dict[str, pa.Array], int]:
    """Columns shared by pod and system containers, plus their filesystem/accelerator/custom rows."""
    n = len(containers)
    start = _f(containers, "startTime")
    columns = _metric_columns(containers, counter)
    columns["start_time"] = start
    columns["sample_time"] = pc.coalesce(_f(containers, "cpu.time"), _f(containers, "memory.time"))
    columns[catalogue.UPTIME.name] = _uptime(start, now_ms)
    columns[catalogue.EPHEMERAL_STORAGE_USAGE.name] = _container_ephemeral(containers, counter)
    entity = np.arange(base, base + n, dtype=np.int64)
    for block, resource in (("rootfs", "/"), ("logs", "logs")):
        fs = pc.struct_field(containers, block)
        labeled.add_fields(fs, entity, "filesystem/", {"resource_id": _const(resource, n)})
    accelerators = pc.struct_field(containers, "accelerators")
    flat = accelerators.flatten()
    if len(flat):
        labels = {
            "make": pc.struct_field(flat, "make").dictionary_encode(),
            "model": pc.struct_field(flat, "model").dictionary_encode(),
            "accelerator_id": pc.struct_field(flat, "id").dictionary_encode(),
        }
        parent = pc.list_parent_indices(accelerators).to_numpy()
        labeled.add_fields(flat, entity[parent], "accelerator/", labels)
    labeled.add_custom(containers, entity)
    return columns, n


def _flatten(table: pa.Table, now_ms: int, counter: _Counter) -> tuple[MetricBatch, np.ndarray]:
    """Flatten parsed documents record batch by record batch; also return rows lacking a node."""
    parts: list[MetricBatch] = []
    missing: list[np.ndarray] = []
    offset = 0
    for batch in table.to_batches():
        nodename = pc.struct_field(batch.column("node"), "nodeName")
        ok = pc.and_(pc.is_valid(nodename), pc.not_equal(nodename, "")).fill_null(False)
        if not pc.all(ok).as_py():
            missing.append(np.flatnonzero(~ok.to_numpy(zero_copy_only=False)) + offset)
            batch = batch.filter(ok)
        offset += len(ok)
        if batch.num_rows:
            parts.append(_flatten_batch(batch, now_ms, counter))
    return concat_batches(parts), (np.concatenate(missing) if missing else np.empty(0, np.int64))


def _flatten_batch(batch: pa.RecordBatch, now_ms: int, counter: _Counter) -> MetricBatch:
    node, pods = batch.column("node"), batch.column("pods")
    labeled = _Labeled(counter)
    tables: list[pa.Table] = []

    # nodes: one row per document
    n = len(node)
    nodename = pc.struct_field(node, "nodeName")
    start = _f(node, "startTime")
    columns = _metric_columns(node, counter)
    columns.update(
        nodename=nodename,
        start_time=start,
        sample_time=pc.coalesce(_f(node, "cpu.time"), _f(node, "memory.time"), _f(node, "network.time")),
    )
    columns[catalogue.UPTIME.name] = _uptime(start, now_ms)
    columns[catalogue.EPHEMERAL_STORAGE_USAGE.name] = _int64(_f(node, "fs.usedBytes"), counter)
    tables.append(_entity_table(EntityType.NODE, n, columns))
    labeled.add_fields(pc.struct_field(node, "fs"), np.arange(n), "filesystem/", {"resource_id": _const("/", n)})
    base = n

    # system containers, named with Heapster's legacy mapping
    lists = pc.struct_field(node, "systemContainers")
    flat = lists.flatten()
    columns, n = _containers(flat, base, labeled, counter, now_ms)
    name = pc.struct_field(flat, "name")
    for wire_name, heapster_name in SYSTEM_CONTAINER_NAMES.items():
        name = pc.if_else(pc.equal(name, wire_name), heapster_name, name)
    columns.update(nodename=nodename.take(pc.list_parent_indices(lists)), container_name=name)
    tables.append(_entity_table(EntityType.SYS_CONTAINER, n, columns))
    base += n

    # pods
    pod = pods.flatten()
    pod_node = pc.list_parent_indices(pods)
    ref = pc.struct_field(pod, "podRef")
    start = _f(pod, "startTime")
    pod_labels = {
        "nodename": nodename.take(pod_node),
        "namespace_name": pc.struct_field(ref, "namespace"),
        "pod_name": pc.struct_field(ref, "name"),
        "pod_id": pc.struct_field(ref, "uid"),
    }
    columns = _metric_columns(pod, counter)
    columns.update(pod_labels, start_time=start, sample_time=_f(pod, "network.time"))
    columns[catalogue.UPTIME.name] = _uptime(start, now_ms)
    columns[catalogue.EPHEMERAL_STORAGE_USAGE.name] = _int64(_f(pod, "ephemeral-storage.usedBytes"), counter)
    tables.append(_entity_table(EntityType.POD, len(pod), columns))
    volumes = pc.struct_field(pod, "volume")
    flat = volumes.flatten()
    if len(flat):
        resource = pc.binary_join_element_wise("Volume:", pc.struct_field(flat, "name").fill_null(""), "")
        owner = base + pc.list_parent_indices(volumes).to_numpy()
        labeled.add_fields(flat, owner, "filesystem/", {"resource_id": resource.dictionary_encode()})
    base += len(pod)

    # pod containers, after Heapster's duplicate-name rule
    lists = pc.struct_field(pod, "containers")
    flat = lists.flatten()
    owner = pc.list_parent_indices(lists).to_numpy()
    starts = pc.struct_field(flat, "startTime").cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy()
    keep = _keep_last(_group_key(owner, pc.struct_field(flat, "name")), starts)
    if keep is not None:
        flat, owner = flat.take(pa.array(keep)), owner[keep]
    columns, n = _containers(flat, base, labeled, counter, now_ms)
    owner_index = pa.array(owner, pa.int64())
    columns.update({label: values.take(owner_index) for label, values in pod_labels.items()})
    columns["container_name"] = pc.struct_field(flat, "name")
    tables.append(_entity_table(EntityType.POD_CONTAINER, n, columns))

    return MetricBatch(pa.concat_tables(tables), labeled.table())
