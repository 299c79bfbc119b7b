"""Decode benchmark: synthetic /stats/summary payloads → MetricBatch → points table.

    python benchmarks/bench_decode.py                      # 100, 1,000 and 5,000 nodes
    python benchmarks/bench_decode.py --nodes 1000 --repeat 5

Each size runs in a fresh subprocess so that peak RSS (read from the OS, ``ru_maxrss``) belongs to
that size alone; the subprocess holds the payload bytes like a collector would, so the figure
includes them. The same bytes go through ``orjson.loads`` (the reference floor: parsing alone,
into Python objects, one core), ``decode_summaries`` (the wide entity form the pipeline carries)
and ``to_points`` (the public long form). Correctness is checked in the same run: the decoded
entity counts must equal what the generator produced.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

AT = datetime(2024, 6, 1, tzinfo=UTC)


def _generate(nodes: int, pods: int, path: Path) -> None:
    from heapster_columnar.simulator.payloads import NodeShape, cluster_documents

    docs = cluster_documents(nodes, at=AT, shape=NodeShape(pods_per_node=pods), progress=sys.stderr.isatty())
    with path.open("wb") as out:
        for doc in docs:
            out.write(len(doc).to_bytes(8, "little"))
            out.write(doc)


def _load(path: Path) -> list[bytes]:
    """Read document by document, so the input is held once (as a collector holds its responses)."""
    docs = []
    with path.open("rb") as f:
        while header := f.read(8):
            docs.append(f.read(int.from_bytes(header, "little")))
    return docs


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(path: Path, pods: int, repeat: int) -> dict[str, object]:
    """Runs inside the per-size subprocess."""
    import orjson

    from heapster_columnar.model.points import to_points
    from heapster_columnar.sources.summary import decode_summaries

    docs = _load(path)
    nbytes = sum(map(len, docs))
    rss_input = _peak_rss_mib()
    floor, decode, points = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for doc in docs:
            orjson.loads(doc)
        floor.append(time.perf_counter() - t0)
    now = AT + timedelta(seconds=5)
    result = None
    for _ in range(repeat):
        del result  # keep one window's worth alive, as a collector would
        t0 = time.perf_counter()
        result = decode_summaries(docs, now=now)
        t1 = time.perf_counter()
        table = to_points(result.batch, now)
        t2 = time.perf_counter()
        decode.append(t1 - t0)
        points.append(t2 - t0)
        n_points = table.num_rows
        wide_bytes = result.batch.entities.nbytes + result.batch.labeled.nbytes
        long_bytes = table.nbytes
        del table
    types = result.batch.entities.column("type").to_pylist()
    assert result.errors == (), result.errors[:3]
    assert types.count("node") == len(docs)
    assert types.count("pod") == len(docs) * pods, "decoded pod count differs from the generated one"
    assert n_points == result.batch.num_points
    mb = nbytes / 1e6
    return {
        "nodes": len(docs),
        "json_mb": round(mb, 1),
        "kb_per_node": round(nbytes / len(docs) / 1e3, 1),
        "entities": result.batch.entities.num_rows,
        "points": n_points,
        "orjson_floor_mb_s": round(mb / statistics.median(floor), 1),
        "decode_wide_s": round(statistics.median(decode), 3),
        "decode_wide_mb_s": round(mb / statistics.median(decode), 1),
        "to_points_s": round(statistics.median(points) - statistics.median(decode), 3),
        "points_mb_s": round(mb / statistics.median(points), 1),
        "points_per_s": round(n_points / statistics.median(points)),
        "wide_mib": round(wide_bytes / 2**20, 1),
        "long_mib": round(long_bytes / 2**20, 1),
        "input_rss_mib": round(rss_input),
        "peak_rss_mib": round(_peak_rss_mib()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--_child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(_measure(args._child, args.pods_per_node, args.repeat)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for nodes in args.nodes:
            path = Path(tmp) / f"summaries-{nodes}.bin"
            _generate(nodes, args.pods_per_node, path)
            cmd = [
                sys.executable,
                __file__,
                "--_child",
                str(path),
                "--repeat",
                str(args.repeat),
                "--pods-per-node",
                str(args.pods_per_node),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr)
            path.unlink()
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
