"""Line protocol benchmark: a whole window of points to InfluxDB request bodies.

    python benchmarks/bench_line_protocol.py --nodes 5000 --repeat 5
    python benchmarks/bench_line_protocol.py --nodes 200 --send 5000,20000,50000,100000   # + a real influxd

Takes the cached synthetic window (``_window.bench_window``: N nodes x 30 pods, Heapster's chain,
the points table) and encodes it with the InfluxDB sink's encoder in Heapster's default schema
(every label but the four Heapster omitted as a tag, ``cluster_name``). The first run escapes the
label dictionaries (a cold encoder); later runs reuse them, as window after window does. Reports
min / median points per second and MB/s of line protocol, the series-hash pass of the cardinality
counter, and gzip throughput on the bodies (ISA-L when installed, else zlib).

Correctness is checked in the same run: one line per point, every body ends at a line boundary,
and 2,000 random rows encoded on their own equal the lines written the slow obvious way.

``--send`` starts a real InfluxDB (tests/sinks/influx_server.py; Debian's package) with no series
limit and writes three windows (timestamps 15 s apart) with each batch size, reporting wall time
and the server's and the client's CPU per window.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from _window import bench_window

from heapster_columnar.errors import SinkError
from heapster_columnar.model.window import Window
from heapster_columnar.sinks.influxdb import _GZIP_LEVEL, DEFAULT_BATCH, MAX_BODY, InfluxDBConfig, SeriesCounter, _zlib
from heapster_columnar.sinks.line_protocol import OMITTED_TAGS, LineEncoder, LineFormat

CLUSTER = (("cluster_name", "default"),)


def _expected(row: dict[str, Any], withfields: bool) -> tuple[str, str, float | int, int]:
    """(series key, field key, value, ms) of one row; the synthetic labels need only comma escaping."""
    tags = {k: v for k, v in row.items() if isinstance(v, str) and v and k != "metric" and k not in OMITTED_TAGS}
    tags["cluster_name"] = "default"
    measurement, field = row["metric"], "value"
    if withfields and "/" in measurement:
        measurement, field = measurement.split("/", 1)
    key = measurement + "".join(f",{k}={v.replace(',', chr(92) + ',')}" for k, v in sorted(tags.items()))
    value = row["value_int"] if row["value_int"] is not None else row["value"]
    return key, field, value, int(row["timestamp"].timestamp() * 1000)


def _parse(line: str) -> tuple[str, str, float | int, int]:
    key, field_value, stamp = line.rsplit(" ", 2)
    field, _, text = field_value.partition("=")
    return key, field, int(text[:-1]) if text.endswith("i") else float(text), int(stamp)


def check(window: Window, fmt: LineFormat, lines: int, points: int) -> None:
    """One line per point; 2,000 random rows encode to what the slow obvious way writes."""
    assert lines == points, (lines, points)
    rng = random.Random(1)
    sample = window.points.take(pa.array(rng.sample(range(window.points.num_rows), 2000)))
    encoder = LineEncoder(fmt)
    text = b"".join(b.body.to_pybytes() for b in encoder.encode(sample, batch_points=500)).decode()
    got = sorted(map(_parse, text.splitlines()))
    want = sorted(_expected(row, fmt.withfields) for row in sample.to_pylist())
    assert got == want, next((g, w) for g, w in zip(got, want, strict=True) if g != w)


def encode_runs(window: Window, fmt: LineFormat, batch: int, repeat: int) -> list[bytes]:
    """Encode the window ``repeat`` times; returns a few bodies of the first run (for gzip)."""
    encoder = LineEncoder(fmt)
    n = window.points.num_rows
    seconds: list[float] = []
    kept: list[bytes] = []
    bodies = 0
    for k in range(repeat):
        started = time.perf_counter()
        size = count = lines = 0
        for body in encoder.encode(window.points, batch_points=batch, max_bytes=MAX_BODY):
            size += body.body.size
            count += body.points
            if k == 0:
                view = np.frombuffer(body.body, np.uint8)
                lines += int(np.count_nonzero(view == 10))
                assert view[-1] == 10  # bodies end at a line boundary
                bodies += 1
                if len(kept) < 40:
                    kept.append(body.body.to_pybytes())
        seconds.append(time.perf_counter() - started)
        if k == 0:
            check(window, fmt, lines, count)
        print(f"  run {k + 1}: {seconds[-1]:.2f} s{' (cold: escapes the dictionaries)' if k == 0 else ''}", flush=True)
    best, median = min(seconds), statistics.median(seconds)
    print(
        f"  {n:,} points, {size / 1e6:,.0f} MB of line protocol ({size / n:.0f} B/point), "
        f"{bodies} bodies of <= {batch:,} points: min {best:.2f} s = {n / best / 1e6:.2f} M points/s "
        f"({size / best / 1e6:.0f} MB/s), median {median:.2f} s = {n / median / 1e6:.2f} M points/s"
    )
    return kept


def series_runs(window: Window, fmt: LineFormat, repeat: int) -> None:
    encoder = LineEncoder(fmt)
    hashes, counter = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        h = encoder.series_hashes(window.points)
        hashes.append(time.perf_counter() - started)
    first = SeriesCounter(0, db="bench")
    started = time.perf_counter()
    first.add(h)
    counter.append(time.perf_counter() - started)
    started = time.perf_counter()
    first.add(h)  # the steady state: the same series again
    counter.append(time.perf_counter() - started)
    print(
        f"  series hashes: min {min(hashes):.2f} s, median {statistics.median(hashes):.2f} s; "
        f"{first.count:,} series; counter: first window {counter[0]:.2f} s, same series again {counter[1]:.2f} s"
    )


def gzip_run(bodies: list[bytes]) -> None:
    sample = bodies
    raw = sum(len(b) for b in sample)
    started = time.perf_counter()
    out = 0
    for body in sample:
        c = _zlib.compressobj(_GZIP_LEVEL, _zlib.DEFLATED, 31)
        out += len(c.compress(body)) + len(c.flush())
    took = time.perf_counter() - started
    print(f"  gzip ({_zlib.__name__} level {_GZIP_LEVEL}): {raw / took / 1e6:.0f} MB/s, ratio {raw / out:.1f}")


def send_runs(window: Window, batches: list[int], concurrency: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from heapster_columnar.sinks.influxdb import InfluxDBSink
    from tests.sinks.influx_server import influx_server

    windows = []
    for k in range(3):
        p = window.points
        shifted = pc.add(p.column("timestamp"), pa.scalar(15_000 * k, pa.duration("ms")))
        p = p.set_column(0, p.schema.field(0), shifted.cast(p.schema.field(0).type))
        windows.append(dataclasses.replace(window, points=p, end=window.end + timedelta(seconds=15 * k)))
    with influx_server(max_series=0) as server:
        assert server._process is not None
        stat = Path(f"/proc/{server._process.pid}/stat")

        def server_cpu() -> float:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / 100

        for batch in batches:
            server.query('DROP DATABASE "k8s"')
            config = InfluxDBConfig(url=server.url, batch=batch, concurrency=concurrency, max_series=0, timeout=300)
            sink = InfluxDBSink(config)
            walls, servers, clients = [], [], []
            retries = 0
            for w in windows:
                t0, c0, s0 = time.perf_counter(), time.process_time(), server_cpu()
                for attempt in range(4):  # as the sink worker would: resend the window (idempotent)
                    try:
                        sink.write(w)
                        break
                    except SinkError as exc:
                        if not exc.retryable or attempt == 3:
                            raise
                        retries += 1
                        print(f"    retrying the window: {exc.detail}", flush=True)
                walls.append(time.perf_counter() - t0)
                clients.append(time.process_time() - c0)
                servers.append(server_cpu() - s0)
            sink.close()
            stored = server.query('SELECT count("value") FROM "uptime"', "k8s")[0]["series"][0]["values"][0][1]
            assert stored == 3 * pc.sum(pc.equal(window.points.column("metric").cast(pa.string()), "uptime")).as_py()
            print(
                f"  batch {batch:>7,}: wall {walls[0]:.1f} s first window (new series), later {min(walls[1:]):.1f} s; "
                f"server CPU {servers[0]:.1f} / {min(servers[1:]):.1f} s; client CPU {min(clients[1:]):.1f} s; "
                f"{sink.bytes_sent / 3 / 1e6:.1f} MB sent per window, {retries} window(s) resent",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--withfields", action="store_true")
    parser.add_argument("--send", default="", help="comma-separated batch sizes to write to a real influxd")
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    fmt = LineFormat(constant_tags=CLUSTER, withfields=args.withfields)
    for nodes in args.nodes:
        window = bench_window(nodes)
        print(f"{nodes} nodes: {window.points.num_rows:,} points", flush=True)
        bodies = encode_runs(window, fmt, args.batch, args.repeat)
        series_runs(window, fmt, min(args.repeat, 3))
        gzip_run(bodies)
        if args.send:
            send_runs(window, [int(b) for b in args.send.split(",")], args.concurrency)


if __name__ == "__main__":
    main()
