"""Heapster's label copier (HEAPSTER.md §2c) applied to a whole ``map<string, string>`` column.

Heapster ran ``LabelCopier.Copy`` once per pod and node each window; here one call renders all
150 k pods at once: the maps are flattened to (row, key, value), ignored keys dropped, ``key:value``
strings built, sorted by (row, string) and folded back into one joined string per row. The sort
is Arrow's byte-wise string order, which is Go's ``sort.Strings``: ``app.kubernetes.io/name:x``
comes before ``app:y`` because ``.`` < ``:``.

Where we differ from Heapster: a store spec naming the same source label twice copies it to every
target (Heapster's map kept only the last); specs Heapster accepted silently but that could never
work (an empty name, a second ``=``, a source that is not a label key) or that would overwrite a
column of our own (``pod_name``, a metric name, a ``_`` internal name) are a ``ConfigError``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.errors import ConfigError
from heapster_columnar.model import catalogue
from heapster_columnar.model.dimensions import LABELS_TYPE
from heapster_columnar.model.schema import POINTS_SCHEMA

__all__ = ["LabelCopier"]

# Kubernetes label key: optional DNS-subdomain prefix and "/", then a name of at most 63 characters.
_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*"
_LABEL_KEY = re.compile(rf"(?:(?P<prefix>{_PREFIX})/)?{_NAME}")
_TARGET = re.compile(r"[^\s=,]+")
RESERVED_TARGETS = frozenset(POINTS_SCHEMA.names) | frozenset(catalogue.BY_NAME)


class LabelCopier:
    """``--label_separator``, ``--store_label`` and ``--ignore_label`` applied to label maps.

    ``store`` entries are ``name`` (copy label ``name`` into a label of the same name) or
    ``new=old`` (copy label ``old`` into label ``new``). Ignored keys are left out of the
    rendered ``labels`` string but can still be stored, as in Heapster.
    """

    def __init__(self, separator: str = ",", store: Sequence[str] = (), ignore: Collection[str] = ()) -> None:
        if isinstance(store, str) or isinstance(ignore, str):
            raise ConfigError("store and ignore take a list of label names, not one string")
        self.separator = separator
        self.store: tuple[tuple[str, str], ...] = tuple(self.parse_store_spec(spec) for spec in store)
        targets = [target for target, _ in self.store]
        if duplicated := sorted({t for t in targets if targets.count(t) > 1}):
            raise ConfigError(f"--store_label: {duplicated[0]!r} is the target of more than one spec")
        self.ignore = frozenset(ignore)

    @staticmethod
    def parse_store_spec(spec: str) -> tuple[str, str]:
        """``"name"`` → ``(name, name)``; ``"new=old"`` → ``(new, old)``; ConfigError names a bad spec."""
        target, _, source = spec.partition("=")
        source = source if "=" in spec else target
        problem = None
        if not _TARGET.fullmatch(target):
            problem = "the stored label name must be non-empty, without '=', ',' or whitespace"
        elif target in RESERVED_TARGETS or target.startswith("_"):
            problem = f"{target!r} is reserved (a column of heapster-columnar, or a '_' internal name)"
        elif not ((key := _LABEL_KEY.fullmatch(source)) and len(key["prefix"] or "") <= 253):
            problem = f"{source!r} is not a Kubernetes label key"
        if problem:
            raise ConfigError(f"--store_label {spec!r}: {problem}")
        return target, source

    def __repr__(self) -> str:
        return f"LabelCopier(separator={self.separator!r}, store={self.store!r}, ignore={sorted(self.ignore)!r})"

    def render(self, labels: pa.Array | pa.ChunkedArray) -> pa.StringArray:
        """Per row the sorted ``key:value`` strings of the non-ignored labels, joined by the separator.

        A row without labels, or with a null map, renders as ``""`` (Heapster always set the label).
        A null value renders as ``key:`` (Go maps have no null strings).
        """
        maps = _maps(labels)
        rows, keys, values = _entries(maps)
        if self.ignore:
            keep = pc.invert(pc.is_in(keys, value_set=pa.array(sorted(self.ignore), pa.string())))
            rows, keys, values = rows.filter(keep), keys.filter(keep), values.filter(keep)
        pairs = pc.binary_join_element_wise(keys, values, ":", null_handling="replace", null_replacement="")
        order = pc.sort_indices(pa.table({"row": rows, "pair": pairs}), [("row", "ascending"), ("pair", "ascending")])
        pairs = pairs.take(order)
        counts = np.bincount(rows.to_numpy(), minlength=len(maps))
        offsets = np.zeros(len(maps) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        lists = pa.LargeListArray.from_arrays(pa.array(offsets), pairs)
        rendered: pa.StringArray = pc.binary_join(lists, self.separator)
        return rendered

    def stored(self, labels: pa.Array | pa.ChunkedArray) -> dict[str, pa.StringArray]:
        """One column per store target: the source label's value, null where the row lacks it."""
        maps = _maps(labels)
        rows, keys, values = _entries(maps)
        row_numbers = rows.to_numpy()
        out: dict[str, pa.StringArray] = {}
        for target, source in self.store:
            hits = np.flatnonzero(pc.equal(keys, source).fill_null(False).to_numpy(zero_copy_only=False))
            picks = np.full(len(maps), -1, np.int64)
            picks[row_numbers[hits]] = hits  # a (malformed) map with the key twice keeps the last
            out[target] = values.take(pa.array(picks, mask=picks < 0))
        return out


def _maps(labels: pa.Array | pa.ChunkedArray) -> pa.MapArray:
    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks() if labels.num_chunks else pa.array([], LABELS_TYPE)
    if not pa.types.is_map(labels.type):
        raise TypeError(f"labels must be {LABELS_TYPE}, not {labels.type}")
    return labels


def _entries(maps: pa.MapArray) -> tuple[pa.Int64Array, pa.StringArray, pa.StringArray]:
    """(row, key, value) of every map entry; null maps contribute nothing.

    The map is cast to its list<struct> layout first: pyarrow 26's list kernels reject map input,
    and ``list_parent_indices`` on a map even aborts the process.
    """
    entries = maps.cast(pa.list_(pa.struct([maps.type.key_field, maps.type.item_field])))
    flat = pc.list_flatten(entries)
    rows = pc.list_parent_indices(entries).cast(pa.int64())
    return rows, pc.struct_field(flat, 0).cast(pa.string()), pc.struct_field(flat, 1).cast(pa.string())
