"""Columnar pipeline vs. a row-at-a-time Heapster reference, on identical windows: same output, how much faster?

    python benchmarks/bench_reference.py --nodes 1000 --windows 3

Builds N nodes x 30 pods as ``bench_processors.py`` does (the simulator's body templates and Pod
objects), renders K windows 15 s apart and, window after window, runs both:

- columnar: ``decode_summaries`` → ``Pipeline.heapster().process`` → ``to_points``;
- reference: ``heapster_reference.HeapsterReference`` (``json.loads`` per document, MetricSets keyed
  by Heapster's key strings, loops per set and per metric).

Each side is timed from the rendered bodies to its points, in wall-clock seconds and in the
process's CPU seconds (the columnar side uses both cores in pyarrow's JSON reader and in
``to_points``, the reference one). Rendering is not timed, nor is turning the API objects into
lookups, which both sides do once, like an informer. The outputs are then compared exactly: the
set of point keys (type, node, namespace, pod, container, metric, resource id), every value and
its type (int vs. float), and the enriched labels of every entity.
Any difference is printed with examples and the exit status is 1. The first window has no rates
(no previous window); the summary row is the median over windows 2..K.

The reference gets its best case by default: Python's cyclic garbage collector is paused while it
runs (``--reference-gc on`` keeps it, 2-3x slower), and ``--json orjson`` gives it a faster parser
than the standard library's ``json.loads`` (~2 s instead of ~4 s for 86 MB at 1,000 nodes).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.points import to_points
from heapster_columnar.processors.chain import Pipeline
from heapster_columnar.simulator.cluster import prepare_nodes
from heapster_columnar.simulator.objects import namespace_object, node_object
from heapster_columnar.simulator.payloads import NodeShape
from heapster_columnar.simulator.render import SummaryTemplate
from heapster_columnar.sources.objects import namespaces_table, nodes_table, pods_tables
from heapster_columnar.sources.summary import decode_summaries

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported by the tests
from heapster_reference import (
    ENRICHED_LABELS,
    ApiObjects,
    EntityKey,
    HeapsterReference,
    PointKey,
    Value,
    entity_labels,
    points_of,
)

AT = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp())  # as bench_processors.py
STEP = 15
KEY_LABELS = ("type", "nodename", "namespace_name", "pod_name", "container_name")


@dataclass
class Cluster:
    """One synthetic cluster: a body template per node and the API objects (as dicts and as tables)."""

    templates: list[SummaryTemplate]
    pods: list[dict[str, Any]]
    namespaces: list[dict[str, Any]]
    nodes: list[dict[str, Any]]

    def dimensions(self) -> Dimensions:
        pods, containers = pods_tables(self.pods)
        return Dimensions(pods, containers, namespaces_table(self.namespaces), nodes_table(self.nodes))

    def render(self, second: int) -> list[bytes]:
        return [t.render(second) for t in self.templates]


def build_cluster(nodes: int, pods_per_node: int = 30) -> Cluster:
    """``bench_processors.py``'s cluster: templates and Pod objects from ``prepare_nodes``, one
    Namespace object per namespace in use, ready Node objects."""
    shape = NodeShape(pods_per_node=pods_per_node, memory_wave=False)
    pods: list[dict[str, Any]] = []
    templates: list[SummaryTemplate] = []
    for first in range(0, nodes, 100):
        for node_pods, template in prepare_nodes(range(first, min(first + 100, nodes)), shape, {}, AT):
            pods.extend(node_pods)
            if template is not None:
                templates.append(template)
    namespaces = [namespace_object(n, seed=0) for n in sorted({p["metadata"]["namespace"] for p in pods})]
    created = datetime(2024, 1, 1, tzinfo=UTC)
    node_objects = [node_object(i, shape=shape, port=10250, ready=True, created=created) for i in range(nodes)]
    return Cluster(templates, pods, namespaces, node_objects)


def window_time(k: int) -> tuple[int, datetime]:
    """Window ``k`` (from 0): its second and its end time, 15 s apart."""
    second = AT + STEP * (k + 1)
    return second, datetime.fromtimestamp(second, UTC)


# --- the columnar side's output as the reference's -------------------------------------------------


def _decoded(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A dictionary column as a Python list, one string object per distinct value (not per row)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        return column.to_pylist()
    values = [*column.dictionary.to_pylist(), None]
    return [values[i] for i in column.indices.fill_null(-1).to_numpy(zero_copy_only=False).tolist()]


def columnar_points(points: pa.Table) -> tuple[dict[PointKey, Value], Counter[PointKey]]:
    """``{key: value}`` of a points table (value_int where set, else value), and keys seen twice."""
    columns = [_decoded(points.column(name)) for name in (*KEY_LABELS, "metric")]
    resource = [
        r if r is not None else a
        for r, a in zip(_decoded(points.column("resource_id")), _decoded(points.column("accelerator_id")), strict=True)
    ]
    values = [
        i if i is not None else v
        for i, v in zip(points.column("value_int").to_pylist(), points.column("value").to_pylist(), strict=True)
    ]
    keys: list[PointKey] = list(zip(*columns, resource, strict=True))
    out = dict(zip(keys, values, strict=True))
    repeated: Counter[PointKey] = Counter()
    if len(out) != len(keys):
        repeated = Counter(k for k, n in Counter(keys).items() if n > 1 for _ in range(n))
    return out, repeated


def columnar_labels(entities: pa.Table) -> dict[EntityKey, dict[str, str | None]]:
    present = [name for name in ENRICHED_LABELS if name in entities.column_names]
    rows = entities.select([*KEY_LABELS, *present]).to_pylist()
    return {
        (row["type"], row["nodename"], row["namespace_name"], row["pod_name"], row["container_name"]): {
            name: row.get(name) for name in ENRICHED_LABELS
        }
        for row in rows
    }


# --- comparison ------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Differences between the reference (``want``) and the columnar pipeline (``got``)."""

    only_reference: list[Any] = field(default_factory=list)
    only_columnar: list[Any] = field(default_factory=list)
    different: list[tuple[Any, Any, Any]] = field(default_factory=list)  # (key, want, got)

    @property
    def ok(self) -> bool:
        return not (self.only_reference or self.only_columnar or self.different)

    def report(self, what: str, examples: int = 5) -> list[str]:
        lines = []
        for title, items in (
            (f"{what} only in the reference", self.only_reference),
            (f"{what} only in the columnar output", self.only_columnar),
            (f"{what} with different values (key, reference, columnar)", self.different),
        ):
            if not items:
                continue
            kinds = Counter(_kind(item) for item in items)
            lines.append(f"{len(items)} {title}; by kind: {dict(kinds.most_common(8))}")
            lines += [f"    {item!r}" for item in sorted(items, key=repr)[:examples]]
        return lines


