"""ObjectStore: the simulated API server's etcd — nodes, pods and namespaces with list and watch.

Objects are plain JSON-ready dicts in the Kubernetes v1 shape. One integer ``resourceVersion``
counts every change across kinds, as etcd's revision does, so a node list's version is a valid
starting point for a pod watch. Each kind keeps a bounded log of its last changes; a watch or a
paged list that needs a change the log has dropped raises :class:`Gone` (HTTP 410 on the wire).

Threading: a ``threading.Lock`` guards the objects and logs, so any thread may add, update or
delete. A :class:`Watch` belongs to the event loop that opened it and is woken with
``loop.call_soon_threadsafe``, never by touching the loop from the mutating thread.

Ownership: the store copies only the top level and ``metadata`` of what it is given (it stamps
those); callers must not mutate ``spec``/``status`` afterwards, nor any object the store returns.
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from heapster_columnar.errors import HeapsterColumnarError

__all__ = ["KINDS", "Gone", "Listing", "ObjectStore", "Watch", "field_selector", "label_selector"]

Obj = dict[str, Any]
Objs = list[Obj]
Key = tuple[str, str]  # (namespace or "", name): etcd's key order, which paging follows
Predicate = Callable[[Obj], bool]

KINDS: dict[str, tuple[str, bool]] = {
    "nodes": ("Node", False),
    "pods": ("Pod", True),
    "namespaces": ("Namespace", False),
}
"""resource → (kind, namespaced)."""

_FIELDS: dict[str, frozenset[str]] = {
    "nodes": frozenset({"spec.unschedulable"}),
    "pods": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "namespaces": frozenset({"status.phase"}),
}
"""Fields each kind may be selected on besides metadata.name/namespace (the real API refuses others)."""


class Gone(HeapsterColumnarError):
    """A watch or a continued list needs changes older than the event log keeps (HTTP 410 Expired)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- selectors -------------------------------------------------------------------------------------

_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EXISTS = re.compile(rf"\s*(!?)\s*({_KEY})\s*")
_EQUALS = re.compile(rf"\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*")
_SET = re.compile(rf"\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*")


def _split(selector: str) -> list[str]:
    """Requirements separated by top-level commas (commas inside ``in (a,b)`` do not split)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    parts.append(selector[start:])
    return [p for p in parts if p.strip()]


def _label_requirement(text: str) -> Callable[[Mapping[str, str]], bool]:
    if m := _EXISTS.fullmatch(text):
        negate, key = m.group(1) == "!", m.group(2)
        return lambda labels: (key in labels) != negate
    if m := _EQUALS.fullmatch(text):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _SET.fullmatch(text):
        key, op, raw = m.groups()
        values = frozenset(v.strip() for v in raw.split(","))
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    raise ValueError(f"unable to parse requirement: {text.strip()!r}")


def label_selector(selector: str | None) -> Predicate:
    """Compile a label selector (``a=b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``;
    comma = AND) into a predicate on objects. ValueError on syntax the real API would refuse."""
    requirements = [_label_requirement(part) for part in _split(selector or "")]
    if not requirements:
        return lambda obj: True

    def match(obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(req(labels) for req in requirements)

    return match


def _field_value(obj: Obj, path: str) -> str:
    """A field as the API compares it: missing is "", booleans are "true"/"false"."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def field_selector(kind: str, selector: str | None) -> Predicate:
    """Compile a field selector (``path=value``, ``path==value``, ``path!=value``, comma = AND).
    ValueError for fields the real API does not index for ``kind``."""
    allowed = _FIELDS[kind] | {"metadata.name", "metadata.namespace"}
    tests: list[tuple[str, bool, str]] = []
    for part in _split(selector or ""):
        m = re.fullmatch(r"\s*([A-Za-z.]+)\s*(==|=|!=)\s*([^,]*?)\s*", part)
        if m is None:
            raise ValueError(f"invalid field selector: {part.strip()!r}")
        path, op, value = m.groups()
        if path not in allowed:
            raise ValueError(f'field label not supported: "{path}"')
        tests.append((path, op != "!=", value))
    return lambda obj: all((_field_value(obj, path) == value) == eq for path, eq, value in tests)


# --- the store -------------------------------------------------------------------------------------


class _Event(NamedTuple):
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: Key
    obj: Obj
    prev: Obj | None  # the object before this change (None for ADDED); paging rewinds with it


