"""heapster-columnar: Heapster's Kubernetes metrics pipeline, rebuilt on Arrow columns.

The public surface is small on purpose (a test pins it): decoding Summary documents, the points
table, the error tree, and the simulator's ClusterSpec / SimulatedCluster.
"""

from importlib.metadata import PackageNotFoundError, version

from heapster_columnar import _allocator

_allocator.configure()  # before anything imports Polars

# ruff: noqa: E402 (the allocator must be configured before these imports load Polars)

from heapster_columnar.errors import (
    ConfigError,
    HeapsterColumnarError,
    NodeScrapeError,
    PayloadError,
    SinkError,
    SourceError,
    StoreError,
)
from heapster_columnar.model.batch import MetricBatch
from heapster_columnar.model.points import to_points
from heapster_columnar.model.schema import POINTS_SCHEMA
from heapster_columnar.simulator.spec import ClusterSpec, FaultSpec
from heapster_columnar.sources.summary import DecodeResult, decode_summaries

try:
    __version__ = version("heapster-columnar")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "POINTS_SCHEMA",
    "ClusterSpec",
    "ConfigError",
    "DecodeResult",
    "FaultSpec",
    "HeapsterColumnarError",
    "MetricBatch",
    "NodeScrapeError",
    "PayloadError",
    "SinkError",
    "SourceError",
    "StoreError",
    "__version__",
    "decode_summaries",
    "to_points",
]
