"""Kubernetes label selectors (``labelSelector=app=web,tier!=db,env in (a,b),!legacy``) evaluated
over a whole ``map<string, string>`` labels column at once.

The grammar is the API server's (``k8s.io/apimachinery/pkg/labels``): requirements joined by
commas, each ``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value``, ``key in (v1,v2)``
or ``key notin (v1,v2)``. ``!=`` and ``notin`` also match objects without the key, as there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Requirement", "SelectorError", "matches", "parse_selector"]


class SelectorError(ValueError):
    """A selector that does not parse; the message names the part."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # exists, !exists, in, notin
    values: tuple[str, ...] = ()


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQUALS = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split(text: str) -> list[str]:
    """Commas separate requirements except inside ``( )``."""
    parts, depth, current = [], 0, ""
    for char in text:  # a loop over the query string's characters, not over objects
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise SelectorError(f"unbalanced parentheses in {text!r}")
    return [*parts, current]


def parse_selector(text: str | None) -> list[Requirement]:
    if not text or not text.strip():
        return []
    requirements = []
    for part in _split(text):
        if (found := _SET.match(part)) is not None:
            values = tuple(v.strip() for v in found.group(4).split(",") if v.strip())
            if not values:
                raise SelectorError(f"{part.strip()!r}: a set needs at least one value")
            requirements.append(Requirement(found.group(1), found.group(3), values))
        elif (found := _EQUALS.match(part)) is not None:
            operator = "notin" if found.group(3) == "!=" else "in"
            requirements.append(Requirement(found.group(1), operator, (found.group(4),)))
        elif (found := _EXISTS.match(part)) is not None:
            requirements.append(Requirement(found.group(2), "!exists" if found.group(1) else "exists"))
        else:
            raise SelectorError(f"{part.strip()!r} is not a label requirement (key, !key, key=value, key in (a,b))")
    return requirements


def matches(labels: pa.Array | pa.ChunkedArray, requirements: list[Requirement]) -> np.ndarray:
    """One boolean per row of ``labels`` (map<string, string>; null = no labels)."""
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks() if labels.num_chunks != 1 else labels.chunk(0)
    rows = len(labels)
    result = np.ones(rows, dtype=bool)
    if not requirements:
        return result
    entries = labels.cast(pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())])))
    parents = pc.list_parent_indices(entries).to_numpy()
    flat = pc.list_flatten(entries)
    keys, values = pc.struct_field(flat, "key"), pc.struct_field(flat, "value")
    for requirement in requirements:
        same_key = pc.equal(keys, requirement.key).to_numpy(zero_copy_only=False)
        has_key = np.bincount(parents[same_key], minlength=rows) > 0
        if requirement.operator in ("exists", "!exists"):
            hit = has_key
        else:
            in_set = pc.is_in(values, value_set=pa.array(requirement.values, pa.string())).to_numpy(
                zero_copy_only=False
            )
            hit = np.bincount(parents[same_key & in_set], minlength=rows) > 0
        result &= ~hit if requirement.operator in ("!exists", "notin") else hit
    return result
