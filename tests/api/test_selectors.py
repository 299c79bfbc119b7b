"""Label selectors over a labels column, against the API server's semantics."""

from __future__ import annotations

import pyarrow as pa
import pytest

from heapster_columnar.api.selectors import SelectorError, matches, parse_selector

LABELS = pa.array(
    [
        [("app", "web"), ("tier", "front")],
        [("app", "db"), ("tier", "back"), ("legacy", "")],
        [],
        None,
        [("app", "web"), ("env", "prod")],
    ],
    type=pa.map_(pa.string(), pa.string()),
)


@pytest.mark.parametrize(
    ("selector", "want"),
    [
        ("", [True, True, True, True, True]),
        ("app=web", [True, False, False, False, True]),
        ("app==web,tier=front", [True, False, False, False, False]),
        ("app!=web", [False, True, True, True, False]),  # objects without the key match !=
        ("app in (db, web)", [True, True, False, False, True]),
        ("app notin (web),tier", [False, True, False, False, False]),
        ("legacy", [False, True, False, False, False]),
        ("!legacy", [True, False, True, True, True]),
        ("env in (prod,staging), app=web", [False, False, False, False, True]),
    ],
)
def test_selectors(selector: str, want: list[bool]) -> None:
    assert matches(LABELS, parse_selector(selector)).tolist() == want


@pytest.mark.parametrize(
    ("selector", "message"),
    [("app in (", "parenthes"), ("a b", "not a label requirement"), ("x in ()", "at least one value")],
)
def test_bad_selectors_name_the_part(selector: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        parse_selector(selector)
