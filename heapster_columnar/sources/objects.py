"""Kubernetes Pod, Namespace and Node objects → the dimension tables of :mod:`..model.dimensions`.

The input is what a list or watch gives: plain dicts with the API's camelCase keys (raw JSON, or
the ``kubernetes`` client's ``sanitize_for_serialization``). pyarrow converts them in C against a
struct type naming only the fields we read (other keys are never looked at) and everything after
that is column work: containers, statuses, addresses and resource maps are flattened with list
offsets and matched back to their parent rows, so no Python code runs per pod or container.
Converting 150 k pods takes about 2 s, most of it pyarrow walking the dicts.

Heapster's rules (HEAPSTER.md §5.2, §5.8): only ``spec.containers`` (init containers are not
reported), restart counts from the status with the same container **name**, requests of any
resource but limits only of cpu, memory and ephemeral-storage; cpu in millicores, the rest in
whole units, rounded up. Node ``hostname`` is the last non-empty ``Hostname`` address (Heapster's
loop), else the node name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.errors import PayloadError
from heapster_columnar.model.dimensions import (
    CONTAINERS_SCHEMA,
    LABELS_TYPE,
    NAMESPACES_SCHEMA,
    NODES_SCHEMA,
    PODS_SCHEMA,
)
from heapster_columnar.model.quantity import invalid_quantities, parse_quantities
from heapster_columnar.model.schema import TIME

__all__ = ["namespaces_table", "nodes_table", "pods_tables"]

_S = pa.string()
_QUANTITIES = pa.map_(_S, _S)
_METADATA = pa.struct([("name", _S), ("namespace", _S), ("uid", _S), ("labels", LABELS_TYPE)])
_OWNERS = pa.list_(pa.struct([("kind", _S), ("name", _S), ("controller", pa.bool_())]))
_CONTAINER = pa.struct(
    [("name", _S), ("image", _S), ("resources", pa.struct([("requests", _QUANTITIES), ("limits", _QUANTITIES)]))]
)
_POD = pa.struct(
    [
        ("metadata", pa.struct([*_METADATA, ("ownerReferences", _OWNERS)])),
        ("spec", pa.struct([("nodeName", _S), ("containers", pa.list_(_CONTAINER))])),
        (
            "status",
            pa.struct(
                [
                    ("phase", _S),
                    ("startTime", _S),
                    ("containerStatuses", pa.list_(pa.struct([("name", _S), ("restartCount", pa.int64())]))),
                ]
            ),
        ),
    ]
)
_NAMESPACE = pa.struct([("metadata", _METADATA)])
_NODE = pa.struct(
    [
        ("metadata", pa.struct([*_METADATA, ("annotations", _QUANTITIES)])),
        ("spec", pa.struct([("externalID", _S), ("unschedulable", pa.bool_())])),
        (
            "status",
            pa.struct(
                [
                    ("capacity", _QUANTITIES),
                    ("allocatable", _QUANTITIES),
                    ("conditions", pa.list_(pa.struct([("type", _S), ("status", _S)]))),
                    ("addresses", pa.list_(pa.struct([("type", _S), ("address", _S)]))),
                    ("daemonEndpoints", pa.struct([("kubeletEndpoint", pa.struct([("Port", pa.int32())]))])),
                ]
            ),
        ),
    ]
)
# resource name -> (column stem, millicores?); any other request goes to ``other_requests``
_RESOURCES = {"cpu": ("cpu", True), "memory": ("memory", False), "ephemeral-storage": ("ephemeral_storage", False)}


def pods_tables(pods: Sequence[Mapping[str, Any]]) -> tuple[pa.Table, pa.Table]:
    """(PODS_SCHEMA table, CONTAINERS_SCHEMA table) of the given Pod objects, in input order."""
    objects = _convert(pods, _POD, "pods")
    namespace = _required(objects, "metadata.namespace", "pods")
    name = _required(objects, "metadata.name", "pods")
    pod_names = pc.binary_join_element_wise(namespace, name, "/")
    pods_table = pa.Table.from_arrays(
        [
            namespace,
            name,
            _field(objects, "metadata.uid"),
            _field(objects, "spec.nodeName"),
            _field(objects, "status.phase"),
            _timestamps(_field(objects, "status.startTime"), "pods", pod_names),
            _field(objects, "metadata.labels"),
            *_controller(_field(objects, "metadata.ownerReferences")),
        ],
        schema=PODS_SCHEMA,
    )

    specs = _field(objects, "spec.containers")
    containers = pc.list_flatten(specs)
    pod = pc.list_parent_indices(specs).cast(pa.int64())
    container_names = pc.struct_field(containers, "name")
    where = pc.binary_join_element_wise(pod_names.take(pod), container_names.fill_null("?"), ": container ")
    if (missing := _first_null(container_names)) is not None:
        raise PayloadError("pods", f"{pod_names[pod[missing].as_py()]}: a container has no name")

    # restart count of the status with the same name in the same pod (first one, if repeated)
    statuses_lists = _field(objects, "status.containerStatuses")
    statuses = pc.list_flatten(statuses_lists)
    status_pod = pc.list_parent_indices(statuses_lists).cast(pa.int64())
    status_keys = pc.binary_join_element_wise(status_pod.cast(_S), pc.struct_field(statuses, "name"), "/")
    keys = pc.binary_join_element_wise(pod.cast(_S), container_names, "/")
    restart_count = pc.struct_field(statuses, "restartCount").take(pc.index_in(keys, value_set=status_keys))

    requests = _Quantities(pc.struct_field(containers, ["resources", "requests"]), "pods", where, "requests")
    limits = _Quantities(pc.struct_field(containers, ["resources", "limits"]), "pods", where, "limits")
    columns = {
        "namespace": namespace.take(pod),
        "pod_name": name.take(pod),
        "name": container_names,
        "image": pc.struct_field(containers, "image"),
        "restart_count": restart_count,
        **{f"{stem}_request": requests.get(key, milli=milli) for key, (stem, milli) in _RESOURCES.items()},
        **{f"{stem}_limit": limits.get(key, milli=milli) for key, (stem, milli) in _RESOURCES.items()},
        "other_requests": requests.others(exclude=list(_RESOURCES)),
    }
    return pods_table, pa.Table.from_pydict(columns, schema=CONTAINERS_SCHEMA)


def _controller(owners: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(kind, name) per pod of its controlling owner reference: the first with ``controller: true``,
    else the first listed (what ``kubectl`` and the garbage collector treat as the owner)."""
    flat = pc.list_flatten(owners)
    parent = pc.list_parent_indices(owners).cast(pa.int64()).to_numpy()
    controller = pc.fill_null(pc.struct_field(flat, "controller"), False).to_numpy(zero_copy_only=False)
    # rank each reference: controllers first, then list order; keep the best per pod
    order = np.lexsort((np.arange(len(parent)), ~controller, parent))
    first = order[np.concatenate([[True], parent[order][1:] != parent[order][:-1]])] if len(order) else order
    pick = np.full(len(owners), -1, np.int64)
    pick[parent[first]] = first
    index = pa.array(pick, mask=pick < 0)
    return pc.struct_field(flat, "kind").take(index), pc.struct_field(flat, "name").take(index)


