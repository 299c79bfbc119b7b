"""The InfluxDB 1.x sink: Heapster's storage schema, written as gzip'd line protocol over HTTP.

``--sink=influxdb:http://influxdb:8086?db=k8s&cluster_name=prod`` keeps Heapster's options
(HEAPSTER.md §7.3) and schema: a measurement per metric name with field ``value`` (or, with
``withfields=true``, ``cpu`` + field ``usage_rate``), int metrics as integers, every label but
``namespace_id``, ``pod_id``, ``hostname`` and ``host_id`` as a tag, plus ``cluster_name``; all
points at the window end. What it does differently, and why, is in ``docs/design/influxdb-sink.md``:
failures raise :class:`SinkError` instead of being logged and dropped, ``retention`` is applied,
statement errors are not ignored, and a series counter warns before InfluxDB's per-database limit
(1,000,000 by default) starts rejecting points.

Resending a window is safe: a point is identified by measurement, tag set and timestamp, and
InfluxDB overwrites the fields of an identical point, so a window written twice — or half written,
then written again — leaves exactly one copy of each point.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from heapster_columnar.config.uri import Uri
from heapster_columnar.errors import ConfigError, SinkError
from heapster_columnar.model import catalogue
from heapster_columnar.model.window import Window
from heapster_columnar.sinks.line_protocol import EncodedBatch, LineEncoder, LineFormat

_zlib: Any
try:  # ISA-L's deflate is ~5x zlib's at level 1 on line protocol (docs/design/influxdb-sink.md)
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - depends on the environment
    import zlib as _zlib
_GZIP_LEVEL = 1

__all__ = ["InfluxDBConfig", "InfluxDBSink", "SeriesCounter"]

log = logging.getLogger(__name__)

# Heapster's options (HEAPSTER.md §7.3), then ours.
OPTIONS = (
    *("user", "pw", "db", "retention", "secure", "insecuressl", "withfields", "cluster_name"),
    *("disable_counter_metrics", "concurrency", "tags", "batch", "timeout", "max_series", "gzip"),
)
# Counters whose rates we write (Heapster's disable_counter_metrics list, derived, not spelled).
COUNTER_METRICS = frozenset(m.rate_of for m in catalogue.CATALOGUE if m.rate_of)
DEFAULT_BATCH = 50_000  # points per request; docs/design/influxdb-sink.md has the measurements
MAX_BODY = 24_000_000  # uncompressed bytes per request: InfluxDB's max-body-size default is 25 MB
WARN_AT = (0.80, 0.95, 1.0)  # fractions of max_series where the counter warns (once each)

_DURATION = re.compile(r"(\d+)(ns|u|µ|ms|s|m|h|d|w)")  # InfluxQL's units (no "us"), combinable: 1h30m
_UNIT_SECONDS = {"ns": 1e-9, "u": 1e-6, "µ": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TAG_NAME = re.compile(r"^-?[A-Za-z0-9_.\-/:]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class InfluxDBConfig:
    """Everything the sink needs, validated; built by :meth:`InfluxDBSink.from_uri`.

    ``url``: server base URL (no trailing slash); ``retention``: InfluxQL duration of the "default"
    policy, None = keep the database's default policy (infinite); ``tags``: label columns written as
    tags, None = Heapster's; ``batch``: points per request; ``timeout``: seconds per request;
    ``max_series``: InfluxDB's max-series-per-database the counter warns against (0 = no warning).
    """

    url: str
    user: str = "root"
    password: str = "root"
    db: str = "k8s"
    retention: str | None = None
    insecure_ssl: bool = False
    withfields: bool = False
    cluster_name: str = "default"
    disable_counter_metrics: bool = False
    concurrency: int = 1
    tags: tuple[str, ...] | None = None
    exclude_tags: tuple[str, ...] = ()
    batch: int = DEFAULT_BATCH
    timeout: float = 30.0
    max_series: int = 1_000_000
    gzip: bool = True

    def line_format(self) -> LineFormat:
        return LineFormat(
            tags=self.tags,
            exclude=self.exclude_tags,
            constant_tags=(("cluster_name", self.cluster_name),),
            withfields=self.withfields,
            drop_metrics=COUNTER_METRICS if self.disable_counter_metrics else frozenset(),
        )


def _duration_seconds(text: str) -> float | None:
    """Seconds of an InfluxQL duration literal (``168h``, ``7d``, ``1h30m``); None if malformed."""
    matches = list(_DURATION.finditer(text))
    if not matches or "".join(m.group(0) for m in matches) != text:
        return None
    return sum(int(m.group(1)) * _UNIT_SECONDS[m.group(2)] for m in matches)


def config_from_uri(uri: Uri) -> InfluxDBConfig:
    """Validate every option (no I/O); a ConfigError names the option and the bad value."""
    uri.check(OPTIONS)
    o = uri.options

    def bad(option: str, why: str) -> ConfigError:
        return ConfigError(f"influxdb: option {option}={o.get(option)!r} {why}")

    target = uri.target or "http://localhost:8086"
    if "://" not in target:
        target = "http://" + target
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"influxdb: {uri.target!r} is not an http(s)://host[:port] URL")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"influxdb: {uri.target!r} has an invalid port") from None
    secure = uri.flag("secure", False) or parts.scheme == "https"
    url = f"{'https' if secure else 'http'}://{parts.netloc}{parts.path.rstrip('/')}"

    db = o.get("db", "k8s")
    if not db or any(c in db for c in "\n\r\0"):
        raise bad("db", "is not a database name")
    retention = o.get("retention", "0") or "0"
    if retention.lower() in ("0", "inf"):
        retention_value = None
    else:
        seconds = _duration_seconds(retention)
        if seconds is None:
            raise bad("retention", "is not a duration (e.g. 168h, 7d, 1h30m; 0 or inf = keep forever)")
        if seconds < 3600:
            raise bad("retention", "is shorter than InfluxDB's minimum of 1h")
        retention_value = retention

    tags: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    if o.get("tags"):
        names = tuple(n.strip() for n in o["tags"].split(",") if n.strip())
        if not names or not all(_TAG_NAME.match(n) for n in names):
            raise bad("tags", "is not a comma-separated list of label names")
        negative = [n for n in names if n.startswith("-")]
        if negative and len(negative) != len(names):
            raise bad("tags", "mixes names and -names (list the tags, or remove some from the default with -name)")
        if negative:
            exclude = tuple(n[1:] for n in names)
        else:
            tags = names
    timeout_text = o.get("timeout", "") or "30"
    try:
        timeout = float(timeout_text)
    except ValueError:
        raise bad("timeout", "is not a number of seconds") from None
    if not timeout > 0:
        raise bad("timeout", "must be more than 0 seconds")
    return InfluxDBConfig(
        url=url,
        user=o.get("user", "root"),
        password=o.get("pw", "root"),
        db=db,
        retention=retention_value,
        insecure_ssl=uri.flag("insecuressl", False),
        withfields=uri.flag("withfields", False),
        cluster_name=o.get("cluster_name", "default"),
        disable_counter_metrics=uri.flag("disable_counter_metrics", False),
        concurrency=uri.integer("concurrency", 1, minimum=1),
        tags=tags,
        exclude_tags=exclude,
        batch=uri.integer("batch", DEFAULT_BATCH, minimum=1),
        timeout=timeout,
        max_series=uri.integer("max_series", 1_000_000, minimum=0),
        gzip=uri.flag("gzip", True),
    )


class SeriesCounter:
    """Distinct series written to one database, kept as sorted 64-bit hashes (8 bytes a series).

    Warns once per threshold (80 %, 95 %, 100 % of ``limit``) so the operator can drop tags
    (``tags=-labels``) before InfluxDB refuses new series. Counts what this process wrote: series
    already in the database from earlier runs are not known.
    """

    def __init__(self, limit: int, *, db: str) -> None:
        self.limit, self.db = limit, db
        self._known = np.empty(0, np.uint64)
        self._last = np.empty(0, np.uint64)
        self._warned = 0
        self.repeated = 0  # points of the last window whose series another point of it already had

    @property
    def count(self) -> int:
        return len(self._known)

    def add(self, hashes: np.ndarray, hint: Callable[[], str] = str) -> int:
        """Record a window's series hashes; returns the number of series never seen before."""
        ordered = np.sort(hashes)
        if len(ordered):
            first = np.concatenate(([True], ordered[1:] != ordered[:-1]))
            self.repeated = len(ordered) - int(first.sum())
            ordered = ordered[first]
        if np.array_equal(ordered, self._last):  # the usual window: the same series as the last one
            return 0
        self._last = ordered
        pos = np.searchsorted(self._known, ordered)
        found = np.zeros(len(ordered), bool)
        inside = pos < len(self._known)
        found[inside] = self._known[pos[inside]] == ordered[inside]
        new = ordered[~found]
        if len(new):
            self._known = np.sort(np.concatenate([self._known, new]))
            self._check(hint)
        return len(new)

    def _check(self, hint: Callable[[], str]) -> None:
        if not self.limit:
            return
        crossed = sum(1 for share in WARN_AT if self.count >= share * self.limit)
        if crossed > self._warned:  # one line per crossing, however many thresholds it passed
            share = WARN_AT[crossed - 1]
            self._warned = crossed
            context = hint()
            level = logging.ERROR if share >= 1 else logging.WARNING
            log.log(
                level,
                "influxdb: database %r has %d series, %d%% of max-series-per-database %d%s; "
                "InfluxDB rejects points of new series past the limit: drop tags with tags=-<label>",
                self.db,
                self.count,
                round(100 * self.count / self.limit),
                self.limit,
                f" (largest tags this window: {context})" if context else "",
            )


