"""Rate calculator: known answers from a real pair of scrapes, Heapster's guards, our reset fix.

The real pair is the Windows EKS node scraped twice, 60 s apart
(``summary-aws-eks-windows-containerd-2023-{pre,cur}.json``); the expected rates below are worked out
by hand from the numbers in those two files.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heapster_columnar.model.catalogue import EntityType
from heapster_columnar.model.dimensions import Dimensions
from heapster_columnar.model.schema import entity_schema
from heapster_columnar.processors import rates
from heapster_columnar.processors.base import KEY_COLUMNS, Frames
from heapster_columnar.processors.rates import (
    COUNTER_ENTITY_TYPES,
    RATES,
    RateCalculator,
    WindowVerdict,
    judge_window,
)
from heapster_columnar.samples import kubelet_dir
from heapster_columnar.sources.summary import decode_summaries

RATE_NAMES = [m.name for m in RATES]
COUNTERS = [m.rate_of or "" for m in RATES]
NODE = "ip-192-168-44-84.us-west-2.compute.internal"
POD = "windows-server-iis-ltsc2019-58d94b5844-6v2pg"
NAMESPACE = "amazon-cloudwatch"
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
START = datetime(2023, 12, 1, tzinfo=UTC)
NO_API = Dimensions.empty()


# --- the real Windows pair --------------------------------------------------------------------------


def _real(which: str, timestamp: datetime) -> Frames:
    path = kubelet_dir() / f"summary-aws-eks-windows-containerd-2023-{which}.json"
    result = decode_summaries([path.read_bytes()], now=timestamp)
    assert result.errors == ()
    return Frames.of(result.batch, timestamp)


PRE_AT = datetime(2023, 12, 21, 15, 20, tzinfo=UTC)
CUR_AT = PRE_AT + timedelta(seconds=60)


@pytest.fixture(scope="module")
def windows_pair() -> tuple[Frames, Frames, Frames, Frames]:
    """(pre, cur) in, (pre, cur) out of one calculator."""
    pre, cur = _real("pre", PRE_AT), _real("cur", CUR_AT)
    calculator = RateCalculator()
    return pre, cur, calculator.process(pre, NO_API), calculator.process(cur, NO_API)


def _row(frames: Frames, type_: str) -> dict[str, Any]:
    rows = frames.entities.filter(pl.col("type") == type_).to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_first_window_has_every_rate_column_all_null(windows_pair: tuple[Frames, ...]) -> None:
    pre, _, out, _ = windows_pair
    assert out.entities.columns == [*pre.entities.columns, *RATE_NAMES]
    assert out.entities.select(RATE_NAMES).null_count().row(0) == (pre.entities.height,) * len(RATES)
    assert out.entities.schema["cpu/usage_rate"] == pl.Int64
    assert all(out.entities.schema[n] == pl.Float64 for n in RATE_NAMES if n != "cpu/usage_rate")


def test_node_rates_by_hand(windows_pair: tuple[Frames, ...]) -> None:
    node = _row(windows_pair[3], "node")
    assert node["nodename"] == NODE
    # node.cpu.usageCoreNanoSeconds 38907680000000 -> 38910780000000 (Δ = 3,100,000,000 ns);
    # node.cpu.time 15:19:58Z -> 15:20:58Z (Δt = 60 s): 1000 * 3.1e9 / 6e10 = 51.67 -> 51 millicores.
    assert (1000 * 3_100_000_000) // 60_000_000_000 == 51
    assert node["cpu/usage_rate"] == 51
    # node.memory.pageFaults / majorPageFaults are 0 in both documents.
    assert node["memory/page_faults_rate"] == 0.0
    assert node["memory/major_page_faults_rate"] == 0.0
    # node.network.name is "" and there are no top-level counters: no counter, no rate.
    assert [node[f"network/{n}_rate"] for n in ("rx", "tx", "rx_errors", "tx_errors")] == [None] * 4


def test_pod_rates_by_hand(windows_pair: tuple[Frames, ...]) -> None:
    pod = _row(windows_pair[3], "pod")
    assert (pod["namespace_name"], pod["pod_name"]) == (NAMESPACE, POD)
    # pod.cpu.usageCoreNanoSeconds 289625000000 -> 289812500000 (Δ = 187,500,000 ns); the pod's sample
    # time is its network.time, 15:19:59Z -> 15:20:59Z: 1.875e8 / 6e7 = 3.125 -> 3 millicores.
    assert pod["cpu/usage_rate"] == 3
    # pod.network.rxBytes 8787186 -> 8891342 (Δ 104,156), txBytes 3423484 -> 3433553 (Δ 10,069), per s.
    assert pod["network/rx_rate"] == 104_156 * 1000 / 60_000 == pytest.approx(1735.9333, abs=1e-4)
    assert pod["network/tx_rate"] == 10_069 * 1000 / 60_000 == pytest.approx(167.8167, abs=1e-4)
    # Windows pod interfaces carry no rxErrors/txErrors.
    assert pod["network/rx_errors_rate"] is None and pod["network/tx_errors_rate"] is None
    # pod.memory.pageFaults / majorPageFaults are 0 in both.
    assert pod["memory/page_faults_rate"] == 0.0 and pod["memory/major_page_faults_rate"] == 0.0


def test_container_and_system_container_by_hand(windows_pair: tuple[Frames, ...]) -> None:
    out = windows_pair[3]
    container = _row(out, "pod_container")
    # Same CPU counter as the pod (Δ 187,500,000 ns over cpu.time 15:19:59Z -> 15:20:59Z) -> 3.
    assert container["cpu/usage_rate"] == 3
    # Windows container memory has only workingSetBytes: no page-fault counters, no rates.
    assert container["memory/page_faults_rate"] is None
    # The `pods` system container restarted its accounting: startTime 15:19:59Z -> 15:20:59Z. Its CPU
    # counter rose by 250,000,000 ns, but a new start time means no rate (Heapster's guard).
    sys_container = _row(out, "sys_container")
    assert sys_container["cpu/usage"] - 312_859_375_000 == 250_000_000
    assert all(sys_container[name] is None for name in RATE_NAMES)


def test_real_pair_keeps_rows_and_columns(windows_pair: tuple[Frames, ...]) -> None:
    _, cur, _, out = windows_pair
    assert out.entities.select(cur.entities.columns).equals(cur.entities)
    assert out.labeled.equals(cur.labeled)


# --- synthetic windows ------------------------------------------------------------------------------


def _empty_entities() -> pl.DataFrame:
    frame = pl.from_arrow(entity_schema().empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


SCHEMA = _empty_entities().schema


def entity(
    pod: str | None = "p",
    *,
    type_: str = "pod",
    node: str | None = "n1",
    namespace: str | None = "ns",
    container: str | None = None,
    start: datetime | None = START,
    sample: datetime | None = T0,
    **counters: int | None,
) -> dict[str, Any]:
    """One entity row; counters by catalogue name with `/` written `__` (cpu__usage=...)."""
    row: dict[str, Any] = {
        "type": type_,
        "nodename": node,
        "namespace_name": namespace,
        "pod_name": pod,
        "container_name": container,
        "start_time": start,
        "sample_time": sample,
    }
    row.update({name.replace("__", "/"): value for name, value in counters.items()})
    return row


def window(rows: Sequence[dict[str, Any]], timestamp: datetime = T0) -> Frames:
    full = [{name: row.get(name) for name in SCHEMA} for row in rows]
    entities = pl.DataFrame(full, schema=SCHEMA, orient="row") if full else _empty_entities()
    return Frames(timestamp, entities, pl.DataFrame())


def run(*windows: Frames, calculator: RateCalculator | None = None) -> list[Frames]:
    calculator = calculator or RateCalculator()
    return [calculator.process(w, NO_API) for w in windows]


def rates_of(frames: Frames, name: str = "cpu/usage_rate") -> list[Any]:
    return frames.entities.get_column(name).to_list()


SECOND = timedelta(seconds=1)


def test_truncates_like_go_integer_division() -> None:
    pods = ["a", "b", "c", "d"]
    deltas = [999_999, 1_999_999, 2_000_000, 2_999_999_999]
    before = window([entity(p, cpu__usage=10**12) for p in pods])
    after = window(
        [entity(p, sample=T0 + SECOND, cpu__usage=10**12 + d) for p, d in zip(pods, deltas, strict=True)], T0 + SECOND
    )
    out = run(before, after)[1]
    # Heapster: 1000 * Δ / 1e9 ns, truncated.
    assert rates_of(out) == [(1000 * d) // 10**9 for d in deltas] == [0, 1, 2, 2999]


def test_float_rates_per_second() -> None:
    before = window([entity(network__rx=1_000, memory__page_faults=7)])
    after = window([entity(sample=T0 + 4 * SECOND, network__rx=1_001, memory__page_faults=17)], T0 + 15 * SECOND)
    out = run(before, after)[1]
    assert rates_of(out, "network/rx_rate") == [0.25]
    assert rates_of(out, "memory/page_faults_rate") == [2.5]


def test_millisecond_sample_times_and_odd_intervals() -> None:
    # Δt = 14,999 ms, Δ = 1.5e10 ns: Heapster 1000 * 1.5e10 / 1.4999e10 ns = 1000.066 -> 1000.
    before = window([entity(cpu__usage=0)])
    after = window([entity(sample=T0 + timedelta(milliseconds=14_999), cpu__usage=15 * 10**9)], T0 + 15 * SECOND)
    assert rates_of(run(before, after)[1]) == [1000 * 15 * 10**9 // (14_999 * 10**6)] == [1000]


def test_new_start_time_means_no_rate() -> None:
    before = window([entity(cpu__usage=100, network__rx=100)])
    after = window([entity(start=START + SECOND, sample=T0 + SECOND, cpu__usage=10**9, network__rx=200)], T0 + SECOND)
    out = run(before, after)[1]
    assert out.entities.select(RATE_NAMES).null_count().row(0) == (1,) * len(RATES)


def test_counter_going_down_gives_no_rate_for_that_metric_only() -> None:
    before = window([entity(cpu__usage=5 * 10**9, network__rx=1_000)])
    after = window([entity(sample=T0 + SECOND, cpu__usage=10**9, network__rx=3_000)], T0 + SECOND)
    out = run(before, after)[1]
    assert rates_of(out) == [None]  # Heapster: -4000 millicores
    assert rates_of(out, "network/rx_rate") == [2000.0]  # the other counter of the entity still counts


def test_garbage_jumps_near_int64() -> None:
    top = 2**63 - 1
    before = window(
        [
            entity("wrap", cpu__usage=top - 10),
            entity("jump", cpu__usage=0, network__rx=0),
            entity("negative", cpu__usage=-(2**63), network__rx=-5),
        ]
    )
    after = window(
        [
            entity("wrap", sample=T0 + SECOND, cpu__usage=5),
            entity("jump", sample=T0 + SECOND, cpu__usage=top, network__rx=top),
            entity("negative", sample=T0 + SECOND, cpu__usage=top, network__rx=5),
        ],
        T0 + SECOND,
    )
    out = run(before, after)[1]
    # A wrap is a decrease: no rate. A jump up is computed exactly (Heapster's 1000·Δ would wrap
    # int64 into a negative number). A negative counter is garbage (the wire is uint64): no rate.
    assert rates_of(out) == [None, top // 10**6, None]
    assert rates_of(out)[1] == 9_223_372_036_854
    assert rates_of(out, "network/rx_rate") == [None, float(top) * 1000.0 / 1000.0, None]


def test_sample_time_must_strictly_advance() -> None:
    pods = ["same", "back", "null"]
    before = window([entity(p, cpu__usage=0, network__rx=0) for p in pods])
    samples = [T0, T0 - SECOND, None]
    after = window(
        [entity(p, sample=t, cpu__usage=10**9, network__rx=10**9) for p, t in zip(pods, samples, strict=True)],
        T0 + SECOND,
    )
    out = run(before, after)[1]
    assert out.entities.select(RATE_NAMES).null_count().row(0) == (3,) * len(RATES)


def test_null_counters_and_start_times() -> None:
    before = window(
        [
            entity("null-new", cpu__usage=0),
            entity("null-old", cpu__usage=None),
            entity("both-starts-null", start=None, cpu__usage=0),
            entity("start-appears", start=None, cpu__usage=0),
        ]
    )
    after = window(
        [
            entity("null-new", sample=T0 + SECOND, cpu__usage=None),
            entity("null-old", sample=T0 + SECOND, cpu__usage=10**9),
            entity("both-starts-null", start=None, sample=T0 + SECOND, cpu__usage=10**9),
            entity("start-appears", sample=T0 + SECOND, cpu__usage=10**9),
        ],
        T0 + SECOND,
    )
    # Unknown start times on both sides compare equal, as Heapster's zero times did.
    assert rates_of(run(before, after)[1]) == [None, None, 1000, None]


def test_window_timestamp_must_advance_and_the_state_is_kept() -> None:
    calculator = RateCalculator()
    good = window([entity(cpu__usage=0)], T0)
    run(good, calculator=calculator)
    state = calculator.state
    # Same timestamp, then an earlier one: rate columns present but null, state untouched.
    for stale_at in (T0, T0 - SECOND):
        stale = window([entity(sample=T0 + 5 * SECOND, cpu__usage=9 * 10**9)], stale_at)
        out = run(stale, calculator=calculator)[0]
        assert out.entities.columns == [*stale.entities.columns, *RATE_NAMES]
        assert out.entities.select(RATE_NAMES).null_count().row(0) == (1,) * len(RATES)
        assert calculator.state is state and calculator.state_timestamp == T0
    # The next good window is diffed against the last accepted one (Δ 2e9 over 10 s = 200, not 9e9 - ...).
    later = window([entity(sample=T0 + 10 * SECOND, cpu__usage=2 * 10**9)], T0 + 10 * SECOND)
    assert rates_of(run(later, calculator=calculator)[0]) == [200]
    assert calculator.state_timestamp == T0 + 10 * SECOND


def test_judge_window() -> None:
    assert judge_window(None, T0) is WindowVerdict.FIRST
    assert judge_window(T0, T0) is WindowVerdict.OUT_OF_ORDER
    assert judge_window(T0, T0 - SECOND) is WindowVerdict.OUT_OF_ORDER
    assert judge_window(T0, T0 + SECOND) is WindowVerdict.RATES


def test_entity_only_in_the_new_window_and_one_that_left() -> None:
    before = window([entity("old", cpu__usage=0), entity("stays", cpu__usage=0)])
    after = window(
        [entity("stays", sample=T0 + SECOND, cpu__usage=10**9), entity("new", sample=T0 + SECOND, cpu__usage=10**9)],
        T0 + SECOND,
    )
    calculator = RateCalculator()
    assert rates_of(run(before, after, calculator=calculator)[1]) == [1000, None]
    state = calculator.state
    assert state is not None and sorted(state.get_column("pod_name").to_list()) == ["new", "stays"]


def test_rows_keep_their_order_and_values() -> None:
    pods = [f"p{i}" for i in range(50)]
    before = window([entity(p, cpu__usage=0) for p in pods])
    shuffled = pods[7:] + pods[:7]
    rows = [entity(p, sample=T0 + SECOND, cpu__usage=int(p[1:]) * 10**6) for p in shuffled]
    after = window(rows, T0 + SECOND)
    out = run(before, after)[1]
    assert out.entities.select(after.entities.columns).equals(after.entities)
    assert rates_of(out) == [int(p[1:]) for p in shuffled]


def test_duplicate_keys_never_multiply_rows() -> None:
    calculator = RateCalculator()
    before = window([entity(cpu__usage=0), entity(cpu__usage=10**9), entity("other", cpu__usage=0)])
    run(before, calculator=calculator)
    state = calculator.state
    assert state is not None and state.height == 2
    assert state.filter(pl.col("pod_name") == "p").get_column("cpu/usage").to_list() == [10**9]  # the last
    after = window(
        [
            entity(sample=T0 + SECOND, cpu__usage=3 * 10**9),
            entity("other", sample=T0 + SECOND, cpu__usage=10**9),
            entity(sample=T0 + SECOND, cpu__usage=4 * 10**9),
        ],
        T0 + SECOND,
    )
    out = run(after, calculator=calculator)[0]
    assert out.entities.height == 3
    assert rates_of(out) == [2000, 1000, 3000]  # both duplicates against the last old row


def test_null_key_columns_match_null_and_differ_from_empty() -> None:
    def node(container: str | None, sample: datetime, usage: int) -> dict[str, Any]:
        return entity(None, type_="node", namespace=None, container=container, sample=sample, cpu__usage=usage)

    before = window([node(None, T0, 0), node("", T0, 0)])
    after = window(
        [node(None, T0 + SECOND, 10**9), node("", T0 + SECOND, 2 * 10**9)],
        T0 + SECOND,
    )
    assert rates_of(run(before, after)[1]) == [1000, 2000]


def test_state_is_bounded_to_keys_times_and_counters() -> None:
    calculator = RateCalculator()
    rows = [
        entity(cpu__usage=1, memory__usage=5, uptime=3),
        entity(type_="ns", node=None, pod=None, cpu__usage=7),
        entity(type_="cluster", node=None, namespace=None, pod=None, cpu__usage=9),
    ]
    frames = window(rows)
    frames = Frames(frames.timestamp, frames.entities.with_columns(pl.lit(1).alias("cpu/request")), frames.labeled)
    run(frames, calculator=calculator)
    state = calculator.state
    assert state is not None
    assert state.columns == [*KEY_COLUMNS, "start_time", "sample_time", *COUNTERS]
    assert state.get_column("type").to_list() == ["pod"]
    kinds = (EntityType.NODE, EntityType.SYS_CONTAINER, EntityType.POD, EntityType.POD_CONTAINER)
    assert {t.value for t in kinds} == COUNTER_ENTITY_TYPES


def test_namespace_and_cluster_rows_never_get_rates() -> None:
    def rows(at: datetime, usage: int) -> list[dict[str, Any]]:
        return [
            entity(type_="ns", node=None, pod=None, sample=at, cpu__usage=usage),
            entity(type_="cluster", node=None, namespace=None, pod=None, sample=at, cpu__usage=usage),
        ]

    out = run(window(rows(T0, 0)), window(rows(T0 + SECOND, 10**9), T0 + SECOND))[1]
    assert rates_of(out) == [None, None]


def test_only_rates_whose_counter_exists() -> None:
    before = window([entity(cpu__usage=0)])
    after = window([entity(sample=T0 + SECOND, cpu__usage=10**9)], T0 + SECOND)
    drop = [c for c in COUNTERS if c != "cpu/usage"]
    out = run(*(Frames(w.timestamp, w.entities.drop(drop), w.labeled) for w in (before, after)))[1]
    assert [c for c in out.entities.columns if c.endswith("_rate")] == ["cpu/usage_rate"]
    assert rates_of(out) == [1000]


def test_counter_missing_from_the_previous_window_gives_null_rates() -> None:
    before = window([entity(cpu__usage=0)])
    before = Frames(before.timestamp, before.entities.drop("network/rx"), before.labeled)
    after = window([entity(sample=T0 + SECOND, cpu__usage=10**9, network__rx=5)], T0 + SECOND)
    out = run(before, after)[1]
    assert rates_of(out) == [1000] and rates_of(out, "network/rx_rate") == [None]


def test_empty_windows() -> None:
    out = run(window([]), window([], T0 + SECOND), window([entity(cpu__usage=0)], T0 + 2 * SECOND))
    assert [o.entities.height for o in out] == [0, 0, 1]
    assert rates_of(out[2]) == [None]


# --- hash collisions: the hash join must stay exact ----------------------------------------------


@contextmanager
def weak_hash(hash_of: Callable[[pl.DataFrame], pl.Series]) -> Iterator[None]:
    with mock.patch.object(rates, "_key_hash", hash_of):
        yield


def _by_pod_name_length(mine: pl.DataFrame) -> pl.Series:
    return mine.select(pl.col("pod_name").str.len_bytes().fill_null(0).cast(pl.UInt64).alias("h")).to_series()


def _constant(mine: pl.DataFrame) -> pl.Series:
    return pl.Series("h", [0] * mine.height, pl.UInt64)


def test_new_key_colliding_with_an_old_key_is_not_paired() -> None:
    with weak_hash(_by_pod_name_length):
        out = run(
            window([entity("a", cpu__usage=0), entity("bb", cpu__usage=0)]),
            window([entity("c", sample=T0 + SECOND, cpu__usage=10**9)], T0 + SECOND),  # hash of "a"
        )[1]
    assert rates_of(out) == [None]


def test_colliding_keys_in_one_window_fall_back_to_the_key_join(caplog: pytest.LogCaptureFixture) -> None:
    pods = ["a", "b", "c"]
    calculator = RateCalculator()
    with weak_hash(_constant):
        run(window([entity(p, cpu__usage=0) for p in pods]), calculator=calculator)
        state = calculator.state
        assert state is not None and state.height == 3
        out = run(
            window(
                [entity(p, sample=T0 + SECOND, cpu__usage=(i + 1) * 10**9) for i, p in enumerate(pods)], T0 + SECOND
            ),
            calculator=calculator,
        )[0]
    assert rates_of(out) == [1000, 2000, 3000]
    assert "share a hash" in caplog.text


# --- property: the join agrees with a plain per-entity reference -------------------------------------

# Keys that differ in one column each (null vs "" included), plus a namespace row (never rated).
_POOL = [
    ("node", "n1", None, None, None),
    ("pod", "n1", "ns", "a", None),
    ("pod", "n1", "ns", "b", None),
    ("pod_container", "n1", "ns", "a", "c"),
    ("pod_container", "n1", "ns", "a", ""),
    ("ns", None, "ns", None, None),
]
_STARTS = [*[START] * 8, START + SECOND, None]


def _reference_rates(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Heapster's loop body for one entity, with our decrease/garbage rule; Python ints, no overflow."""
    out: dict[str, Any] = dict.fromkeys(RATE_NAMES)
    if old is None or new["type"] not in COUNTER_ENTITY_TYPES or old["type"] not in COUNTER_ENTITY_TYPES:
        return out
    if new["sample_time"] is None or old["sample_time"] is None or new["sample_time"] <= old["sample_time"]:
        return out
    if new["start_time"] != old["start_time"]:
        return out
    dt_ms = (new["sample_time"] - old["sample_time"]) // timedelta(milliseconds=1)
    for m in RATES:
        a, b = old[m.rate_of or ""], new[m.rate_of or ""]
        if a is None or b is None or a < 0 or b < a:
            continue
        if m.is_int:
            out[m.name] = (1000 * (b - a)) // (dt_ms * 10**6)  # Heapster's formula, in nanoseconds
        else:
            out[m.name] = float(b - a) * 1000.0 / float(dt_ms)
    return out


