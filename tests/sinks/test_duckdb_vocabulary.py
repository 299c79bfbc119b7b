"""Label strings to ids without the database: known ids for known inputs, every string form a
window can bring, one lookup per distinct dictionary, and nothing kept before the commit."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from heapster_columnar.sinks._duckdb_vocabulary import Vocabulary, VocabularyError


def column(*chunks: pa.Array) -> pa.Table:
    return pa.table({"pod": pa.chunked_array(chunks)})


def ids(vocabulary: Vocabulary, table: pa.Table, name: str = "pod") -> list[Any]:
    encoded = vocabulary.encode(table, [name])
    assert encoded.codes.schema.field(name).type == pa.int32()
    vocabulary.add(encoded)
    return list(encoded.codes.column(name).to_pylist())


def test_new_strings_get_the_next_ids_in_order_of_first_appearance() -> None:
    vocabulary = Vocabulary()
    first = pa.array(["b", "a", None, "b", "c"]).dictionary_encode()  # dictionary ["b", "a", "c"]
    assert ids(vocabulary, column(first)) == [1, 2, None, 1, 3]
    assert vocabulary.strings("pod").to_pylist() == ["b", "a", "c"]
    # Known strings keep their ids whatever their position in the next dictionary; "d" is new.
    second = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 1], pa.int32()), pa.array(["d", "c", "b"]))
    assert ids(vocabulary, column(second)) == [4, 3, 1, 3]
    assert vocabulary.strings("pod").to_pylist() == ["b", "a", "c", "d"]


def test_every_string_form_gives_the_same_ids() -> None:
    values = ["x", None, "y", "x"]
    forms = {
        "dictionary": pa.array(values).dictionary_encode(),
        "plain": pa.array(values),
        "large": pa.array(values, pa.large_string()),
        "large dictionary": pa.array(values, pa.large_string()).dictionary_encode(),
        "int8 indices": pa.DictionaryArray.from_arrays(pa.array([0, None, 1, 0], pa.int8()), pa.array(["x", "y"])),
    }
    for form, array in forms.items():
        assert ids(Vocabulary(), column(array)) == [1, None, 2, 1], form


def test_null_entries_in_a_dictionary_and_all_null_columns_stay_null() -> None:
    vocabulary = Vocabulary()
    with_null = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 1], pa.int32()), pa.array(["x", None, "y"]))
    assert ids(vocabulary, column(with_null)) == [1, None, 2, None]
    empty = pa.DictionaryArray.from_arrays(pa.nulls(3, pa.int32()), pa.array([], pa.string()))
    assert ids(vocabulary, column(empty)) == [None, None, None]
    assert ids(vocabulary, column(pa.nulls(2, pa.null()))) == [None, None]
    assert vocabulary.strings("pod").to_pylist() == ["x", "y"]


def test_chunks_with_different_dictionaries_share_one_id_per_string() -> None:
    one = pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int32()), pa.array(["p", "q"]))
    two = pa.DictionaryArray.from_arrays(pa.array([1, 0, 2], pa.int32()), pa.array(["r", "q", "q"]))  # "q" twice
    vocabulary = Vocabulary()
    assert ids(vocabulary, column(one, two)) == [1, 2, 2, 3, 2]
    assert vocabulary.strings("pod").to_pylist() == ["p", "q", "r"]


def test_slices_of_one_dictionary_are_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's window is one array cut into batches: every chunk carries the same
    dictionary buffers, which must not be unified or looked up per chunk."""
    whole = pa.array([f"pod-{k % 1000}" for k in range(10_000)]).dictionary_encode()
    table = pa.Table.from_batches(pa.table({"pod": whole}).to_batches(max_chunksize=1024))
    assert table.column("pod").num_chunks == 10
    looked_up: list[int] = []
    original = Vocabulary._ids

    def counting(self: Vocabulary, dictionaries: list[pa.Array], name: str) -> Any:
        looked_up.append(len(dictionaries))
        return original(self, dictionaries, name)

    monkeypatch.setattr(Vocabulary, "_ids", counting)
    vocabulary = Vocabulary()
    codes = ids(vocabulary, table)
    assert looked_up == [1]
    assert codes == [k % 1000 + 1 for k in range(10_000)]


def test_nothing_is_kept_until_the_window_is_added() -> None:
    vocabulary = Vocabulary({"pod": pa.array(["a"])})
    encoded = vocabulary.encode(column(pa.array(["b", "a"])), ["pod"])
    assert encoded.codes.column("pod").to_pylist() == [2, 1]
    assert encoded.new_values("pod").to_pylist() == [{"id": 2, "value": "b"}]
    assert vocabulary.strings("pod").to_pylist() == ["a"]  # a rolled-back window: never added
    again = vocabulary.encode(column(pa.array(["c"])), ["pod"])
    assert again.codes.column("pod").to_pylist() == [2]  # "b" was never given id 2 for good
    vocabulary.add(again)
    with pytest.raises(RuntimeError, match="changed between encoding and commit"):
        vocabulary.add(encoded)  # encoded against the vocabulary as it was before
    assert vocabulary.strings("pod").to_pylist() == ["a", "c"]


def test_columns_that_are_not_strings_are_refused() -> None:
    with pytest.raises(TypeError, match="'pod' holds int64"):
        Vocabulary().encode(column(pa.array([1, 2])), ["pod"])


def test_the_vocabulary_is_rebuilt_from_table_rows_in_any_order() -> None:
    rows = pa.table({"id": pa.array([2, 1, 3], pa.int32()), "value": ["b", "a", "c"]})
    vocabulary = Vocabulary.from_tables({"pod": rows})
    assert vocabulary.strings("pod").to_pylist() == ["a", "b", "c"]
    assert ids(vocabulary, column(pa.array(["c", "z"]))) == [3, 4]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"id": [1, 3], "value": ["a", "b"]}, "ids are not 1..2"),
        ({"id": [1, 1], "value": ["a", "b"]}, "ids are not 1..2"),
        ({"id": [1, 2], "value": ["a", "a"]}, "a string has two ids"),
    ],
)
def test_tables_this_sink_cannot_have_written_are_refused(rows: dict[str, list[Any]], message: str) -> None:
    table = pa.table({"id": pa.array(rows["id"], pa.int32()), "value": rows["value"]})
    with pytest.raises(VocabularyError, match=message):
        Vocabulary.from_tables({"pod": table})


def test_encoding_runs_the_columns_side_by_side_and_keeps_the_others() -> None:
    table = pa.table(
        {
            "value": [1.0, 2.0],
            "pod": pa.array(["a", "b"]).dictionary_encode(),
            "node": pa.array(["n", "n"]).dictionary_encode(),
        }
    )
    encoded = Vocabulary().encode(table, ["pod", "node"])
    assert encoded.codes.column_names == ["value", "pod", "node"]
    assert encoded.codes.to_pydict() == {"value": [1.0, 2.0], "pod": [1, 2], "node": [1, 1]}
    assert sorted(encoded.additions) == ["node", "pod"]