def namespaces_table(namespaces: Sequence[Mapping[str, Any]]) -> pa.Table:
    """NAMESPACES_SCHEMA table of the given Namespace objects."""
    objects = _convert(namespaces, _NAMESPACE, "namespaces")
    return pa.Table.from_arrays(
        [
            _required(objects, "metadata.name", "namespaces"),
            _field(objects, "metadata.uid"),
            _field(objects, "metadata.labels"),
        ],
        schema=NAMESPACES_SCHEMA,
    )


# an IPv4 dotted quad or an IPv6 address (hex groups and colons, maybe a dotted tail); Heapster
# skipped addresses net.ParseIP rejects (a DNS name in an InternalIP, say)
_IP_ADDRESS = r"^(\d{1,3}\.){3}\d{1,3}$|^[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}(:(\d{1,3}\.){3}\d{1,3})?$"


def nodes_table(nodes: Sequence[Mapping[str, Any]], *, host_id_annotation: str = "") -> pa.Table:
    """NODES_SCHEMA table of the given Node objects; ``host_id_annotation`` is the source option of
    that name (the annotation giving ``host_id`` where ``spec.externalID`` is empty)."""
    objects = _convert(nodes, _NODE, "nodes")
    name = _required(objects, "metadata.name", "nodes")
    count = len(objects)

    addresses_lists = _field(objects, "status.addresses")
    addresses = pc.list_flatten(addresses_lists)
    node = pc.list_parent_indices(addresses_lists).cast(pa.int64()).to_numpy()
    kind, address = pc.struct_field(addresses, "type"), pc.struct_field(addresses, "address")
    usable = pc.greater(pc.binary_length(address), 0)
    hostname = _pick(count, node, address, pc.and_(pc.equal(kind, "Hostname"), usable), last=True)
    is_ip = pc.match_substring_regex(address, _IP_ADDRESS)
    internal_ip = _pick(count, node, address, pc.and_(pc.equal(kind, "InternalIP"), is_ip), last=False)
    external_ip = _pick(count, node, address, pc.and_(pc.equal(kind, "ExternalIP"), is_ip), last=False)

    conditions_lists = _field(objects, "status.conditions")
    conditions = pc.list_flatten(conditions_lists)
    condition_node = pc.list_parent_indices(conditions_lists).cast(pa.int64()).to_numpy()
    ready = _pick(
        count,
        condition_node,
        pc.equal(pc.struct_field(conditions, "status"), "True"),
        pc.equal(pc.struct_field(conditions, "type"), "Ready"),
        last=False,
    )
    external_id = _field(objects, "spec.externalID")
    host_id = pc.if_else(pc.equal(external_id, ""), pa.scalar(None, _S), external_id)
    if host_id_annotation:
        annotations = _Quantities(_field(objects, "metadata.annotations"), "nodes", name, "metadata.annotations")
        host_id = pc.coalesce(host_id, annotations.text(host_id_annotation))
    capacity = _Quantities(_field(objects, "status.capacity"), "nodes", name, "status.capacity")
    allocatable = _Quantities(_field(objects, "status.allocatable"), "nodes", name, "status.allocatable")
    columns = {
        "name": name,
        "uid": _field(objects, "metadata.uid"),
        "hostname": pc.coalesce(hostname, name),
        "host_id": host_id,
        "address": pc.coalesce(internal_ip, external_ip),
        "kubelet_port": _field(objects, "status.daemonEndpoints.kubeletEndpoint.Port"),
        "ready": ready,
        "unschedulable": _field(objects, "spec.unschedulable").fill_null(False),  # omitempty: absent = false
        "labels": _field(objects, "metadata.labels"),
        **{f"capacity_{stem}": capacity.get(key, milli=milli) for key, (stem, milli) in _RESOURCES.items()},
        **{f"allocatable_{stem}": allocatable.get(key, milli=milli) for key, (stem, milli) in _RESOURCES.items()},
    }
    return pa.Table.from_pydict(columns, schema=NODES_SCHEMA)