def _reference(windows: Sequence[Frames]) -> list[list[dict[str, Any]]]:
    state: dict[tuple[Any, ...], dict[str, Any]] | None = None
    previous: datetime | None = None
    results = []
    for w in windows:
        rows = w.entities.to_dicts()
        if previous is not None and w.timestamp <= previous:
            results.append([dict.fromkeys(RATE_NAMES) for _ in rows])
            continue
        results.append(
            [_reference_rates(None if state is None else state.get(tuple(r[k] for k in KEY_COLUMNS)), r) for r in rows]
        )
        state = {tuple(r[k] for k in KEY_COLUMNS): r for r in rows if r["type"] in COUNTER_ENTITY_TYPES}
        previous = w.timestamp
    return results


def _counter(window_index: int) -> st.SearchStrategy[int | None]:
    """Mostly a counter that grows from window to window; sometimes null, a reset, or garbage."""
    growing = st.integers(0, 10**10).map(lambda v: window_index * 10**10 + v)
    return st.one_of(*[growing] * 8, st.none(), st.sampled_from([0, -1, 2**63 - 1]))


def _half_seconds_from(base: datetime, n: int) -> datetime:
    return base + n * timedelta(milliseconds=500)


@st.composite
def _windows(draw: st.DrawFn) -> list[Frames]:
    """Up to four windows ~15 s apart over a few keys; times and start times mostly well-behaved."""
    out = []
    keys = draw(st.lists(st.sampled_from(_POOL), min_size=1, max_size=8))
    for i in range(draw(st.integers(2, 4))):
        rows = []
        base = T0 + i * 15 * SECOND
        # Mostly the same entities every window; some leave, some arrive.
        present = [k for k in keys if draw(st.sampled_from([*[True] * 6, False]))]
        for type_, node, namespace, pod, container in present + draw(st.lists(st.sampled_from(_POOL), max_size=2)):
            jitter = st.integers(-3, 3).map(partial(_half_seconds_from, base))
            row = entity(
                pod,
                type_=type_,
                node=node,
                namespace=namespace,
                container=container,
                start=draw(st.sampled_from(_STARTS)),
                sample=draw(st.one_of(*[jitter] * 8, st.none(), st.just(T0))),
            )
            row.update({c: draw(_counter(i)) for c in COUNTERS})
            rows.append(row)
        out.append(window(rows, base + draw(st.sampled_from([*[0] * 6, -15, -30])) * SECOND))
    return out


