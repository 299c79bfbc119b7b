"""``percentile_buckets`` against VPA's ``histogram.Percentile`` written plainly, in exact arithmetic.

The reference walks one group's buckets in order with ``Fraction`` weights and stops at the first
whose running sum reaches ``p * total`` (``p`` as the decimal the flag says: 0.9 is 9/10), so ties
are decided exactly, whatever the float summation order would make of them.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from heapster_columnar.analysis._histograms import percentile_buckets

PERCENTILES = (0.5, 0.9, 0.95)


def reference(cells: dict[int, Fraction], p: float) -> int:
    total = sum(cells.values())
    if total == 0:
        return -1
    running = Fraction(0)
    for bucket in sorted(cells):
        running += cells[bucket]
        if running >= Fraction(str(p)) * total:
            return bucket
    raise AssertionError("unreachable: the running sum ends at the total")


def merged(keys, buckets, counts, lengths, weights, groups):  # type: ignore[no-untyped-def]
    """Each group's histogram as {bucket: exact weight}."""
    out: list[dict[int, Fraction]] = [{} for _ in range(groups)]
    cell = 0
    for row, key in enumerate(keys):
        n = 1 if lengths is None else lengths[row]
        for _ in range(n):
            w = Fraction(int(counts[cell])) * (Fraction(float(weights[row])) if weights is not None else 1)
            out[key][int(buckets[cell])] = out[key].get(int(buckets[cell]), Fraction(0)) + w
            cell += 1
    return out


@pytest.mark.parametrize("groups", [300, 9])  # sparse layout (ranges per group), dense block (few groups)
@pytest.mark.parametrize("by_group", [False, True])  # rows in any order, rows sorted by group
def test_histograms_with_decayed_weights_match_the_exact_reference(groups: int, by_group: bool) -> None:
    """Groups of rows whose weights span 2^0 .. 2^-30 (VPA's decay over a month), next to groups
    weighing 10^6 times more: a small group must not drown in the running sum of the big ones."""
    rng = np.random.default_rng(groups)
    rows = 3000
    keys = rng.integers(0, groups - 5, rows)  # the last five groups stay empty
    if by_group:
        keys.sort()
    lengths = rng.integers(0, 8, rows)  # some rows with an empty histogram
    buckets = np.concatenate([np.sort(rng.choice(176, n, replace=False)) + 0 for n in lengths])
    counts = rng.integers(1, 300, int(lengths.sum()))
    weights = 2.0 ** -rng.integers(0, 31, rows) * np.where(keys % 7 == 0, 1e6, 0.1)
    got = percentile_buckets(keys, groups, buckets, counts, lengths, [(weights, PERCENTILES), (None, (0.95,))])
    exact = merged(keys, buckets, counts, lengths, weights, groups)
    plain = merged(keys, buckets, counts, lengths, None, groups)
    for g in range(groups):
        assert [got[0][i][g] for i in range(3)] == [reference(exact[g], p) for p in PERCENTILES], g
        assert got[1][0][g] == reference(plain[g], 0.95), g
    assert (got[0][0][-5:] == -1).all()


def test_exact_ties_take_the_lower_bucket() -> None:
    """A container seen by rightsizing on a real store: 42 of its 84 samples are at or below bucket
    19, each weighing 0.24 * 2^-6; added in order, the float sum misses half the total by one ulp.
    p50 is bucket 19, as in exact arithmetic. Two buckets of equal weight: p50 is the first."""
    buckets = np.array([10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 3, 4])
    counts = np.array([1, 3, 5, 4, 6, 6, 7, 5, 5, 15, 14, 8, 4, 1, 5, 5])
    assert counts[:9].sum() == counts[9:14].sum() == 42
    weight = np.array([0.24 * 2**-6, 1.0])
    ((p50, p90),) = percentile_buckets(np.array([0, 1]), 2, buckets, counts, np.array([14, 2]), [(weight, (0.5, 0.9))])
    assert p50.tolist() == [19, 3]
    assert p90.tolist() == [22, 4]


def test_one_sample_per_row_and_no_samples_at_all() -> None:
    """Scalar rows (``lengths`` None), as the memory peaks come: a group of one peak, a group of
    peaks in three buckets, and no rows at all."""
    keys = np.array([1, 1, 1, 1, 0])
    buckets = np.array([40, 41, 41, 60, 7])
    decay = np.array([0.25, 0.5, 0.5, 1.0, 1.0])
    ((p50, p95),) = percentile_buckets(keys, 3, buckets, np.ones(5), None, [(decay, (0.5, 0.95))])
    # group 1: 0.25 at 40, 1.0 at 41, 1.0 at 60 (total 2.25): half is 1.125, reached at 41
    assert p50.tolist() == [7, 41, -1]
    assert p95.tolist() == [7, 60, -1]
    empty = percentile_buckets(np.zeros(0, int), 0, np.zeros(0, int), np.zeros(0), np.zeros(0, int), [(None, (0.5,))])
    assert [r.size for r in empty[0]] == [0]


@pytest.mark.parametrize("groups", [1, 2])
def test_zero_weights_are_no_samples(groups: int) -> None:
    """Rows weighing 0 (a bucket with a zero count) leave the histogram empty: -1, not bucket 0."""
    got = percentile_buckets(np.zeros(2, int), groups, np.array([5, 9]), np.array([0, 0]), None, [(None, (0.5,))])
    assert got[0][0].tolist() == [-1] * groups