class _Quantities:
    """One map<string, string> of quantities per row (requests, limits, capacity...), picked apart by key."""

    def __init__(self, maps: pa.MapArray, source: str, where: pa.StringArray, field: str) -> None:
        entries = maps.cast(pa.list_(pa.struct([maps.type.key_field, maps.type.item_field])))
        flat = pc.list_flatten(entries)
        self.rows = pc.list_parent_indices(entries).cast(pa.int64()).to_numpy()
        self.keys, self.values = pc.struct_field(flat, 0), pc.struct_field(flat, 1)
        self.count, self.source, self.where, self.field = len(maps), source, where, field

    def _parse(self, selected: pa.BooleanArray, *, milli: bool) -> pa.Int64Array:
        values = self.values.filter(selected)
        try:
            return parse_quantities(values, milli=milli)
        except ValueError:  # name the object and field; the message of parse_quantities has only an index
            entry = np.flatnonzero(selected.to_numpy(zero_copy_only=False))[
                pc.index(invalid_quantities(values), True).as_py()
            ]
            row, key, value = self.rows[entry], self.keys[entry].as_py(), self.values[entry].as_py()
            where = self.where[row].as_py()
            raise PayloadError(self.source, f"{where}: {self.field}[{key!r}]: invalid quantity {value!r}") from None

    def get(self, key: str, *, milli: bool) -> pa.Int64Array:
        """The parsed value of ``key`` per row; null where the map lacks it (or it overflows int64)."""
        selected = pc.equal(self.keys, key).fill_null(False)
        rows = self.rows[selected.to_numpy(zero_copy_only=False)]
        return _scatter(self.count, rows, self._parse(selected, milli=milli), last=True)

    def text(self, key: str) -> pa.StringArray:
        """The unparsed value of ``key`` per row (annotations); null where absent or empty."""
        selected = pc.and_(pc.equal(self.keys, key), pc.greater(pc.binary_length(self.values), 0)).fill_null(False)
        rows = self.rows[selected.to_numpy(zero_copy_only=False)]
        return _scatter(self.count, rows, self.values.filter(selected), last=True)

    def others(self, *, exclude: list[str]) -> pa.MapArray:
        """map<string, int64> per row of every key not in ``exclude`` (``Value()``); empty, never null."""
        selected = pc.invert(pc.is_in(self.keys, value_set=pa.array(exclude, _S))).fill_null(False)
        parsed = self._parse(selected, milli=False)
        rows = self.rows[selected.to_numpy(zero_copy_only=False)]
        offsets = np.zeros(self.count + 1, np.int32)
        np.cumsum(np.bincount(rows, minlength=self.count), out=offsets[1:])
        return pa.MapArray.from_arrays(pa.array(offsets), self.keys.filter(selected), parsed)