class _DatabaseMissing(Exception):
    """The server answered 'database not found' (dropped behind our back): create it and resend."""


class InfluxDBSink:
    """Writes each window's points to one InfluxDB 1.x database (see the module docstring)."""

    name = "influxdb"

    def __init__(self, config: InfluxDBConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport
        self._encoder = LineEncoder(config.line_format())
        self._counter = SeriesCounter(config.max_series, db=config.db)
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._db_ready = False
        self._told_repeated = False
        self._lock = threading.Lock()
        self.points_written = 0
        self.batches_written = 0
        self.bytes_sent = 0
        # Called after each accepted request with (points, uncompressed bytes), from a sender thread.
        self.on_batch: Callable[[int, int], None] | None = None

    @classmethod
    def from_uri(cls, uri: Uri) -> InfluxDBSink:
        return cls(config_from_uri(uri))

    @property
    def series(self) -> int:
        """Distinct series this sink has written to its database (for a telemetry gauge)."""
        return self._counter.count

    @property
    def skipped(self) -> int:
        """NaN or infinite values not written (InfluxDB cannot store them)."""
        return self._encoder.skipped

    # -- HTTP ----------------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        if self._client is None:
            c = self.config
            self._client = httpx.Client(
                base_url=c.url,
                auth=(c.user, c.password) if c.user else None,
                timeout=c.timeout,
                verify=not c.insecure_ssl,
                headers={"User-Agent": "heapster-columnar"},
                limits=httpx.Limits(max_connections=c.concurrency, max_keepalive_connections=c.concurrency),
                transport=self._transport,
            )
        return self._client

    def _request(self, what: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; transport failures and 5xx are retryable SinkErrors naming the URL."""
        url = f"{self.config.url}{path}"
        try:
            response = self._http().post(path, **kwargs)
        except httpx.TimeoutException as exc:
            raise SinkError(
                self.name, f"{what}: no answer from {url} within {self.config.timeout:g} s ({exc})", retryable=True
            ) from exc
        except httpx.TransportError as exc:
            raise SinkError(self.name, f"{what}: cannot reach {url}: {exc}", retryable=True) from exc
        if response.status_code >= 300:
            text = _error_text(response)
            if response.status_code == 404 and "database not found" in text:
                raise _DatabaseMissing(text)
            retryable = response.status_code >= 500 or response.status_code in (408, 429)
            if response.status_code == 413:  # the server's max-body-size
                text += f" (lower batch=, now {self.config.batch} points per request)"
            raise SinkError(
                self.name, f"{what}: {url} answered HTTP {response.status_code}: {text}", retryable=retryable
            )
        return response

    def _query(self, statement: str) -> None:
        """An InfluxQL statement that must succeed (statement errors are errors, unlike Heapster)."""
        response = self._request(statement, "/query", data={"q": statement})
        for result in response.json().get("results", []):
            if "error" in result:
                raise SinkError(self.name, f"{statement}: {result['error']}", retryable=False)

    def _ensure_database(self) -> None:
        """CREATE DATABASE (a no-op when it exists) and the retention policy, once per connection."""
        if self._db_ready:
            return
        db = _ident(self.config.db)
        try:
            self._query(f"CREATE DATABASE {db}")
        except SinkError as exc:
            # A write-only user cannot create databases; Heapster carried on, and so do we: if the
            # database is really missing, the first write says so.
            if exc.retryable or "not authorized" not in exc.detail:
                raise
            log.warning("influxdb: %s; assuming database %r exists", exc.detail, self.config.db)
        if self.config.retention:
            duration = self.config.retention
            try:
                self._query(f'CREATE RETENTION POLICY "default" ON {db} DURATION {duration} REPLICATION 1 DEFAULT')
            except SinkError as exc:
                if "already exists" not in exc.detail:
                    raise
                self._query(f'ALTER RETENTION POLICY "default" ON {db} DURATION {duration} REPLICATION 1 DEFAULT')
        self._db_ready = True

    def _send(self, batch: EncodedBatch) -> None:
        params = {"db": self.config.db, "precision": "ms"}
        if self.config.retention:
            params["rp"] = "default"
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        body: bytes | memoryview = memoryview(batch.body)
        if self.config.gzip:
            compressor = _zlib.compressobj(_GZIP_LEVEL, _zlib.DEFLATED, 31)
            body = compressor.compress(body) + compressor.flush()
            headers["Content-Encoding"] = "gzip"
        self._request(f"write of {batch.points} points", "/write", params=params, content=bytes(body), headers=headers)
        with self._lock:
            self.points_written += batch.points
            self.batches_written += 1
            self.bytes_sent += len(body)
        if self.on_batch is not None:
            self.on_batch(batch.points, batch.body.size)

    # -- the Sink contract ---------------------------------------------------------------------

    def write(self, window: Window) -> None:
        """Send every point of ``window``; raise SinkError if any batch was not accepted.

        The whole window may be sent again after a failure (idempotent, see the module docstring).
        """
        points = window.points
        if points.num_rows == 0:
            return
        try:
            self._ensure_database()
            self._count_series(window)
            self._send_all(window)
        except _DatabaseMissing:
            log.warning("influxdb: database %r disappeared; creating it and resending the window", self.config.db)
            self._db_ready = False
            self._ensure_database()
            try:
                self._send_all(window)
            except _DatabaseMissing as exc:
                raise SinkError(self.name, f"database {self.config.db!r} not found: {exc}", retryable=True) from exc

    def _count_series(self, window: Window) -> None:
        if not self.config.max_series:
            return
        started = time.perf_counter()
        new = self._counter.add(self._encoder.series_hashes(window.points), hint=lambda: self._cardinality_hint(window))
        log.debug("influxdb: %d new series (%d in all) in %.2f s", new, self.series, time.perf_counter() - started)
        repeated = self._counter.repeated
        if repeated and not self.config.withfields:  # withfields puts several fields in one series, by design
            log.log(
                logging.DEBUG if self._told_repeated else logging.WARNING,
                "influxdb: %d points of the window share measurement, tags and time with another one, and "
                "InfluxDB keeps only the last of each: the tags chosen (tags=) do not tell them apart",
                repeated,
            )
            self._told_repeated = True

    def _cardinality_hint(self, window: Window) -> str:
        """Tags with the most distinct values in this window (what to drop first)."""
        table = window.points
        sizes = [
            (len(table.column(name).drop_null().unique()), name) for name in self._encoder.fmt.tag_columns(table.schema)
        ]
        return ", ".join(f"{name} {n}" for n, name in sorted(sizes, reverse=True)[:3])

    def _send_all(self, window: Window) -> None:
        """Encode and send batch by batch, ``concurrency`` requests in flight.

        A retryable failure (server down) stops the window at once; a rejected batch (4xx) does not
        stop the others, so one bad point costs its batch only; the first error is raised.
        """
        concurrency = self.config.concurrency
        if self._pool is None:
            self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="influxdb-write")
        pending: deque[Future[None]] = deque()
        errors: list[SinkError | _DatabaseMissing] = []
        batches = rejected = 0

        def settle(future: Future[None]) -> None:
            nonlocal rejected
            exc = future.exception()
            if exc is None:
                return
            if isinstance(exc, SinkError) and not exc.retryable:
                rejected += 1
            if isinstance(exc, SinkError | _DatabaseMissing):
                errors.append(exc)
            else:
                raise exc

        encoded = self._encoder.encode(window.points, batch_points=self.config.batch, max_bytes=MAX_BODY)
        try:
            for batch in encoded:
                if any(isinstance(e, _DatabaseMissing) or e.retryable for e in errors):
                    break
                batches += 1
                pending.append(self._pool.submit(self._send, batch))
                while len(pending) > concurrency:
                    settle(pending.popleft())
        finally:
            while pending:
                settle(pending.popleft())
        if not errors:
            return
        first = errors[0]
        if isinstance(first, _DatabaseMissing):
            raise first
        if not first.retryable and rejected > 1:
            raise SinkError(
                self.name, f"{rejected} of {batches} batches rejected; first: {first.detail}", retryable=False
            )
        raise first

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self._db_ready = False


def _ident(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _error_text(response: httpx.Response) -> str:
    """InfluxDB's ``{"error": "..."}`` message, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text.strip()[:500]
