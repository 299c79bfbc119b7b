"""Analysis helpers over points tables and stored history (the notebook API)."""

from heapster_columnar.analysis.overview import per_node

__all__ = ["per_node"]
