"""Polars' allocator settings for a process that handles a ~300 MiB window every 15 s.

Polars allocates through its own jemalloc and, on import, tells it to hand freed pages back to
the OS after 0.5 s (``polars/__init__.py``, against memory bloat in short jobs). A collector then
takes a page fault for every 4 KiB it touches again: each processor stage writes whole new columns
(160 MiB per copy of the 5,000-node entity table), and at Polars' setting the chain spent a quarter
of its time in the kernel (`benchmarks/bench_processors.py --nodes 5000 --windows 5`: median
1.83 s; 1.26 s with the settings below; RSS growth per window 2.1x -> 1.8x the window).

Keeping freed pages for 30 s (two windows at Heapster's default resolution) lets each window reuse
the last one's memory; a background thread purges after that, so a shrinking cluster or a paused
collector still returns memory. Polars appends ``_RJEM_MALLOC_CONF`` to its own pairs (the later
pair wins), so this only takes effect if it runs before ``import polars``; a value the user set
wins. ``POLARS_THP=1`` (Polars' switch for transparent huge pages) gained another ~7 % but grew
memory to 2.0x; it stays the user's choice.
"""

from __future__ import annotations

import os
import sys

JEMALLOC_VARIABLE = "_RJEM_MALLOC_CONF"
JEMALLOC_SETTINGS = "background_thread:true,dirty_decay_ms:30000,muzzy_decay_ms:30000"


def configure() -> bool:
    """Set Polars' jemalloc options unless Polars is already loaded or the user chose their own;
    whether this call set them."""
    if "polars" in sys.modules or JEMALLOC_VARIABLE in os.environ:
        return False
    os.environ[JEMALLOC_VARIABLE] = JEMALLOC_SETTINGS
    return True
