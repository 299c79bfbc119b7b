"""Top consumers in one processed window (what ``kubectl top`` and the demo show)."""

from __future__ import annotations

import polars as pl

from heapster_columnar.model.batch import MetricBatch

CPU, MEMORY = "cpu/usage_rate", "memory/working_set"


def _entities(batch: MetricBatch) -> pl.DataFrame:
    frame = pl.from_arrow(batch.entities)
    assert isinstance(frame, pl.DataFrame)
    return frame


def top_namespaces(batch: MetricBatch, n: int = 10) -> pl.DataFrame:
    """Namespaces by CPU: millicores used and requested, memory used and requested (MiB)."""
    frame = _entities(batch).filter(pl.col("type") == "ns")
    return (
        frame.select(
            pl.col("namespace_name").alias("namespace"),
            pl.col(CPU).alias("cpu_m"),
            pl.col("cpu/request").alias("cpu_request_m"),
            (pl.col("memory/usage") / 2**20).round(1).alias("memory_mib"),
            (pl.col("memory/request") / 2**20).round(1).alias("memory_request_mib"),
        )
        .sort("cpu_m", descending=True, nulls_last=True)
        .head(n)
    )


def top_pods(batch: MetricBatch, n: int = 10, *, by: str = CPU) -> pl.DataFrame:
    """Pods by ``by`` (CPU millicores or memory working set), with their node."""
    frame = _entities(batch).filter(pl.col("type") == "pod")
    return (
        frame.select(
            pl.col("namespace_name").alias("namespace"),
            pl.col("pod_name").alias("pod"),
            pl.col("nodename").alias("node"),
            pl.col(CPU).alias("cpu_m"),
            (pl.col(MEMORY) / 2**20).round(1).alias("working_set_mib"),
            pl.col(by).alias("_by"),
        )
        .sort("_by", descending=True, nulls_last=True)
        .drop("_by")
        .head(n)
    )
