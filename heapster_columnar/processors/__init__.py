"""Processors: Heapster's eight stages as whole-table operations on a window (HEAPSTER.md §5)."""
