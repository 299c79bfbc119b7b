"""InfluxDB line protocol from a points table, with column operations only.

A line is ``measurement,tag=value,... field=value timestamp``. Everything before the value comes
from dictionary-encoded columns with few distinct values, so nothing there is escaped or formatted
per point: each dictionary is escaped once (``,key=escaped value`` per entry; an empty or null
value writes nothing), and adjacent columns whose dictionaries are small together are merged into
one table of every combination (``container_base_image`` x ``container_name``: 21 x 24 strings),
so a row's piece is one ``take`` at a mixed-radix index. pyarrow's ``binary_join_element_wise``
concatenates the pieces and the formatted values of a batch of rows, and the joined array's data
buffer *is* the request body: newline-terminated lines, back to back, no copy. Tags are sorted by
key (InfluxDB's canonical order, so the server need not sort them). The join costs about the same
per argument whatever the argument's length, which is why fewer, longer pieces are faster.

Escaping follows InfluxDB 1.x: commas and spaces in measurements; commas, spaces and ``=`` in tag
keys, tag values and field keys. A backslash is literal to the 1.x parser except before one of those
characters or at the end of a value, where it cannot be represented at all; such backslashes are
dropped (Kubernetes names and label values cannot contain one). Newlines, which would end the line,
become spaces. Integers carry the ``i`` suffix; doubles are printed in the shortest form that parses
back to the same double (pyarrow's cast); NaN and infinities, which InfluxDB rejects, are skipped
and counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from heapster_columnar.model.schema import is_text

__all__ = [
    "OMITTED_TAGS",
    "EncodedBatch",
    "LineEncoder",
    "LineFormat",
    "escape_field_key",
    "escape_measurement",
    "escape_tag",
    "split_metric",
]

# Labels Heapster never wrote as tags (HEAPSTER.md §7.3): unique per pod or per node, so as tags
# they multiply series without adding a way to group.
OMITTED_TAGS: tuple[str, ...] = ("namespace_id", "pod_id", "hostname", "host_id")
# Columns of the points table that are not labels.
_NOT_LABELS = frozenset({"timestamp", "metric", "value", "value_int", "sample_time", "start_time"})
# Largest combination table for merged columns (entries): big enough for image x container x
# metric, small enough to build in milliseconds.
GROUP_LIMIT = 1 << 16

_STR = pa.string()


def _escape(values: pa.Array, specials: str) -> pa.Array:
    """Backslash-escape ``specials``; drop the backslashes the 1.x parser cannot represent."""
    values = pc.replace_substring_regex(values, r"[\r\n]", " ")
    values = pc.replace_substring_regex(values, rf"\\+([{specials}]|$)", r"\1")
    return pc.replace_substring_regex(values, rf"([{specials}])", r"\\\1")


def escape_measurement(values: pa.Array) -> pa.Array:
    return _escape(values, ", ")


def escape_tag(values: pa.Array) -> pa.Array:
    """Tag keys and tag values (same rules)."""
    return _escape(values, ", =")


def escape_field_key(values: pa.Array) -> pa.Array:
    return _escape(values, ", =")


def _tag_text(text: str) -> str:
    out: str = escape_tag(pa.array([text], _STR))[0].as_py()
    return out


def split_metric(names: pa.Array, withfields: bool) -> tuple[pa.Array, pa.Array]:
    """(measurement, field key) of each metric name, unescaped.

    withfields: split at the first ``/`` (``nvidia.com/gpu/request`` → ``nvidia.com`` +
    ``gpu/request``); names without ``/`` keep field ``value``. Else the whole name and ``value``.
    """
    names = names.cast(_STR)
    if not withfields:
        return names, pa.array(["value"] * len(names), _STR)
    measurement = pc.replace_substring_regex(names, "/.*$", "", max_replacements=1)
    rest = pc.replace_substring_regex(names, "^[^/]*/", "", max_replacements=1)
    return measurement, pc.if_else(pc.match_substring(names, "/"), rest, "value")


@dataclass(frozen=True, slots=True, kw_only=True)
class LineFormat:
    """How points become lines.

    ``tags``: the label columns written as tags (None: Heapster's — every label column of the table
    except :data:`OMITTED_TAGS` and ``exclude``); ``constant_tags``: (key, value) pairs on every line
    (``cluster_name``), replacing a column of the same name; ``withfields``: Heapster's split of
    ``cpu/usage_rate`` into measurement ``cpu`` and field ``usage_rate`` (else measurement = metric
    name, field ``value``); ``drop_metrics``: metric names not written at all.
    """

    tags: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    constant_tags: tuple[tuple[str, str], ...] = ()
    withfields: bool = False
    drop_metrics: frozenset[str] = field(default_factory=frozenset)

    def tag_columns(self, schema: pa.Schema) -> list[str]:
        """Label columns of ``schema`` that become tags, in schema order."""
        constant = {k for k, _ in self.constant_tags}
        labels = [f.name for f in schema if f.name not in _NOT_LABELS and is_text(f.type) and f.name not in constant]
        if self.tags is None:
            return [name for name in labels if name not in OMITTED_TAGS and name not in self.exclude]
        wanted = set(self.tags)
        return [name for name in labels if name in wanted]


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """One request body: ``points`` newline-terminated lines in ``body`` (a view, no copy)."""

    body: pa.Buffer
    points: int


@dataclass(slots=True)
class _Strings:
    """One dictionary's pieces: ``strings[i]`` for entry i, ``strings[n]`` for a null (absent) value."""

    dictionary: pa.Array
    strings: pa.Array
    keep: np.ndarray | None = None  # metric only: False for dropped metrics (by entry)
    _hashes: np.ndarray | None = None

    @property
    def radix(self) -> int:
        return len(self.strings)

    def hashes(self) -> np.ndarray:
        """uint64 per entry: identity of the piece, for series counting; 0 for an absent piece."""
        if self._hashes is None:
            hashes = pl.Series(self.strings).hash(seed=7).to_numpy().astype(np.uint64)
            hashes[pc.equal(self.strings, "").to_numpy(zero_copy_only=False)] = 0
            self._hashes = hashes
        return self._hashes


