"""The catalogue against HEAPSTER.md §1 and §5.1, written out by hand as the known answer."""

from __future__ import annotations

import pytest

from heapster_columnar.model import catalogue
from heapster_columnar.model.catalogue import EntityType, Kind, Origin, ValueType

# HEAPSTER.md §1a/§1b: name → (kind, value type). restart_count is emitted as a gauge.
HEAPSTER_METRICS = {
    "uptime": ("cumulative", "int64"),
    "cpu/usage": ("cumulative", "int64"),
    "cpu/usage_rate": ("gauge", "int64"),
    "cpu/load": ("gauge", "int64"),
    "cpu/request": ("gauge", "int64"),
    "cpu/limit": ("gauge", "int64"),
    "memory/usage": ("gauge", "int64"),
    "memory/working_set": ("gauge", "int64"),
    "memory/rss": ("gauge", "int64"),
    "memory/cache": ("gauge", "int64"),
    "memory/page_faults": ("cumulative", "int64"),
    "memory/major_page_faults": ("cumulative", "int64"),
    "memory/page_faults_rate": ("gauge", "double"),
    "memory/major_page_faults_rate": ("gauge", "double"),
    "memory/request": ("gauge", "int64"),
    "memory/limit": ("gauge", "int64"),
    "network/rx": ("cumulative", "int64"),
    "network/rx_errors": ("cumulative", "int64"),
    "network/tx": ("cumulative", "int64"),
    "network/tx_errors": ("cumulative", "int64"),
    "network/rx_rate": ("gauge", "double"),
    "network/tx_rate": ("gauge", "double"),
    "network/rx_errors_rate": ("gauge", "double"),
    "network/tx_errors_rate": ("gauge", "double"),
    "ephemeral_storage/usage": ("gauge", "int64"),
    "ephemeral_storage/request": ("gauge", "int64"),
    "ephemeral_storage/limit": ("gauge", "int64"),
    "restart_count": ("gauge", "int64"),
    **{
        f"{r}/node_{k}": ("gauge", "double")
        for r in ("cpu", "memory", "ephemeral_storage")
        for k in ("capacity", "allocatable", "utilization", "reservation")
    },
    "filesystem/usage": ("gauge", "int64"),
    "filesystem/limit": ("gauge", "int64"),
    "filesystem/available": ("gauge", "int64"),
    "filesystem/inodes": ("gauge", "int64"),
    "filesystem/inodes_free": ("gauge", "int64"),
    "accelerator/memory_total": ("gauge", "int64"),
    "accelerator/memory_used": ("gauge", "int64"),
    "accelerator/duty_cycle": ("gauge", "int64"),
    "disk/io_read_bytes": ("cumulative", "int64"),
    "disk/io_write_bytes": ("cumulative", "int64"),
    "disk/io_read_bytes_rate": ("gauge", "double"),
    "disk/io_write_bytes_rate": ("gauge", "double"),
}


def test_every_heapster_metric_with_its_kind_and_value_type() -> None:
    ours = {m.name: (m.kind.value, m.value_type.value) for m in catalogue.CATALOGUE if m.origin is not Origin.EXTENSION}
    assert ours == HEAPSTER_METRICS


def test_rates_pair_with_heapster_counters() -> None:
    pairs = {m.name: m.rate_of for m in catalogue.CATALOGUE if m.rate_of}
    assert pairs == {
        "cpu/usage_rate": "cpu/usage",
        "memory/page_faults_rate": "memory/page_faults",
        "memory/major_page_faults_rate": "memory/major_page_faults",
        "network/rx_rate": "network/rx",
        "network/rx_errors_rate": "network/rx_errors",
        "network/tx_rate": "network/tx",
        "network/tx_errors_rate": "network/tx_errors",
        "disk/io_read_bytes_rate": "disk/io_read_bytes",
        "disk/io_write_bytes_rate": "disk/io_write_bytes",
    }


def test_labeled_metrics_carry_heapster_labels() -> None:
    labeled = {m.name: m.labels for m in catalogue.CATALOGUE if m.labeled}
    assert labeled["filesystem/usage"] == ("resource_id",)
    assert labeled["accelerator/duty_cycle"] == ("make", "model", "accelerator_id")
    assert all(not m.labeled for m in catalogue.CATALOGUE if m.name.startswith(("cpu/", "memory/", "network/")))


def test_entity_types_follow_heapster() -> None:
    get = catalogue.get
    assert get("network/rx").entities == {EntityType.NODE, EntityType.POD}
    assert get("ephemeral_storage/request").entities == {EntityType.POD_CONTAINER, EntityType.POD, EntityType.NODE}
    assert EntityType.NAMESPACE in get("cpu/usage_rate").entities
    assert EntityType.CLUSTER in get("memory/limit").entities
    assert get("cpu/node_utilization").entities == {EntityType.NODE}
    assert EntityType.NAMESPACE.value == "ns"


def test_extensions_never_shadow_heapster_names() -> None:
    extensions = [m for m in catalogue.CATALOGUE if m.origin is Origin.EXTENSION]
    assert {m.name for m in extensions}.isdisjoint(HEAPSTER_METRICS)
    assert all(m.summary_field for m in extensions)
    assert catalogue.get("cpu/psi_some").kind is Kind.CUMULATIVE
    assert catalogue.get("memory/swap_usage").value_type is ValueType.INT64


def test_unknown_metric_is_named() -> None:
    with pytest.raises(KeyError, match="cpu/usage_rat"):
        catalogue.get("cpu/usage_rat")
