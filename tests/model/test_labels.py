"""The label copier against hand-written expectations and a plain-Python reference (HEAPSTER.md §2c)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heapster_columnar.errors import ConfigError
from heapster_columnar.model.dimensions import LABELS_TYPE
from heapster_columnar.model.labels import LabelCopier

Labels = dict[str, str] | None


def column(rows: Sequence[Labels]) -> pa.Array:
    return pa.array([None if r is None else list(r.items()) for r in rows], LABELS_TYPE)


KSM = {
    "app.kubernetes.io/name": "kube-state-metrics",
    "app": "ksm",
    "helm.sh/chart": "kube-state-metrics-5.15.2",
    "pod-template-hash": "86f7c9c6bb",
}


def test_sort_is_bytewise_on_rendered_strings() -> None:
    # "." (0x2e) < ":" (0x3a): app.kubernetes.io/... sorts before app:..., unlike a sort by key
    rendered = LabelCopier().render(column([KSM])).to_pylist()
    assert rendered == [
        "app.kubernetes.io/name:kube-state-metrics,app:ksm,helm.sh/chart:kube-state-metrics-5.15.2,"
        "pod-template-hash:86f7c9c6bb"
    ]
    # capitals before lower case, and UTF-8 bytes after ASCII, as Go's sort.Strings does
    assert LabelCopier(separator="|").render(column([{"b": "1", "B": "2", "é": "3", "z": "4"}])).to_pylist() == [
        "B:2|b:1|z:4|é:3"
    ]


def test_ignore_and_separator() -> None:
    copier = LabelCopier(separator=";", ignore=["helm.sh/chart", "absent"])
    assert copier.render(column([KSM])).to_pylist() == [
        "app.kubernetes.io/name:kube-state-metrics;app:ksm;pod-template-hash:86f7c9c6bb"
    ]
    assert LabelCopier(separator="").render(column([{"a": "1", "b": "2"}])).to_pylist() == ["a:1b:2"]
    assert LabelCopier(separator=" // ").render(column([{"a": "1", "b": "2"}])).to_pylist() == ["a:1 // b:2"]


def test_empty_null_and_all_ignored_rows_render_empty() -> None:
    rows: list[Labels] = [{}, None, {"only": "x"}, {"k": "v"}]
    assert LabelCopier(ignore=["only"]).render(column(rows)).to_pylist() == ["", "", "", "k:v"]


def test_null_value_renders_as_key_colon() -> None:
    labels = pa.array([[("a", None), ("b", "")]], LABELS_TYPE)
    assert LabelCopier().render(labels).to_pylist() == ["a:,b:"]


def test_store_with_rename_and_ignored_source() -> None:
    copier = LabelCopier(store=["app", "team=app.kubernetes.io/name", "chart=helm.sh/chart"], ignore=["helm.sh/chart"])
    stored = copier.stored(column([KSM, {"app": "other"}, None, {}]))
    assert list(stored) == ["app", "team", "chart"]
    assert {k: v.to_pylist() for k, v in stored.items()} == {
        "app": ["ksm", "other", None, None],
        "team": ["kube-state-metrics", None, None, None],
        "chart": ["kube-state-metrics-5.15.2", None, None, None],  # ignored in "labels", still stored
    }
    assert "helm.sh" not in copier.render(column([KSM])).to_pylist()[0]


def test_same_source_to_two_targets() -> None:
    stored = LabelCopier(store=["app", "name=app"]).stored(column([{"app": "x"}]))
    assert {k: v.to_pylist() for k, v in stored.items()} == {"app": ["x"], "name": ["x"]}


def test_no_store_specs_give_no_columns() -> None:
    assert LabelCopier().stored(column([KSM])) == {}


def test_chunked_sliced_and_empty_input() -> None:
    rows: list[Labels] = [{"a": "1"}, None, {"c": "3", "b": "2"}, {"d": "4"}]
    chunked = pa.chunked_array([column(rows[:1]), column(rows[1:])])
    copier = LabelCopier(store=["b"])
    assert copier.render(chunked).to_pylist() == ["a:1", "", "b:2,c:3", "d:4"]
    assert copier.render(column(rows).slice(2, 1)).to_pylist() == ["b:2,c:3"]
    assert copier.stored(column(rows).slice(1, 2))["b"].to_pylist() == [None, "2"]
    assert copier.render(pa.chunked_array([], LABELS_TYPE)).to_pylist() == []
    assert copier.stored(column([]))["b"].to_pylist() == []
    assert copier.render(column([])).type == pa.string()


def test_not_a_map_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="labels must be"):
        LabelCopier().render(pa.array(["a:b"]))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "non-empty"),
        ("=app", "non-empty"),
        ("team=", "'' is not a Kubernetes label key"),
        ("a=b=c", "'b=c' is not a Kubernetes label key"),
        ("my label", "non-empty"),
        ("x=-app", "not a Kubernetes label key"),
        ("x=a/b/c", "not a Kubernetes label key"),
        ("x=" + "n" * 64, "not a Kubernetes label key"),
        ("pod_name=app", "reserved"),
        ("labels", "reserved"),
        ("cpu/usage=app", "reserved"),
        ("_stored=app", "reserved"),
    ],
)
def test_bad_store_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        LabelCopier(store=[spec])
    assert repr(spec) in str(caught.value)


def test_duplicate_targets_and_plain_strings_are_rejected() -> None:
    with pytest.raises(ConfigError, match="'team' is the target of more than one spec"):
        LabelCopier(store=["team=app", "team=owner"])
    with pytest.raises(ConfigError, match="list of label names"):
        LabelCopier(store="app")


def test_valid_specs_parse() -> None:
    assert LabelCopier.parse_store_spec("app") == ("app", "app")
    assert LabelCopier.parse_store_spec("team=app.kubernetes.io/name") == ("team", "app.kubernetes.io/name")
    assert LabelCopier.parse_store_spec("zone=topology.kubernetes.io/zone") == ("zone", "topology.kubernetes.io/zone")


def reference_render(rows: Sequence[Labels], separator: str, ignore: Sequence[str]) -> list[str]:
    return [separator.join(sorted(f"{k}:{v}" for k, v in (r or {}).items() if k not in ignore)) for r in rows]


keys = st.text(alphabet="ab.:/-_Zé", min_size=1, max_size=5)
maps = st.one_of(st.none(), st.dictionaries(keys, st.text(alphabet="xy:.,é ", max_size=4), max_size=6))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(maps, max_size=20),
    st.sampled_from([",", ";", "", "::"]),
    st.lists(keys, max_size=3),
    st.lists(st.sampled_from(["a", "b", "a.b", "ab", "a-b"]), max_size=3, unique=True),
)
def test_matches_python_reference(rows: list[Labels], separator: str, ignore: list[str], store: list[str]) -> None:
    copier = LabelCopier(separator, store=[f"s{i}={source}" for i, source in enumerate(store)], ignore=ignore)
    labels = column(rows)
    assert copier.render(labels).to_pylist() == reference_render(rows, separator, ignore)
    stored = copier.stored(labels)
    for i, source in enumerate(store):
        assert stored[f"s{i}"].to_pylist() == [(r or {}).get(source) for r in rows]
