"""``demo``: the embedded default. For now: decode the bundled real kubelet payloads and summarize.

(Once live collection lands, this becomes the simulated-cluster demo.)
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import polars as pl

from heapster_columnar.analysis import per_node
from heapster_columnar.model.points import to_points
from heapster_columnar.samples import summary_paths
from heapster_columnar.sources.summary import decode_summaries


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    commands.add_parser(name, help="decode the bundled real kubelet payloads and summarize", description=__doc__)


def run(args: argparse.Namespace) -> int:
    paths = summary_paths()
    now = datetime.now(UTC)
    result = decode_summaries([p.read_bytes() for p in paths], now=now, sources=[p.name for p in paths])
    points = to_points(result.batch, now)
    print(f"Decoded {result.documents} real kubelet /stats/summary payloads into {points.num_rows} points.\n")
    with pl.Config(tbl_rows=-1, tbl_width_chars=160, fmt_str_lengths=45, tbl_hide_dataframe_shape=True):
        print(per_node(points))
    print("\nSee one payload point by point:  heapster-columnar decode", paths[0])
    return 1 if result.errors else 0