def _pick(count: int, rows: np.ndarray, values: pa.Array, selected: pa.BooleanArray, *, last: bool) -> pa.Array:
    """Per parent row the value of its last (or first) selected entry; null where none is selected."""
    mask = selected.fill_null(False)
    return _scatter(count, rows[mask.to_numpy(zero_copy_only=False)], values.filter(mask), last=last)


def _scatter(count: int, rows: np.ndarray, values: pa.Array, *, last: bool) -> pa.Array:
    """``values[i]`` lands in row ``rows[i]``; rows given more than once keep the last (or first) value."""
    entries = np.arange(len(rows))
    if not last:
        rows, entries = rows[::-1], entries[::-1]  # numpy keeps the value assigned last
    picks = np.full(count, -1, np.int64)
    picks[rows] = entries
    return values.take(pa.array(picks, mask=picks < 0))


def _convert(objects: Sequence[Mapping[str, Any]], wire: pa.StructType, source: str) -> pa.StructArray:
    try:
        return pa.array(objects if isinstance(objects, list | tuple) else list(objects), type=wire)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise PayloadError(source, f"not {source} objects as the API serves them: {exc}") from exc


def _field(objects: pa.StructArray, path: str) -> pa.Array:
    return pc.struct_field(objects, path.split("."))


def _first_null(values: pa.Array) -> int | None:
    nulls = values.is_null()
    return pc.index(nulls, True).as_py() if pc.any(nulls).as_py() else None


def _required(objects: pa.StructArray, path: str, source: str) -> pa.StringArray:
    values = _field(objects, path)
    if (missing := _first_null(values)) is not None:
        raise PayloadError(source, f"item {missing} has no {path}")
    return values


def _timestamps(values: pa.StringArray, source: str, where: pa.StringArray) -> pa.TimestampArray:
    """RFC 3339 strings → timestamp[ms, UTC]; finer digits are truncated (Kubernetes sends seconds)."""
    try:
        return values.cast(pa.timestamp("ns", "UTC")).cast(TIME, safe=False)
    except pa.ArrowInvalid:
        pass
    for i in range(len(values)):  # error path only: find the object to name
        try:
            values.slice(i, 1).cast(pa.timestamp("ns", "UTC"))
        except pa.ArrowInvalid:
            bad = values[i].as_py()
            raise PayloadError(
                source, f"{where[i].as_py()}: status.startTime {bad!r} is not an RFC 3339 time"
            ) from None
    raise AssertionError("unreachable: the whole column failed to cast but no element does")
