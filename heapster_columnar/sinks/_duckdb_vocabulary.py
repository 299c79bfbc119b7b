"""Label strings as integer codes: the in-memory copy of the file's ``label_values`` tables.

DuckDB spends ~90 % of a wide insert storing strings value by value, while a window's label
columns are Arrow dictionaries: a few thousand distinct strings (150,000 at most) indexed by
millions of rows. So the sink stores each label column as codes, and each distinct string once.
A code is the string's ``id`` in its column's table ``label_values.<column>``; ids are dense from 1,
so the in-memory copy is one array of strings per column, the id a position.

Per window and column the work is on dictionaries, never on rows: the chunks' distinct dictionaries
(usually one, shared by every chunk through the same buffers) are looked up in the known strings
with one hash lookup, unseen strings get the next ids, and each chunk's indices become codes with
one ``take``. The new strings are added to memory only once the window is committed
(:meth:`Vocabulary.add`), so a rolled-back window leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.model.schema import is_text

CODE = pa.int32()
_NO_STRINGS = pa.array([], pa.string())


class VocabularyError(Exception):
    """A ``label_values`` table cannot be one this sink wrote (ids not 1..n, or a string twice)."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """A window with codes in place of strings, and what it adds to the vocabulary."""

    codes: pa.Table  # the window's columns, label columns as int32 codes (nulls stay null)
    additions: Mapping[str, tuple[int, pa.Array]]  # label -> (strings known before, new strings in id order)

    def new_values(self, label: str) -> pa.Table:
        """The (id, value) rows of ``label`` the file does not hold yet."""
        known, new = self.additions[label]
        return pa.table({"id": pa.array(np.arange(known + 1, known + len(new) + 1, dtype=np.int32)), "value": new})


class Vocabulary:
    """Every label column's strings; the string at position ``p`` has id ``p + 1``."""

    def __init__(self, values: Mapping[str, pa.Array] | None = None) -> None:
        self._values: dict[str, pa.Array] = dict(values or {})

    @classmethod
    def from_tables(cls, tables: Mapping[str, pa.Table]) -> Vocabulary:
        """From each label's ``label_values`` rows (``id``, ``value``), in any order."""
        vocabulary: dict[str, pa.Array] = {}
        for label, rows in tables.items():  # one step per label column
            rows = rows.sort_by("id")
            ids = rows.column("id").to_numpy()
            if not np.array_equal(ids, np.arange(1, len(ids) + 1)):
                raise VocabularyError(f"label_values.{label}: the ids are not 1..{len(ids)}")
            values = rows.column("value").combine_chunks().cast(pa.string())
            if len(pc.unique(values)) != len(values):
                raise VocabularyError(f"label_values.{label}: a string has two ids")
            vocabulary[label] = values
        return cls(vocabulary)

    def size(self, label: str) -> int:
        """How many strings of ``label`` are known (its highest id)."""
        return len(self._values.get(label, _NO_STRINGS))

    def strings(self, label: str) -> pa.Array:
        """The known strings of ``label`` in id order."""
        return self._values.get(label, _NO_STRINGS)

    def encode(self, table: pa.Table, columns: Sequence[str]) -> Encoded:
        """``table`` with each of ``columns`` as codes; the vocabulary itself is not changed.

        Columns are independent and pyarrow releases the GIL, so they are encoded side by side.
        """
        workers = min(len(columns), os.cpu_count() or 1) or 1
        with ThreadPoolExecutor(workers) as pool:
            encoded = pool.map(lambda name: self._encode(name, table.column(name)), columns)
            done = dict(zip(columns, encoded, strict=True))
        codes = table
        additions: dict[str, tuple[int, pa.Array]] = {}
        for name, (column, new) in done.items():
            codes = codes.set_column(codes.schema.get_field_index(name), pa.field(name, CODE), column)
            if len(new):
                additions[name] = (self.size(name), new)
        return Encoded(codes, additions)

    def add(self, encoded: Encoded) -> None:
        """Take in a committed window's new strings (the file holds them now)."""
        for label, (known, _) in encoded.additions.items():
            if self.size(label) != known:
                raise RuntimeError(f"vocabulary of {label!r} changed between encoding and commit")
        for label, (_, new) in encoded.additions.items():
            self._values[label] = pa.concat_arrays([self.strings(label), new]) if self.size(label) else new

    def _encode(self, name: str, column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.Array]:
        """(codes of ``column``, its strings not known yet in id order)."""
        chunks = [_as_dictionary(name, chunk) for chunk in column.chunks]
        # Slices of one array share their dictionary's buffers: look each distinct one up once.
        # Comparing buffers, never contents: unifying 150,000-string dictionaries costs seconds.
        slot: dict[tuple[int, ...], int] = {}
        distinct: list[pa.Array] = []
        for chunk in chunks:
            key = _identity(chunk.dictionary)
            if key not in slot:
                slot[key] = len(distinct)
                distinct.append(chunk.dictionary)
        mappings, new = self._ids([d.cast(pa.string()) for d in distinct], name)
        codes = [
            pa.nulls(len(chunk), CODE)  # no ids to look up (make, model, ... of most windows)
            if chunk.null_count == len(chunk)
            else mappings[slot[_identity(chunk.dictionary)]].take(chunk.indices)
            for chunk in chunks
        ]
        return pa.chunked_array(codes, CODE), new

    def _ids(self, dictionaries: Sequence[pa.Array], name: str) -> tuple[list[pa.Array], pa.Array]:
        """Per dictionary, the id of each entry (null for a null entry); and the unseen strings."""
        if not dictionaries:
            return [], _NO_STRINGS
        values = pa.concat_arrays(dictionaries) if len(dictionaries) > 1 else dictionaries[0]
        known = self.strings(name)
        found = pc.index_in(values, value_set=known)
        positions = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int32, copy=True)
        unseen = found.is_null().to_numpy(zero_copy_only=False) & values.is_valid().to_numpy(zero_copy_only=False)
        new = _NO_STRINGS
        if unseen.any():
            missing = values.filter(pa.array(unseen))
            new = pc.unique(missing)  # in order of first appearance: ids follow the dictionary
            rank = pc.index_in(missing, value_set=new).to_numpy(zero_copy_only=False)
            positions[unseen] = len(known) + rank
        ids = pa.array(positions + 1, CODE, mask=positions < 0) if (positions < 0).any() else pa.array(positions + 1)
        mappings, start = [], 0
        for dictionary in dictionaries:
            mappings.append(ids.slice(start, len(dictionary)))
            start += len(dictionary)
        return mappings, new


def _as_dictionary(name: str, chunk: pa.Array) -> pa.DictionaryArray:
    """A dictionary array of strings, whatever string form the column came in."""
    kind = chunk.type
    if pa.types.is_dictionary(kind):
        if not is_text(kind.value_type):
            raise TypeError(f"column {name!r} holds {kind.value_type} values, not strings")
        return chunk
    if is_text(kind):
        return chunk.dictionary_encode()
    if pa.types.is_null(kind):
        return pa.DictionaryArray.from_arrays(pa.nulls(len(chunk), CODE), _NO_STRINGS)
    raise TypeError(f"column {name!r} holds {kind}, not strings")


def _identity(array: pa.Array) -> tuple[int, ...]:
    """Which memory ``array`` is: equal for slices of the same dictionary, never compares strings."""
    addresses = [0 if buffer is None else buffer.address for buffer in array.buffers()]
    return (*addresses, array.offset, len(array))
