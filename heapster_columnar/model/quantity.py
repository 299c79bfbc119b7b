"""Kubernetes resource quantities (``"100m"``, ``"1.5Gi"``, ``"1e3"``) → int64, vectorized and exact.

Heapster reads requests, limits, capacity and allocatable through apimachinery's ``Quantity``:
``MilliValue()`` for CPU, ``Value()`` for everything else, both rounded **up** (away from zero).
150 k pods carry ~1 M quantity strings, so the parse runs as Arrow kernels: one regular expression
validates, trims split sign, digits and suffix, and integer arithmetic in numpy does the scaling.
Rare shapes (more than 19 significant digits, a fraction under a binary suffix) take a slower but
still vectorized path: string padding puts the decimal point at a fixed place and a small long
multiplication scales the fraction. No floats anywhere: ``"0.1"`` is exactly 100 millicores.

The grammar is the one ``resource.ParseQuantity`` implements (looser than its doc comment):
optional sign, digits with an optional ``.`` (``"1."``, ``".5"``), then a decimal suffix
``n u m k M G T P E``, a binary suffix ``Ki … Ei``, or ``e``/``E`` and an optionally signed
integer exponent. Like Kubernetes we accept degenerate forms (``"."``, ``"+"``, ``"k"``) as zero
and reject only the empty string, whitespace and anything outside that grammar.

Where we differ from apimachinery, on values no API server stores:
- a result outside int64 is null (Kubernetes caps binary quantities at 2^63-1 and lets the
  int64 conversion of larger decimal ones wrap);
- exponents are taken at face value (Kubernetes truncates them to int32 and rejects those
  beyond int64), so ``"1e4294967296"`` is an overflow rather than 1.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["QUANTITY_PATTERN", "invalid_quantities", "parse_quantities"]

QUANTITY_PATTERN = r"^[+-]?[0-9]*(?:\.[0-9]*)?(?:[numkMGTPE]?|[KMGTPE]i|[eE][+-]?[0-9]+)$"
# suffix -> (power of ten, power of two); apimachinery's suffix.go tables
_SUFFIXES: dict[str, tuple[int, int]] = {
    "n": (-9, 0),
    "u": (-6, 0),
    "m": (-3, 0),
    "": (0, 0),
    "k": (3, 0),
    "M": (6, 0),
    "G": (9, 0),
    "T": (12, 0),
    "P": (15, 0),
    "E": (18, 0),
    **{f"{p}i": (0, 10 * (i + 1)) for i, p in enumerate("KMGTPE")},
}
_SUFFIX_NAMES = pa.array(list(_SUFFIXES))
_SUFFIX_TEN = pa.array([ten for ten, _ in _SUFFIXES.values()], pa.int64())
_SUFFIX_TWO = pa.array([two for _, two in _SUFFIXES.values()], pa.int64())
# 2^k lies in [10^FLOOR, 10^CEIL) for k = 0, 10, ..., 60
_LOG2_FLOOR = np.array([0, 3, 6, 9, 12, 15, 18], np.int64)
_LOG2_CEIL = np.array([0, 4, 7, 10, 13, 16, 19], np.int64)
_INT_DIGITS = 19  # every int64 magnitude has at most 19 digits
_FRAC_CHUNKS = 7  # 63 >= 60 fraction digits: enough to ceil x * 2^60 exactly (see _ceil_fraction)
_CHUNK = 10**9
_INT64_MAX = np.uint64(2**63 - 1)
_EXPONENT_CLAMP = "1000000000"  # |exponent| >= 1e9 gives the same answer as any larger one
_SUFFIX_LETTERS = "numkKMGTPEi"
_POW10 = np.array([10**i for i in range(_INT_DIGITS + 1)], np.uint64)


def _strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    kind = values.type
    text_types = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_null)
    if not any(is_text(kind) for is_text in text_types):
        raise TypeError(f"quantities must be strings, not {kind}")
    return values if pa.types.is_string(kind) else values.cast(pa.string())


def invalid_quantities(values: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """True where a non-null string is not a Kubernetes quantity (null input is not invalid)."""
    strings = _strings(values)
    ok = pc.and_(pc.match_substring_regex(strings, QUANTITY_PATTERN), pc.greater(pc.binary_length(strings), 0))
    return pc.invert(ok).fill_null(False)


def parse_quantities(
    values: pa.Array | pa.ChunkedArray, *, milli: bool, on_invalid: Literal["raise", "null"] = "raise"
) -> pa.Int64Array:
    """``MilliValue()`` (``milli=True``) or ``Value()`` of each quantity string, rounded up.

    Null in → null out. A result beyond int64 is null. An invalid string raises ``ValueError``
    naming the first one (``on_invalid="raise"``, the default) or becomes null
    (``on_invalid="null"``; :func:`invalid_quantities` tells those nulls from the others).
    """
    if on_invalid not in ("raise", "null"):
        raise ValueError(f"on_invalid must be 'raise' or 'null', not {on_invalid!r}")
    strings = _strings(values)
    invalid = invalid_quantities(strings)
    if on_invalid == "raise" and pc.any(invalid).as_py():
        first, count = pc.index(invalid, True).as_py(), pc.sum(invalid).as_py()
        raise ValueError(
            f"invalid quantity {strings[first].as_py()!r} at index {first} ({count} invalid of {len(strings)})"
        )
    # Invalid rows become "" (zero) here and null at the end, so every step below sees the grammar.
    text = pc.if_else(pc.or_(invalid, strings.is_null()), "", strings)
    suffix = pc.utf8_ltrim(text, characters="+-0123456789.")  # "Mi", "m", "", or an exponent "e-3"
    index = pc.index_in(suffix, value_set=_SUFFIX_NAMES)
    ten = pc.take(_SUFFIX_TEN, index).fill_null(0).to_numpy(zero_copy_only=False, writable=True)
    k = pc.take(_SUFFIX_TWO, index).fill_null(0).to_numpy()
    number = pc.utf8_rtrim(text, characters=_SUFFIX_LETTERS)  # the number without its suffix
    is_exponent = index.is_null()
    if pc.any(is_exponent).as_py():  # "1e3": the suffix is not in the table; its digits go before the "e"
        rows = np.flatnonzero(is_exponent.to_numpy(zero_copy_only=False))
        ten[rows] = _exponents(pc.take(suffix, pa.array(rows)))
        before = pc.utf8_rtrim(pc.utf8_rtrim(text, characters="+-0123456789"), characters="eE")
        number = pc.if_else(is_exponent, before, number)
    unsigned = pc.utf8_ltrim(number, characters="+-")
    digits = pc.replace_substring(unsigned, ".", "")
    leading = pc.utf8_ltrim(digits, characters="0")
    significant = pc.utf8_rtrim(leading, characters="0")
    # value = 0.S * 10^point * 2^k, with S the digits without leading or trailing zeros
    n = _lengths(significant)
    point = (
        _lengths(unsigned)
        - _lengths(pc.utf8_ltrim(unsigned, characters="0123456789"))  # digits before the point
        - (_lengths(digits) - _lengths(leading))  # leading zeros
        + ten
        + (3 if milli else 0)
    )
    zero = n == 0
    overflow = ~zero & (point + _LOG2_FLOOR[k // 10] >= _INT_DIGITS + 1)  # value >= 10^19
    tiny = ~zero & ~overflow & (point + _LOG2_CEIL[k // 10] <= 0)  # 0 < value < 1
    normal = ~(zero | overflow | tiny)  # -18 <= point <= 19

    # Common case, integer arithmetic: S fits uint64 and no fraction needs scaling by 2^k.
    slow = normal & ((n > _INT_DIGITS) | ((point < n) & (k > 0)))
    fast = normal & ~slow
    mantissa = pc.cast(pc.if_else(pa.array(fast), significant, "0"), pa.uint64()).to_numpy()
    up, down = np.clip(point - n, 0, _INT_DIGITS), np.clip(n - point, 0, _INT_DIGITS + 1)
    whole = np.where(down > _INT_DIGITS, 0, mantissa // _POW10[np.minimum(down, _INT_DIGITS)]) * _POW10[up]
    carry = (point < n).astype(np.uint64)  # S ends in a non-zero digit: any fraction rounds up
    if slow.any():
        rows = np.flatnonzero(slow)
        whole[rows], carry[rows] = _by_padding(pc.take(significant, pa.array(rows)), point[rows], k[rows])
    shift = k.astype(np.uint64)
    fits = whole <= (_INT64_MAX >> shift)
    magnitude = (np.where(fits, whole, 0) << shift) + carry
    fits &= magnitude <= _INT64_MAX
    magnitude = np.where(zero, 0, np.where(tiny, 1, magnitude)).astype(np.int64)
    result = np.where(pc.starts_with(text, "-").to_numpy(zero_copy_only=False), -magnitude, magnitude)
    null = strings.is_null().to_numpy(zero_copy_only=False) | invalid.to_numpy(zero_copy_only=False)
    return pa.array(result, pa.int64(), mask=null | overflow | (normal & ~fits))


def _lengths(strings: pa.Array) -> np.ndarray:
    lengths: np.ndarray = pc.binary_length(strings).to_numpy(zero_copy_only=False).astype(np.int64)
    return lengths


def _exponents(suffixes: pa.Array) -> np.ndarray:
    """The integer of each ``e``/``E`` suffix; beyond ±10^9 clamped (same answer, no int64 overflow)."""
    signed = pc.utf8_slice_codeunits(suffixes, 1)  # "+3", "-3", "3"
    digits = pc.utf8_ltrim(signed, characters="+-0")
    digits = pc.if_else(pc.greater(pc.binary_length(digits), 9), _EXPONENT_CLAMP, digits)
    exponent: np.ndarray = pc.cast(pc.if_else(pc.equal(digits, ""), "0", digits), pa.int64()).to_numpy()
    return np.where(pc.starts_with(signed, "-").to_numpy(zero_copy_only=False), -exponent, exponent)


def _digits(strings: pa.Array, width: int) -> np.ndarray:
    """Each string of at most ``width`` digits as an integer, right-padded with zeros to ``width``."""
    length = _lengths(strings)
    value: np.ndarray = pc.cast(pc.if_else(pc.equal(strings, ""), "0", strings), pa.uint64()).to_numpy()
    padded: np.ndarray = value * _POW10[width - length]
    return padded


def _by_padding(significant: pa.Array, point: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(integer part, rounding carry) of 0.S * 10^point * 2^k for -18 <= point <= 19, any length of S.

    Left-padding with 19 - point zeros puts the decimal point after exactly 19 digits; the integer
    part is then a fixed slice, and only the fraction behind it needs the long multiplication.
    """
    padded = pc.binary_join_element_wise(pc.binary_repeat("0", pa.array(_INT_DIGITS - point)), significant, "")
    whole = _digits(pc.utf8_slice_codeunits(padded, 0, _INT_DIGITS), _INT_DIGITS)
    carry = (_lengths(padded) > _INT_DIGITS).astype(np.uint64)
    binary = np.flatnonzero((carry > 0) & (k > 0))
    if len(binary):
        fraction = pc.utf8_slice_codeunits(pc.take(padded, pa.array(binary)), _INT_DIGITS)
        carry[binary] = _ceil_fraction(fraction, k[binary])
    return whole, carry


