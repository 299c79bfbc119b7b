"""Templates patch counters and times exactly as a fresh render would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from heapster_columnar.simulator.payloads import NodeShape, summary_document
from heapster_columnar.simulator.render import SummaryTemplate

SHAPE = NodeShape(pods_per_node=8, seed=11)
A = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp())


def fresh(t: int) -> dict[str, Any]:
    return summary_document(4, at=datetime.fromtimestamp(t, UTC), shape=SHAPE)


def test_counters_and_times_equal_a_fresh_render() -> None:
    template = SummaryTemplate.build(fresh, A)
    for t in (A, A + 1, A + 15, A + 299):
        served, truth = orjson.loads(template.render(t)), fresh(t)
        assert served["node"]["cpu"] == truth["node"]["cpu"]
        assert served["node"]["network"] == truth["node"]["network"]
        for got, want in zip(served["pods"], truth["pods"], strict=True):
            assert got["cpu"] == want["cpu"]
            assert got["network"] == want["network"]
            assert got["startTime"] == want["startTime"]
            assert [c["cpu"] for c in got["containers"]] == [c["cpu"] for c in want["containers"]]
            assert got["memory"]["pageFaults"] == want["memory"]["pageFaults"]


def test_without_the_memory_wave_the_whole_document_is_exact() -> None:
    steady = NodeShape(pods_per_node=5, seed=2, memory_wave=False)

    def render(t: int) -> dict[str, Any]:
        return summary_document(1, at=datetime.fromtimestamp(t, UTC), shape=steady)

    template = SummaryTemplate.build(render, A)
    for t in (A, A + 60, A + 86_400 * 30):
        assert orjson.loads(template.render(t)) == render(t)


def test_numbers_are_space_padded_json_and_zero_prints() -> None:
    template = SummaryTemplate.build(fresh, A)
    body = template.render(A + 7)
    assert b":  " in body  # right-aligned in fixed-width columns
    assert orjson.loads(body)["node"]["nodeName"] == "node-00004"
    assert len(body) == len(template.body)
