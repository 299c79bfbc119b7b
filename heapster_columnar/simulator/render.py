"""Pre-rendered Summary bodies with the moving numbers patched in place.

Rendering a node's document from scratch costs milliseconds; a 5,000-node scrape would make the
simulator the bottleneck. Instead, a node's document is rendered twice, one second apart; every
integer and every time string that differs between the two is a *slot* that moves linearly with
the clock (counters are rate * elapsed; sample times tick by one second). The body is serialized
once with fixed-width placeholders in those slots, and each later request only writes the current
digits into the slots with a few numpy operations.

Numbers are right-aligned in 19 columns, padded with spaces, which JSON allows between tokens
(``"usageCoreNanoSeconds":   123``). Times keep their 20 characters (``2026-11-26T12:00:00Z``).
A template is rebuilt after ``refresh`` seconds, so slow non-linear parts (the memory wave) follow.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from heapster_columnar.simulator.payloads import MARK_BASE, MarkedDocument

INT_WIDTH = 19  # every counter stays below 2^63, i.e. at most 19 digits
TIME_WIDTH = 20
_INT_BASE = MARK_BASE  # 19-digit placeholders: base + slot number
# No look-arounds (they cost 10x): a real number of 19 digits is below MARK_BASE, and no string
# in a document holds 19 digits in a row, so the literal prefix can only start a mark.
_INT_MARK = re.compile(rb"8000000[0-9]{12}")
_TIME_MARK = re.compile(rb'"~[0-9]{19}"')
_ID_DIGITS = 10 ** np.arange(11, -1, -1, dtype=np.int64)
_POW10 = 10 ** np.arange(INT_WIDTH - 1, -1, -1, dtype=np.int64)
_EPOCH = np.datetime64("1970-01-01T00:00:00", "s")


def _slots(a: Any, b: Any, ints: list[tuple[int, int]], times: list[int]) -> Any:
    """Walk two renders of the same document; replace moving values by placeholders (setup only)."""
    if isinstance(a, dict):
        return {k: _slots(v, b[k], ints, times) for k, v in a.items()}
    if isinstance(a, list):
        return [_slots(x, y, ints, times) for x, y in zip(a, b, strict=True)]
    if a == b or isinstance(a, bool):
        return a
    if isinstance(a, int) and 0 <= a < _INT_BASE:
        ints.append((a, b - a))
        return _INT_BASE + len(ints) - 1
    if isinstance(a, str) and len(a) == TIME_WIDTH and a.endswith("Z"):
        seconds = int((np.datetime64(a[:-1], "s") - _EPOCH).astype(np.int64))
        times.append(seconds)
        return f"~{len(times) - 1:0{TIME_WIDTH - 1}d}"
    return a  # anything else that moves (floats) keeps the first render's value


def _mark_ids(raw: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The ids spelled by the last 12 digits before each end offset."""
    digits = raw[ends[:, None] + np.arange(-12, 0)].astype(np.int64) - 48
    return digits @ _ID_DIGITS


@dataclass(frozen=True, slots=True)
class SummaryTemplate:
    """One node's body with slots; ``render(t)`` patches them for wall-clock second ``t``."""

    at: int  # the second the first render describes
    body: bytes
    int_offsets: np.ndarray  # where each number's 19 columns start
    int_base: np.ndarray
    int_rate: np.ndarray  # change per second
    time_offsets: np.ndarray
    time_base: np.ndarray  # the distinct epoch seconds at `at` (a document has only a few)
    time_of_slot: np.ndarray  # index into time_base for each time slot

    @classmethod
    def build(cls, document: Callable[[int], dict[str, Any]], at: int) -> SummaryTemplate:
        ints: list[tuple[int, int]] = []
        times: list[int] = []
        shaped = _slots(document(at), document(at + 1), ints, times)
        text = orjson.dumps(shaped)
        int_offsets = np.empty(len(ints), np.int64)
        position = 0
        for k in range(len(ints)):  # placeholders appear in serialization order
            position = text.index(str(_INT_BASE + k).encode(), position)
            int_offsets[k] = position
        time_offsets = np.empty(len(times), np.int64)
        position = 0
        for k in range(len(times)):
            position = text.index(f"~{k:0{TIME_WIDTH - 1}d}".encode(), position)
            time_offsets[k] = position
        values = np.array(ints, dtype=np.int64).reshape(-1, 2)
        distinct, of_slot = np.unique(np.array(times, np.int64), return_inverse=True)
        return cls(at, text, int_offsets, values[:, 0], values[:, 1], time_offsets, distinct, of_slot)

    @classmethod
    def from_marked(cls, marked: MarkedDocument, at: int) -> SummaryTemplate:
        """A template from one marked render (``payloads.marked_document``): no second render, no diff.

        ``at`` is the second the document was rendered for; marks are found in the serialized
        body and mapped back to their values by the ids they spell.
        """
        text = orjson.dumps(marked.document)
        raw = np.frombuffer(text, dtype=np.uint8)
        int_offsets = np.fromiter((m.start() for m in _INT_MARK.finditer(text)), np.int64)
        ids = _mark_ids(raw, int_offsets + INT_WIDTH)
        time_offsets = np.fromiter((m.start() + 1 for m in _TIME_MARK.finditer(text)), np.int64)
        time_ids = _mark_ids(raw, time_offsets + TIME_WIDTH)
        distinct, of_slot = np.unique(marked.times[time_ids], return_inverse=True)
        return cls(at, text, int_offsets, marked.bases[ids], marked.rates[ids], time_offsets, distinct, of_slot)

    def render(self, t: int) -> bytes:
        out = np.frombuffer(bytearray(self.body), dtype=np.uint8)
        if len(self.int_offsets):
            values = np.maximum(self.int_base + self.int_rate * (t - self.at), 0)
            digits = (values[:, None] // _POW10) % 10
            lead = values[:, None] < _POW10
            lead[:, -1] = False  # zero prints as "0"
            out[self.int_offsets[:, None] + np.arange(INT_WIDTH)] = np.where(lead, 32, 48 + digits)
        if len(self.time_offsets):
            stamps = np.datetime_as_string(_EPOCH + (self.time_base + (t - self.at)).astype("timedelta64[s]"))
            chars = np.frombuffer(np.char.add(stamps.astype("S19"), b"Z").tobytes(), np.uint8)
            out[self.time_offsets[:, None] + np.arange(TIME_WIDTH)] = chars.reshape(-1, TIME_WIDTH)[self.time_of_slot]
        return out.tobytes()