@dataclass(frozen=True, slots=True)
class Listing:
    """One page of a list: items in key order, the version they are consistent at, and what is left."""

    items: Objs
    resource_version: int
    last_key: Key | None  # key of the last item when more remain (the continue position), else None
    remaining: int  # matching items after this page


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ObjectStore:
    """In-memory nodes, pods and namespaces; one resourceVersion counter; bounded per-kind logs."""

    def __init__(self, *, log_size: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._rv = 0
        self._objects: dict[str, dict[Key, Obj]] = {kind: {} for kind in KINDS}
        self._log: dict[str, deque[_Event]] = {kind: deque(maxlen=log_size) for kind in KINDS}
        self._compacted: dict[str, int] = dict.fromkeys(KINDS, 0)  # rv of the newest dropped event
        self._watches: dict[str, set[Watch]] = {kind: set() for kind in KINDS}

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out (0 before the first change)."""
        return self._rv

    # --- changes -----------------------------------------------------------------------------------

    def add(self, kind: str, obj: Mapping[str, Any]) -> Obj:
        """Store a new object (KeyError if it exists); fills uid, creationTimestamp, namespace."""
        return self._change(kind, "ADDED", obj)

    def update(self, kind: str, obj: Mapping[str, Any]) -> Obj:
        """Replace an existing object (KeyError if absent); uid and creationTimestamp carry over."""
        return self._change(kind, "MODIFIED", obj)

    def delete(self, kind: str, obj: Mapping[str, Any]) -> Obj:
        """Remove the object with ``obj``'s name (and namespace); returns it at its deletion version."""
        return self._change(kind, "DELETED", obj)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """The stored object, or None; ``namespace`` defaults to "default" for pods."""
        return self._objects[kind].get(((namespace or "default") if KINDS[kind][1] else "", name))

    def _key(self, kind: str, meta: Mapping[str, Any]) -> Key:
        return ((meta.get("namespace") or "default") if KINDS[kind][1] else "", meta["name"])

    def _change(self, kind: str, type_: str, given: Mapping[str, Any]) -> Obj:
        if kind not in KINDS:
            raise KeyError(f"unknown kind {kind!r}")
        meta = dict(given.get("metadata") or {})
        key = self._key(kind, meta)
        with self._lock:
            objects = self._objects[kind]
            prev = objects.get(key)
            if (prev is None) != (type_ == "ADDED"):
                raise KeyError(f"{kind} {'/'.join(filter(None, key))} {'exists' if prev else 'not found'}")
            base = prev if type_ == "DELETED" else given
            assert base is not None
            obj = {**base, "metadata": dict(base["metadata"]) if type_ == "DELETED" else meta}
            meta = obj["metadata"]
            if type_ != "DELETED":
                old = prev["metadata"] if prev else {}
                if "uid" not in meta:  # (not setdefault: its default would be computed every time)
                    meta["uid"] = old.get("uid") or str(uuid.uuid4())
                if "creationTimestamp" not in meta:
                    meta["creationTimestamp"] = old.get("creationTimestamp") or _now()
                if KINDS[kind][1]:
                    meta["namespace"] = key[0]
                else:
                    meta.pop("namespace", None)
                obj.setdefault("apiVersion", "v1")
                obj.setdefault("kind", KINDS[kind][0])
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            if type_ == "DELETED":
                del objects[key]
            else:
                objects[key] = obj
            log = self._log[kind]
            if len(log) == log.maxlen:
                self._compacted[kind] = log[0].rv
            log.append(_Event(self._rv, type_, key, obj, prev))
            watches = list(self._watches[kind])
        for watch in watches:
            watch._notify()
        return obj

    # --- reads -------------------------------------------------------------------------------------

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        limit: int | None = None,
        after: Key | None = None,
        resource_version: int | None = None,
    ) -> Listing:
        """Matching objects in key order. ``after``/``resource_version`` continue an earlier page at
        the version it was read at (Gone once the log no longer covers that); ValueError for a bad
        selector."""
        match = self._matcher(kind, namespace, label_selector, field_selector)
        namespace = namespace if KINDS[kind][1] else None
        with self._lock:
            view = self._view_at(kind, resource_version)
            rv = self._rv if resource_version is None else resource_version
        keys = sorted(k for k in view if (namespace is None or k[0] == namespace) and (after is None or k > after))
        items = [view[k] for k in keys if match(view[k])]
        if limit is None or limit <= 0 or len(items) <= limit:
            return Listing(items, rv, None, 0)
        last = items[limit - 1]["metadata"]
        return Listing(items[:limit], rv, self._key(kind, last), len(items) - limit)

    def _view_at(self, kind: str, rv: int | None) -> dict[Key, Obj]:
        """The objects of ``kind`` as they were at ``rv``, rewound through the log (lock held)."""
        current = self._objects[kind]
        if rv is None or rv == self._rv:
            return dict(current)
        if rv > self._rv or rv < self._compacted[kind]:
            raise Gone(f"too old resource version: {rv} ({self._compacted[kind]})")
        view = dict(current)
        for event in reversed(self._log[kind]):
            if event.rv <= rv:
                break
            if event.prev is None:
                view.pop(event.key, None)
            else:
                view[event.key] = event.prev
        return view

    def _matcher(self, kind: str, namespace: str | None, labels: str | None, fields: str | None) -> Predicate:
        if kind not in KINDS:
            raise KeyError(f"unknown kind {kind!r}")
        by_label, by_field = label_selector(labels), field_selector(kind, fields)
        in_namespace = namespace is None or not KINDS[kind][1]
        return lambda obj: (
            (in_namespace or obj["metadata"].get("namespace") == namespace) and by_label(obj) and by_field(obj)
        )

    def watch(
        self,
        kind: str,
        resource_version: int | None = None,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Watch:
        """Changes after ``resource_version``; None starts with an ADDED event per current object.
        Call inside the event loop that will iterate it. Gone if the log no longer reaches back to
        ``resource_version``; ValueError for a bad selector."""
        match = self._matcher(kind, namespace, label_selector, field_selector)
        loop = asyncio.get_running_loop()
        with self._lock:
            if resource_version is not None and resource_version < self._compacted[kind]:
                raise Gone(f"too old resource version: {resource_version} ({self._compacted[kind]})")
            initial: Objs = []
            if resource_version is None:
                view = self._objects[kind]
                initial = [view[k] for k in sorted(view) if match(view[k])]
            watch = Watch(self, kind, match, loop, self._rv if resource_version is None else resource_version, initial)
            self._watches[kind].add(watch)
        return watch

    def _drain(self, watch: Watch) -> None:
        """Move the log's events past the watch's cursor into its queue, translated for its filter."""
        with self._lock:
            if watch.resource_version < self._compacted[watch.kind]:
                raise Gone(f"too old resource version: {watch.resource_version} ({self._compacted[watch.kind]})")
            fresh: list[_Event] = []
            for event in reversed(self._log[watch.kind]):
                if event.rv <= watch.resource_version:
                    break
                fresh.append(event)
            watch.resource_version = max(watch.resource_version, self._rv)
        for event in reversed(fresh):
            now = event.type != "DELETED" and watch.match(event.obj)
            before = event.prev is not None and watch.match(event.prev)
            if now and before:
                watch.pending.append(("MODIFIED", event.obj))
            elif now:
                watch.pending.append(("ADDED", event.obj))
            elif before:
                watch.pending.append(("DELETED", event.obj))

    def _unsubscribe(self, watch: Watch) -> None:
        with self._lock:
            self._watches[watch.kind].discard(watch)


class Watch:
    """Async iterator of ``(type, object)`` changes for one kind and filter.

    Cancelling a pending ``__anext__`` (e.g. under ``asyncio.timeout``) loses nothing, so a server
    can wait with a deadline and send bookmarks. ``resource_version`` is the version up to which
    every matching change has been delivered once ``pending`` is empty: what a BOOKMARK reports.
    """

    def __init__(
        self, store: ObjectStore, kind: str, match: Predicate, loop: asyncio.AbstractEventLoop, rv: int, initial: Objs
    ) -> None:
        self.kind, self.match, self.resource_version = kind, match, rv
        self.pending: deque[tuple[str, Obj]] = deque(("ADDED", obj) for obj in initial)
        self.initial_count = len(initial)
        self._store, self._loop = store, loop
        self._wake = asyncio.Event()
        self._closed = False

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> tuple[str, Obj]:
        while not self.pending:
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            self._store._drain(self)
            if not self.pending:
                await self._wake.wait()
        return self.pending.popleft()

    def _notify(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop is closed: nobody is iterating any more
            self._store._unsubscribe(self)

    def close(self) -> None:
        """Stop: a waiting or later ``__anext__`` ends the iteration. Safe twice, from any thread."""
        self._closed = True
        self._store._unsubscribe(self)
        self._notify()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
