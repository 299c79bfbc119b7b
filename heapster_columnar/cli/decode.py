"""``decode FILE...``: what did a kubelet send? Captured Summary payloads → points (Parquet/table/CSV)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from heapster_columnar.cli._errors import CommandError
from heapster_columnar.model.points import to_points
from heapster_columnar.sources.summary import decode_summaries

TABLE_COLUMNS = ["type", "metric", "value", "nodename", "namespace_name", "pod_name", "container_name", "resource_id"]


def add_parser(commands: argparse._SubParsersAction, name: str) -> None:  # type: ignore[type-arg]
    p = commands.add_parser(name, help="decode captured /stats/summary payloads", description=__doc__)
    p.add_argument("files", nargs="+", metavar="FILE", help="Summary JSON file(s); '-' reads stdin")
    p.add_argument("-o", "--output", type=Path, help="write the points table to this Parquet file")
    p.add_argument("--format", choices=["table", "csv"], help="print the points (default: table unless -o)")
    p.add_argument("--now", type=_rfc3339, help="clock for uptime and the batch timestamp (RFC 3339; default: now)")


def _rfc3339(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {name}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    documents = [_read(name) for name in args.files]
    now = args.now or datetime.now(UTC)
    result = decode_summaries(documents, now=now, sources=["<stdin>" if f == "-" else f for f in args.files])
    for error in result.errors:
        print(f"heapster-columnar: {error}", file=sys.stderr)
    points = to_points(result.batch, now)
    if args.output:
        _write_parquet(points, args.output)
        print(f"wrote {points.num_rows} points from {result.documents} document(s) to {args.output}", file=sys.stderr)
    fmt = args.format or (None if args.output else "table")
    if fmt:
        frame = pl.from_arrow(points)
        assert isinstance(frame, pl.DataFrame)
        if fmt == "csv":
            frame.with_columns(pl.col(pl.Categorical).cast(pl.String)).write_csv(sys.stdout)
        else:
            value = pl.coalesce(pl.col("value_int").cast(pl.String), pl.col("value").cast(pl.String)).alias("value")
            view = frame.with_columns(value)
            with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=220, fmt_str_lengths=50):
                print(view.select(TABLE_COLUMNS))
    return 1 if result.errors else 0


def _write_parquet(points: pa.Table, path: Path) -> None:
    """Write next to the target and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(points, tmp, compression="zstd")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
