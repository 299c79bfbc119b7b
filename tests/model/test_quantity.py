"""Quantity parsing against hand-checked values and a plain ``decimal.Decimal`` reference."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, Inexact, localcontext

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heapster_columnar.model.quantity import invalid_quantities, parse_quantities

INT64_MAX = 2**63 - 1
TEN = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
TWO = {f"{p}i": 10 * (i + 1) for i, p in enumerate("KMGTPE")}
GRAMMAR = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)")


def reference(text: str, *, milli: bool) -> int | None:
    """One quantity the slow way: exact Decimal arithmetic, magnitude rounded up; None beyond int64.

    Raises ValueError for a string Kubernetes rejects.
    """
    match = GRAMMAR.fullmatch(text)
    if not text or match is None:
        raise ValueError(text)
    sign, integer, fraction, suffix = match.groups()
    mantissa = Decimal(f"0{integer}.{fraction or ''}0")
    if suffix in TEN:
        tens, twos = TEN[suffix], 0
    elif suffix in TWO:
        tens, twos = 0, TWO[suffix]
    elif re.fullmatch(r"[eE][+-]?[0-9]+", suffix):
        tens, twos = int(suffix[1:]), 0
    else:
        raise ValueError(text)
    if mantissa == 0:
        return 0
    if abs(tens) > 10**6:  # beyond Decimal's exponent range: the sign of the exponent decides
        return None if tens > 0 else (-1 if sign == "-" else 1)
    with localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = 1000, 10**7, -(10**7)
        ctx.traps[Inexact] = True  # every step below must be exact
        magnitude = mantissa * 2**twos * (1000 if milli else 1)
        scaled = magnitude.scaleb(tens)
        if scaled > INT64_MAX:
            return None
        rounded = int(scaled.to_integral_value(rounding=ROUND_CEILING))
    if rounded > INT64_MAX:
        return None
    return -rounded if sign == "-" else rounded


def expected(text: str, *, milli: bool) -> int | None:
    try:
        return reference(text, milli=milli)
    except ValueError:
        return None


def is_invalid(text: str) -> bool:
    try:
        reference(text, milli=False)
    except ValueError:
        return True
    return False


def parse(values: list[str | None], *, milli: bool) -> list[int | None]:
    result: list[int | None] = parse_quantities(
        pa.array(values, pa.string()), milli=milli, on_invalid="null"
    ).to_pylist()
    return result


KNOWN = [
    # text, MilliValue, Value
    ("100m", 100, 1),
    ("1m", 1, 1),
    ("0.1", 100, 1),
    ("2", 2000, 2),
    ("1.5", 1500, 2),
    (".5", 500, 1),
    ("1.", 1000, 1),
    ("+1", 1000, 1),
    ("70Mi", 70 * 2**20 * 1000, 70 * 2**20),
    ("1.5Gi", 1536 * 2**20 * 1000, 1536 * 2**20),
    ("1.1Ki", 1126400, 1127),
    ("129M", 129 * 10**9, 129 * 10**6),
    ("129e6", 129 * 10**9, 129 * 10**6),
    ("1e3", 10**6, 1000),
    ("1E3", 10**6, 1000),
    ("1e-3", 1, 1),
    ("1E", None, 10**18),  # E alone is exa, not an exponent
    ("250n", 1, 1),
    ("7u", 1, 1),
    ("0", 0, 0),
    ("000", 0, 0),
    ("-0", 0, 0),
    ("0e99999", 0, 0),
    ("-1.5", -1500, -2),  # magnitude rounded up: away from zero
    ("9223372036854775807", None, INT64_MAX),
    ("9223372036854775808", None, None),
    ("8Ei", None, None),
    ("7Ei", None, 7 * 2**60),
    ("1e400", None, None),
    ("1e-400", 1, 1),
    ("0.0000000000000000000000000000000000001Ei", 1, 1),
]


@pytest.mark.parametrize(
    ("text", "milli", "value"), [(t, True, m) for t, m, _ in KNOWN] + [(t, False, v) for t, _, v in KNOWN]
)
def test_known_values(text: str, milli: bool, value: int | None) -> None:
    assert parse([text], milli=milli) == [value]
    assert expected(text, milli=milli) == value


@pytest.mark.parametrize(
    "text", ["", "abc", "1 ", " 1", "1\n", "1K", "1ki", "1e", "1mi", "1.1.1", "1e1.5", "1Mi5", "½", "--1"]
)
def test_invalid_strings(text: str) -> None:
    assert parse([text], milli=True) == [None]
    assert invalid_quantities(pa.array([text])).to_pylist() == [True]
    assert is_invalid(text)


def test_kubernetes_oddities_parse_as_zero() -> None:
    # parseQuantityString accepts a lone sign, a lone point or a bare suffix: all zero
    assert parse([".", "+", "-", "k", "Mi", "e3", "+.Ki"], milli=True) == [0] * 7


def test_invalid_raises_with_the_first_bad_value() -> None:
    with pytest.raises(ValueError, match=r"invalid quantity '1 cpu' at index 1 \(2 invalid of 4\)"):
        parse_quantities(pa.array(["1", "1 cpu", None, "x"]), milli=True)


def test_nulls_chunked_and_empty() -> None:
    chunked = pa.chunked_array([pa.array(["1", None]), pa.array(["2Ki"])])
    assert parse_quantities(chunked, milli=False).to_pylist() == [1, None, 2048]
    assert parse_quantities(pa.chunked_array([], pa.string()), milli=False).to_pylist() == []
    assert parse_quantities(pa.array([], pa.string()), milli=True).type == pa.int64()
    assert parse_quantities(pa.array([None, None], pa.null()), milli=True).to_pylist() == [None, None]
    assert invalid_quantities(pa.array([None], pa.string())).to_pylist() == [False]
    large = pa.array(["5Gi"], pa.large_string())
    assert parse_quantities(large, milli=False).to_pylist() == [5 * 2**30]


def test_not_strings_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must be strings"):
        parse_quantities(pa.array([1, 2]), milli=True)


digits = st.text("0123456789", max_size=25)
suffixes = st.one_of(
    st.sampled_from([*TEN, *TWO]),
    st.builds(lambda e, sign, n: f"{e}{sign}{n}", st.sampled_from("eE"), st.sampled_from(["", "+", "-"]), digits),
)
quantities = st.builds(
    lambda sign, integer, point, fraction, suffix: (
        f"{sign}{integer}{'.' if point else ''}{fraction if point else ''}{suffix}"
    ),
    st.sampled_from(["", "", "+", "-"]),
    digits,
    st.booleans(),
    st.text("0123456789", max_size=80),
    suffixes,
)
# realistic shapes too, so most examples land in int64 rather than overflow
canonical = st.builds(
    lambda n, suffix: f"{n}{suffix}", st.integers(0, 10**12), st.sampled_from([*TEN, *TWO, "e3", "e-2"])
)


def _exact_binary(target: int, suffix: str, scale: int) -> str:
    """``target / 2^k / 1000^scale`` written out exactly (k from the binary suffix): a long fraction."""
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        return f"{Decimal(target) / Decimal(2) ** TWO[suffix] / Decimal(1000) ** scale:f}{suffix}"


# values within a few units of the int64 limit (and of 1): the ceiling and overflow edges
edges = st.builds(
    _exact_binary,
    st.one_of(st.integers(INT64_MAX - 3000, INT64_MAX + 3000), st.integers(0, 3000)),
    st.sampled_from(list(TWO)),
    st.sampled_from([0, 1]),
)
decimal_edges = st.builds(
    lambda n, shift: f"{n}e-{shift}", st.integers(INT64_MAX * 990, INT64_MAX * 1010), st.integers(0, 6)
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(quantities, canonical, edges, decimal_edges, st.text(max_size=6)), min_size=1, max_size=30),
    st.booleans(),
)
def test_matches_decimal_reference(texts: list[str], milli: bool) -> None:
    assert parse(texts, milli=milli) == [expected(t, milli=milli) for t in texts]
    assert invalid_quantities(pa.array(texts)).to_pylist() == [is_invalid(t) for t in texts]