def _kind(item: Any) -> tuple[Any, ...]:
    key = item[0] if isinstance(item, tuple) and isinstance(item[0], tuple) else item
    return (key[0], key[5]) if len(key) >= 6 else (key[0],)  # (type, metric or label name)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def compare(want: dict[Any, Any], got: dict[Any, Any], same: Callable[[Any, Any], bool] = _same) -> Comparison:
    return Comparison(
        only_reference=[k for k in want if k not in got],
        only_columnar=[k for k in got if k not in want],
        different=[(k, v, got[k]) for k, v in want.items() if k in got and not same(v, got[k])],
    )


def compare_labels(
    want: dict[EntityKey, dict[str, str | None]], got: dict[EntityKey, dict[str, str | None]]
) -> Comparison:
    """Entities on both sides and, per entity and label, the same value."""
    out = compare(want, got, same=lambda a, b: True)
    for key, labels in want.items():
        theirs = got.get(key)
        if theirs is not None:
            out.different += [((*key, name), v, theirs[name]) for name, v in labels.items() if theirs[name] != v]
    return out


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class WindowResult:
    points: int
    columnar: dict[str, float]  # decode / process / points seconds
    reference: dict[str, float]
    problems: list[str]  # differences between the two outputs (empty: identical)
    bad_documents: int = 0  # skipped by both sides
    cpu: tuple[float, float] = (0.0, 0.0)  # CPU seconds of the process (all threads): columnar, reference