def _check_against_reference(windows: list[Frames]) -> None:
    outs = run(*windows)
    for w, out, expected in zip(windows, outs, _reference(windows), strict=True):
        assert out.entities.select(w.entities.columns).equals(w.entities)
        assert out.entities.select(RATE_NAMES).to_dicts() == expected


@settings(max_examples=120, deadline=None)
@given(_windows())
def test_matches_a_per_entity_reference(windows: list[Frames]) -> None:
    _check_against_reference(windows)


@settings(max_examples=40, deadline=None)
@given(_windows())
def test_matches_the_reference_when_every_key_collides(windows: list[Frames]) -> None:
    with weak_hash(_constant):
        _check_against_reference(windows)


Key = tuple[str, str | None, str | None, str | None, str | None]


def _random_windows(seed: int) -> list[Frames]:
    """Five windows over ~400 entities with every irregularity at a few percent (no hypothesis
    shrinking bias: most rows are the normal case, so most rates are non-null)."""
    rng = random.Random(seed)
    keys: list[Key] = [("node", f"n{n}", None, None, None) for n in range(5)]
    keys += [("sys_container", f"n{n}", None, None, c) for n in range(5) for c in ("kubelet", "runtime")]
    pods = [(f"n{n}", f"ns{p % 3}", f"p{p}") for n in range(5) for p in range(20)]
    keys += [("pod", n, ns, p, None) for n, ns, p in pods]
    keys += [("pod_container", n, ns, p, c) for n, ns, p in pods for c in ("app", "sidecar", "")]
    keys += [("ns", None, f"ns{i}", None, None) for i in range(3)]
    counters = {k: {c: rng.randrange(10**12) for c in COUNTERS} for k in keys}
    out = []
    at = T0
    for _ in range(5):
        at += rng.choice([*[15] * 12, 0, -10]) * SECOND
        rows = []
        for key in rng.sample(keys, k=len(keys) - rng.randrange(10)) + rng.choices(keys, k=3):
            type_, node, namespace, pod, container = key
            for c in COUNTERS:
                counters[key][c] += rng.choice([*[rng.randrange(10**11)] * 20, -(10**6), 0])
            values: dict[str, Any] = {c: v if rng.random() > 0.03 else None for c, v in counters[key].items()}
            if rng.random() < 0.01:
                values["cpu/usage"] = rng.choice([-1, 2**63 - 1])
            row = entity(
                pod,
                type_=type_,
                node=node,
                namespace=namespace,
                container=container,
                start=rng.choice([*[START] * 40, START + SECOND, None]),
                sample=rng.choice([*[at - rng.randrange(5000) * timedelta(milliseconds=1)] * 40, None, T0]),
            )
            row.update(values)
            rows.append(row)
        out.append(window(rows, at))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_reference_on_random_windows(seed: int) -> None:
    windows = _random_windows(seed)
    _check_against_reference(windows)
    assert sum(r["cpu/usage_rate"] is not None for rows in _reference(windows)[1:] for r in rows) > 300
