"""Templates patch counters and times exactly as a fresh render would."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from heapster_columnar.simulator.kubelet import build_template, render_summary
from heapster_columnar.simulator.payloads import NodeShape, marked_document, summary_document
from heapster_columnar.simulator.render import SummaryTemplate
from heapster_columnar.simulator.spec import Fault

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


@pytest.mark.parametrize(
    "shape",
    [
        NodeShape(pods_per_node=5, seed=2, memory_wave=False),
        NodeShape(pods_per_node=30, seed=9, memory_wave=False, system_containers=("pods", "kubelet", "misc")),
        NodeShape(pods_per_node=0, memory_wave=False),
    ],
)
def test_a_template_from_one_marked_render_is_exact(shape: NodeShape) -> None:
    def render(t: int) -> dict[str, Any]:
        return summary_document(3, at=datetime.fromtimestamp(t, UTC), shape=shape)

    template = SummaryTemplate.from_marked(marked_document(3, at=datetime.fromtimestamp(A, UTC), shape=shape), A)
    for t in (A, A + 1, A + 59, A + 86_400 * 30):
        body = template.render(t)
        assert not re.search(rb"[0-9]{19}", body) and b'"~' not in body  # every mark is patched...
        assert orjson.loads(body) == render(t)  # ...with the value a fresh render has
    assert len(template.int_offsets) > 10 * shape.pods_per_node  # the counters really are slots


def test_marked_templates_keep_constant_faults() -> None:
    steady = NodeShape(pods_per_node=4, seed=5, memory_wave=False)
    faults = {Fault.UINT64_MAX: 1.0, Fault.MISSING_BLOCKS: 1.0}
    template = build_template(2, A, shape=steady, faults=faults)
    for t in (A, A + 30):
        assert orjson.loads(template.render(t)) == render_summary(2, t, shape=steady, faults=faults)