def run_window(
    documents: list[bytes],
    now: datetime,
    pipeline: Pipeline,
    dims: Dimensions,
    reference: HeapsterReference,
    *,
    reference_gc: bool = True,
) -> WindowResult:
    """Both sides on one window's bodies, timed; then the comparison (not timed).

    ``reference_gc=False`` pauses Python's cyclic garbage collector while the reference runs: its
    millions of small dicts and tuples otherwise trigger full collections that cost it 2-3x (the
    objects have no cycles, reference counting frees them all), so that is the reference's best case.
    """
    c0, t0 = time.process_time(), time.perf_counter()
    decoded = decode_summaries(documents, now=now)
    t1 = time.perf_counter()
    processed = pipeline.process(decoded.batch, now, dims)
    t2 = time.perf_counter()
    batch = processed.to_batch()
    points = to_points(batch, now)
    t3, c3 = time.perf_counter(), time.process_time()
    columnar = {"decode": t1 - t0, "process": t2 - t1, "points": t3 - t2}

    gc.collect()
    if not reference_gc:
        gc.disable()
    try:
        q0, r0 = time.process_time(), time.perf_counter()
        sets = reference.decode(documents, now)
        r1 = time.perf_counter()
        reference.run_processors(sets, now)
        r2 = time.perf_counter()
        want = points_of(sets)
        r3, q3 = time.perf_counter(), time.process_time()
    finally:
        gc.enable()
    timings = {"decode": r1 - r0, "process": r2 - r1, "points": r3 - r2}

    problems = [f"columnar stage failed: {f.stage}: {f.error}" for f in processed.failures]
    if len(decoded.errors) != len(reference.errors):  # a bad document is skipped by both (deviation 3)
        problems.append(f"bad documents: columnar {list(decoded.errors)}, reference {reference.errors}")
    got, repeated = columnar_points(points)
    if repeated:
        problems.append(f"{sum(repeated.values())} columnar points share a key, e.g. {next(iter(repeated))!r}")
    problems += compare(want, got).report("points")
    problems += compare_labels(entity_labels(sets), columnar_labels(batch.entities)).report("entity labels")
    return WindowResult(points.num_rows, columnar, timings, problems, len(decoded.errors), (c3 - c0, q3 - q0))


def _table(nodes: int, results: Iterable[tuple[str, WindowResult]]) -> list[str]:
    lines = [
        "| nodes | window | points | columnar s (decode + process + points) | reference s (decode + process + points) "
        "| reference / columnar | CPU s columnar / reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in results:
        c, ref = sum(r.columnar.values()), sum(r.reference.values())
        parts = " + ".join(f"{v:.2f}" for v in r.columnar.values())
        ref_parts = " + ".join(f"{v:.2f}" for v in r.reference.values())
        lines.append(
            f"| {nodes:,} | {label} | {r.points:,} | {c:.2f} ({parts}) | {ref:.2f} ({ref_parts}) | {ref / c:.1f}x "
            f"| {r.cpu[0]:.2f} / {r.cpu[1]:.2f} |"
        )
    return lines


def _median(results: list[WindowResult]) -> WindowResult:
    def med(side: str) -> dict[str, float]:
        return {k: statistics.median(getattr(r, side)[k] for r in results) for k in results[0].columnar}

    cpu = (statistics.median(r.cpu[0] for r in results), statistics.median(r.cpu[1] for r in results))
    return WindowResult(
        int(statistics.median(r.points for r in results)), med("columnar"), med("reference"), [], 0, cpu
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument(
        "--json",
        choices=("json", "orjson"),
        default="json",
        help="the reference's parser: the standard library's json.loads (default) or orjson.loads",
    )
    parser.add_argument(
        "--reference-gc",
        choices=("off", "on"),
        default="off",
        help="Python's cyclic GC while the reference runs: off (default; its best case, so the ratio is "
        "conservative) or on (Python's default; the reference is then 2-3x slower)",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    cluster = build_cluster(args.nodes, args.pods_per_node)
    dims = cluster.dimensions()
    api = ApiObjects(cluster.pods, cluster.namespaces, cluster.nodes)
    print(
        f"set-up: {args.nodes} nodes, {len(cluster.pods)} pods in {time.perf_counter() - started:.1f} s; reference: "
        f"{args.json}.loads, cyclic GC {args.reference_gc}",
        flush=True,
    )

    if args.json == "orjson":
        import orjson

        reference = HeapsterReference(api, loads=orjson.loads)
    else:
        reference = HeapsterReference(api)
    pipeline = Pipeline.heapster()
    results: list[tuple[str, WindowResult]] = []
    failed = False
    for k in range(args.windows):
        second, now = window_time(k)
        documents = cluster.render(second)
        result = run_window(documents, now, pipeline, dims, reference, reference_gc=args.reference_gc == "on")
        del documents
        label = f"{k + 1}" + (" (no rates)" if k == 0 else "")
        results.append((label, result))
        status = "identical" if not result.problems else "DIFFERENT"
        print(
            f"window {label}: {result.points:,} points, columnar {sum(result.columnar.values()):.2f} s, "
            f"reference {sum(result.reference.values()):.2f} s, outputs {status}",
            flush=True,
        )
        for line in result.problems:
            print(f"  {line}")
        failed |= bool(result.problems)

    later = [r for _, r in results[1:]]
    summary = [*results, ("median 2..K", _median(later))] if later else results
    print()
    print("\n".join(_table(args.nodes, summary)))
    if failed:
        print("\nFAILED: the reference and the columnar pipeline disagree (see above)")
        sys.exit(1)


if __name__ == "__main__":
    main()