def _ceil_fraction(fraction: pa.Array, k: np.ndarray) -> np.ndarray:
    """ceil(0.F * 2^k) for non-empty digit strings F ending in a non-zero digit (1 <= k <= 60), exactly.

    F is cut to 63 digits, in base-10^9 limbs multiplied by 2^k in steps of at most 2^30 so every
    product fits int64. Cutting is safe: with at least k digits kept, x = F63 * 2^k is a multiple of
    u = 2^k / 10^63 and so is every integer, hence no integer lies strictly between x and the true
    value (< x + u), whose ceiling is then floor(x) + 1.
    """
    length = _lengths(fraction)
    truncated = length > 9 * _FRAC_CHUNKS
    chunks = min(_FRAC_CHUNKS, -(-int(length.max()) // 9))
    limbs = np.stack(
        [_digits(pc.utf8_slice_codeunits(fraction, 9 * j, 9 * (j + 1)), 9).astype(np.int64) for j in range(chunks)],
        axis=1,
    )
    integer = np.zeros(len(k), np.int64)
    remaining = k.copy()
    while remaining.any():
        step = np.minimum(remaining, 30)
        remaining -= step
        carry = np.zeros(len(k), np.int64)
        for j in range(chunks - 1, -1, -1):
            product = (limbs[:, j] << step) + carry
            limbs[:, j], carry = product % _CHUNK, product // _CHUNK
        integer = (integer << step) + carry
    exact = ~truncated & ~limbs.any(axis=1)
    return (integer + ~exact).astype(np.uint64)
