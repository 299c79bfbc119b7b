"""Analysis of stored history (the notebook API): open a Parquet store, read daily rollups, and
answer the standard questions — usage over time, top consumers, right-sizing, chargeback, node
efficiency — one call each. Also the per-node overview of a single points table."""

from heapster_columnar.analysis.overview import per_node
from heapster_columnar.analysis.store import Store, TimeRange, parse_duration

__all__ = ["Store", "TimeRange", "parse_duration", "per_node"]