@dataclass(slots=True)
class _Group:
    """Adjacent line pieces merged into one table of every combination (mixed radix, first slowest)."""

    parts: tuple[_Strings | str, ...]
    table: pa.Array


# A layout item: a tag column (name), the measurement or field key (from ``metric``), or text.
_MEASUREMENT, _FIELD = "\0measurement", "\0field"


class LineEncoder:
    """Encodes points tables in one :class:`LineFormat`; keeps the escaped dictionaries it saw.

    Window after window the label dictionaries are the same objects or equal ones, so the escaped
    strings and merged tables are built once, not per window. ``skipped`` counts NaN/infinite
    values (InfluxDB cannot store them). Not thread-safe: one encoder per sink.
    """

    def __init__(self, fmt: LineFormat) -> None:
        self.fmt = fmt
        self.skipped = 0
        self._strings: dict[str, _Strings] = {}
        self._groups: dict[tuple[int, ...], _Group] = {}
        self._constants = sorted((_tag_text(k), _tag_text(v)) for k, v in fmt.constant_tags if _tag_text(v))

    def _layout(self, schema: pa.Schema) -> tuple[list[str], list[str | tuple[str]]]:
        """(tag columns, line items in order): measurement, tags sorted by key, field key.

        A tag column is ``name``; constant text is ``(text,)``.
        """
        columns = self.fmt.tag_columns(schema)
        keyed: list[tuple[str, str | tuple[str]]] = [(_tag_text(c), c) for c in columns]
        keyed += [(k, (f",{k}={v}",)) for k, v in self._constants]
        items: list[str | tuple[str]] = [_MEASUREMENT, *(item for _, item in sorted(keyed, key=lambda kv: kv[0]))]
        items.append(_FIELD if self.fmt.withfields else (" value=",))
        return columns, items

    # -- dictionaries --------------------------------------------------------------------------

    def _prepared(self, name: str, dictionary: pa.Array) -> _Strings:
        cached = self._strings.get(name)
        if cached is not None and (cached.dictionary is dictionary or _same(cached.dictionary, dictionary)):
            return cached
        values = dictionary.cast(_STR)
        keep = None
        if name in (_MEASUREMENT, _FIELD):
            measurement, field_key = split_metric(values, self.fmt.withfields)
            if name == _MEASUREMENT:
                pieces = escape_measurement(measurement)
                keep = pc.invert(pc.is_in(values, pa.array(sorted(self.fmt.drop_metrics), _STR)))
                keep = keep.to_numpy(zero_copy_only=False)
            else:
                pieces = pc.binary_join_element_wise(" ", escape_field_key(field_key), "=", "")
            strings = pa.concat_arrays([pieces, pa.array([""], _STR)])
        else:
            escaped = escape_tag(values)
            piece = pc.binary_join_element_wise(f",{_tag_text(name)}=", escaped, "")
            empty = pc.fill_null(pc.equal(pc.utf8_length(escaped), 0), True)
            strings = pa.concat_arrays([pc.if_else(empty, "", piece), pa.array([""], _STR)])
        prepared = _Strings(dictionary, strings, keep)
        self._strings[name] = prepared
        self._groups.clear()  # tables of the replaced dictionary would otherwise pile up
        return prepared

    def _group(self, parts: tuple[_Strings | str, ...]) -> _Group:
        """The combination table of ``parts`` (cached while every part is the same object)."""
        key = tuple(id(p) if isinstance(p, _Strings) else hash(p) for p in parts)
        cached = self._groups.get(key)
        if cached is not None and all(a is b for a, b in zip(cached.parts, parts, strict=True)):
            return cached
        radices = [p.radix for p in parts if isinstance(p, _Strings)]
        total = int(np.prod(radices)) if radices else 1
        entry = np.arange(total, dtype=np.int64)
        args: list[pa.Array | str] = []
        stride = total
        for part in parts:
            if isinstance(part, str):
                args.append(part)
                continue
            stride //= part.radix
            args.append(part.strings.take(pa.array((entry // stride) % part.radix)))
        table = pc.binary_join_element_wise(*args, "") if len(args) > 1 else _full(args[0], total)
        group = _Group(parts, table)
        self._groups[key] = group
        return group

    # -- encoding ------------------------------------------------------------------------------

    def encode(self, table: pa.Table, *, batch_points: int, max_bytes: int = 1 << 62) -> Iterator[EncodedBatch]:
        """Request bodies of at most ``batch_points`` lines and ``max_bytes`` bytes, in table order
        (except that a batch's int and double points may come as two bodies)."""
        _, items = self._layout(table.schema)
        ms = _constant_millis(table.column("timestamp"))
        for batch in table.to_batches(max_chunksize=batch_points):
            batch = self._kept(batch)
            for part in _by_value_type(batch):
                yield from _cut(self._lines(part, items, ms), max_bytes)

    def _kept(self, batch: pa.RecordBatch, *, count: bool = True) -> pa.RecordBatch:
        """``batch`` without dropped metrics and without NaN/infinite doubles (counted if ``count``)."""
        metric = batch.column("metric")
        measurement = self._prepared(_MEASUREMENT, metric.dictionary)
        assert measurement.keep is not None
        keep = None
        if not measurement.keep.all():
            keep = pa.array(measurement.keep[_indices(metric)])
        value_int = batch.column("value_int")
        if value_int.null_count:
            bad = pc.and_(value_int.is_null(), pc.invert(pc.is_finite(batch.column("value"))))
            if bad.true_count:
                self.skipped += bad.true_count if count else 0
                keep = pc.invert(bad) if keep is None else pc.and_(keep, pc.invert(bad))
        return batch if keep is None or keep.false_count == 0 else batch.filter(keep)

    def _lines(self, batch: pa.RecordBatch, items: list[str | tuple[str]], ms: int | None) -> pa.Array:
        columns: list[tuple[_Strings | str, np.ndarray | None]] = []
        for item in items:
            if isinstance(item, tuple):
                columns.append((item[0], None))
                continue
            column = batch.column("metric" if item in (_MEASUREMENT, _FIELD) else item)
            if not pa.types.is_dictionary(column.type):
                column = column.dictionary_encode()
            columns.append((self._prepared(item, column.dictionary), _indices(column)))
        args: list[pa.Array | str] = []
        for group_columns in _groups(columns):
            parts = tuple(p for p, _ in group_columns)
            if all(isinstance(p, str) for p in parts):
                args.append("".join(str(p) for p in parts))
                continue
            group = self._group(parts)
            index: np.ndarray | None = None
            for part, idx in group_columns:
                if isinstance(part, _Strings) and idx is not None:
                    index = idx if index is None else index * part.radix + idx
            args.append(group.table.take(pa.array(index)))
        value_int = batch.column("value_int")
        stamp = f" {ms}\n" if ms is not None else None
        if value_int.null_count == 0:
            args += [value_int.cast(_STR), "i"]
        else:
            args.append(batch.column("value").cast(_STR))
        if stamp is None:
            millis = batch.column("timestamp").cast(pa.timestamp("ms", "UTC")).cast(pa.int64()).cast(_STR)
            args += [" ", millis, "\n"]
        else:
            args.append(stamp)
        lines: pa.Array = pc.binary_join_element_wise(*_merge_constants(args), "")
        return lines

    # -- series --------------------------------------------------------------------------------

    def series_hashes(self, table: pa.Table) -> np.ndarray:
        """64-bit hash of each written point's series (measurement + tag set), as uint64.

        The hash of a series is the (wrapping) sum of its pieces' hashes; a piece carries its tag
        key (``,pod_name=x``), so equal values under different keys differ, and an absent tag adds
        nothing. Field keys are not part of a series (withfields writes several fields to one).
        """
        columns, _ = self._layout(table.schema)
        out: list[np.ndarray] = []
        for batch in table.to_batches():
            batch = self._kept(batch, count=False)
            metric = batch.column("metric")
            h = self._prepared(_MEASUREMENT, metric.dictionary).hashes()[_indices(metric)]
            gathered = np.empty_like(h)
            for name in columns:
                column = batch.column(name)
                if column.null_count == len(column):
                    continue
                if not pa.types.is_dictionary(column.type):
                    column = column.dictionary_encode()
                np.take(self._prepared(name, column.dictionary).hashes(), _indices(column), out=gathered)
                np.add(h, gathered, out=h)
            out.append(h)
        return np.concatenate(out) if out else np.empty(0, np.uint64)


def _groups(
    columns: list[tuple[_Strings | str, np.ndarray | None]],
) -> Iterator[list[tuple[_Strings | str, np.ndarray | None]]]:
    """Greedy runs of adjacent pieces whose combination table stays within GROUP_LIMIT."""
    run: list[tuple[_Strings | str, np.ndarray | None]] = []
    size = 1
    for part, idx in columns:
        radix = part.radix if isinstance(part, _Strings) else 1
        if run and size * radix > GROUP_LIMIT:
            yield run
            run, size = [], 1
        run.append((part, idx))
        size *= radix
    if run:
        yield run


def _full(value: pa.Array | str, n: int) -> pa.Array:
    return value if isinstance(value, pa.Array) else pa.array([value] * n, _STR)


def _by_value_type(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """The batch, or its int points then its double points when it has both (order is free)."""
    value_int = batch.column("value_int")
    if batch.num_rows == 0:
        return
    if value_int.null_count in (0, batch.num_rows):
        yield batch
        return
    is_float = value_int.is_null()
    yield batch.filter(pc.invert(is_float))
    yield batch.filter(is_float)


def _same(a: pa.Array, b: pa.Array) -> bool:
    """Same dictionary: shared buffers (chunks of one IPC file) or equal contents (a new window)."""
    if len(a) != len(b) or a.type != b.type:
        return False
    if a.offset == b.offset and [x.address if x else 0 for x in a.buffers()] == [
        x.address if x else 0 for x in b.buffers()
    ]:
        return True
    return bool(a.equals(b))


def _indices(column: pa.DictionaryArray) -> np.ndarray:
    """Dictionary indices (int32, zero-copy when possible), a null pointing at the extra 'absent'
    slot len(dictionary). int32 is enough: a merged table never passes GROUP_LIMIT entries."""
    indices = column.indices
    if indices.null_count:
        indices = pc.fill_null(indices, len(column.dictionary))
    if indices.type != pa.int32():
        indices = indices.cast(pa.int32())
    out: np.ndarray = indices.to_numpy()
    return out


def _constant_millis(stamps: pa.ChunkedArray) -> int | None:
    """The one timestamp of a window (epoch ms), or None when points carry several."""
    if len(stamps) == 0:
        return None
    millis = stamps.cast(pa.timestamp("ms", "UTC")).cast(pa.int64())
    bounds = pc.min_max(millis).as_py()
    return int(bounds["min"]) if bounds["min"] == bounds["max"] else None


def _merge_constants(pieces: list[pa.Array | str]) -> list[pa.Array | str]:
    """Adjacent constant strings joined into one (one join argument fewer each)."""
    out: list[pa.Array | str] = []
    for piece in pieces:
        if isinstance(piece, str) and out and isinstance(out[-1], str):
            out[-1] = out[-1] + piece
        else:
            out.append(piece)
    return out


def _cut(lines: pa.Array, max_bytes: int) -> Iterator[EncodedBatch]:
    """The joined lines' data buffer, cut at line boundaries into bodies of at most ``max_bytes``."""
    if len(lines) == 0:
        return
    offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, lines.offset * 4)
    data = lines.buffers()[2]
    start = 0
    while start < len(lines):
        begin = int(offsets[start])
        end = int(np.searchsorted(offsets, begin + max_bytes, side="right")) - 1
        end = min(max(end, start + 1), len(lines))  # a line longer than max_bytes still goes, alone
        yield EncodedBatch(data.slice(begin, int(offsets[end]) - begin), end - start)
        start = end
