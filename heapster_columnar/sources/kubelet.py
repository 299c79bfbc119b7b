"""Scraping every kubelet's ``/stats/summary`` once per window (HEAPSTER.md §3.2, §3.6).

One :class:`KubeletScraper` lives as long as the collector: its ``httpx.AsyncClient`` keeps
connections (and TLS sessions) across windows. Per window, requests start spread uniformly over
``min(8 ms x nodes, 4 s)`` as Heapster does (so 5,000 kubelets are not hit in the same
millisecond), at most ``concurrency`` are in flight, each is cut at ``timeout`` and the whole window
at ``deadline``: what arrived by then is the window, the rest count as failed. Bodies are decoded in
batches on one worker thread while other requests are still in flight, so the event loop only does
network work; a broken node costs only its own rows. Every failure is a short reason per node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow as pa

from heapster_columnar.errors import ConfigError
from heapster_columnar.model.batch import MetricBatch, concat_batches
from heapster_columnar.sources import _network
from heapster_columnar.sources.config import SummarySourceConfig
from heapster_columnar.sources.summary import DecodeResult, decode_summaries

__all__ = ["Collected", "KubeletScraper", "Target"]

log = logging.getLogger(__name__)

SPREAD_PER_NODE = 0.008  # Heapster: random start delay in [0, min(8 ms x sources, 4 s))
SPREAD_MAX = 4.0
SHARD_CONNECTIONS = 8  # connections per httpx pool (see __init__)
DECODE_MIN_BYTES = 4 << 20  # decode once this much arrived (or when nothing else is in flight)


@dataclass(frozen=True, slots=True)
class Target:
    """One kubelet to scrape: the API Node name (failures and decode errors are keyed by it) and URL."""

    node: str
    url: str


@dataclass(slots=True)
class Collected:
    """One window's scrape.

    ``failures``: node → short reason, including nodes not scraped at all ("not ready").
    ``partial``: some node that should have answered did not (any failure but "not ready").
    ``request_seconds``: node → seconds from sending to the last body byte (answered requests).
    ``bytes``: body bytes received. ``scraped``: nodes whose document decoded.
    """

    batch: MetricBatch
    failures: dict[str, str] = field(default_factory=dict)
    partial: bool = False
    request_seconds: dict[str, float] = field(default_factory=dict)
    decode_seconds: float = 0.0  # worker-thread time decoding bodies (overlaps the network)
    bytes: int = 0
    scraped: int = 0


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A decode batch's result and the seconds it took."""

    batch: MetricBatch
    errors: tuple[Any, ...]
    documents: int
    seconds: float


class _Token:
    """A bearer token given directly or read from a file, re-read whenever the file changes."""

    def __init__(self, value: str | None, path: str | None) -> None:
        self._value, self._path = value, path
        self._stamp: tuple[int, int, int] | None = None

    def current(self) -> str | None:
        if self._path is None:
            return self._value
        try:
            st = os.stat(self._path)
        except OSError as exc:
            raise ConfigError(f"token file {self._path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            with open(self._path, encoding="utf-8") as f:
                self._value = f.read().strip()
            self._stamp = stamp
        return self._value


class KubeletScraper:
    """Scrapes kubelets directly or through the API-server proxy; one instance per collector.

    ``api_url``/``api_token``/``ca_file`` are the resolved API-server credentials (from the
    kubeconfig, the service account or the URI): the proxy mode talks to ``api_url``; ``ca_file``
    is the kubelet CA unless ``caFile`` was given; ``api_token`` is used unless a token file applies.
    ``decode=False`` counts bodies without decoding them (benchmarks of the client's own cost).
    """

    def __init__(
        self,
        config: SummarySourceConfig,
        *,
        api_url: str | None = None,
        api_token: str | None = None,
        ca_file: str | None = None,
        decode: bool = True,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self._api_url = (api_url or config.url).rstrip("/")
        if config.kubelet_mode == "proxy" and not self._api_url:
            raise ConfigError(f"{config.kubelet_mode} mode needs the API server address")
        self._token = _Token(api_token, config.effective_token_file)
        self._decode = decode
        self._random = random.Random(seed)
        ca = (config.ca_file or ca_file) if config.kubelet_mode == "direct" else (ca_file or config.ca_file)
        verify: ssl.SSLContext | bool = not config.insecure
        if not config.insecure and ca:
            try:
                verify = ssl.create_default_context(cafile=ca)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"CA file {ca}: {exc}") from None
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        # Many small pools, not one big one: httpcore scans its whole pool (quadratically, with a
        # poll() per idle connection) on every request start and end, which cost 20 ms of CPU per
        # request with 64 connections to the API-server proxy; pools of 8 cost ~64x less. Proxy
        # mode: the concurrency split over pools to the one API server. Direct mode: a pool per 8
        # nodes, so each node's connection (and its TLS session) survives from window to window,
        # as with Heapster's Go transport; a fresh TLS handshake per node per window tripled our CPU.
        self._gate_size = config.concurrency
        self._shards: list[httpx.AsyncClient] = []
        self._slots: list[int] = []
        if config.kubelet_mode == "proxy":
            count = -(-config.concurrency // SHARD_CONNECTIONS)
            self._slots = [len(range(i, config.concurrency, count)) for i in range(count)]
            self._shards = [self._client(n) for n in self._slots]
        self._pool_of: dict[str, httpx.AsyncClient] = {}  # direct mode: node -> its pool
        self._members: dict[httpx.AsyncClient, set[str]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="summary-decode")

    @property
    def _sends_token(self) -> bool:
        # Heapster sends the kubelet token only over https; the proxy always needs the API token.
        return self.config.kubelet_mode == "proxy" or self.config.kubelet_https

    def targets(self, nodes: pa.Table) -> tuple[list[Target], dict[str, str]]:
        """(targets, skipped node → reason) from a NODES_SCHEMA table."""
        names = nodes.column("name").to_pylist()
        ips = nodes.column("address").to_pylist()
        ports = nodes.column("kubelet_port").to_pylist()
        ready = nodes.column("ready").to_pylist()
        scheme = "https" if self.config.kubelet_https else "http"
        targets: list[Target] = []
        skipped: dict[str, str] = {}
        for name, ip, port, is_ready in zip(names, ips, ports, ready, strict=True):
            if is_ready is False:  # Heapster skips only a Ready condition that is not True
                skipped[name] = "not ready"
            elif self.config.kubelet_mode == "proxy":
                targets.append(Target(name, f"{self._api_url}/api/v1/nodes/{quote(name, safe='')}/proxy/stats/summary"))
            elif not ip:
                skipped[name] = "no InternalIP or ExternalIP address"
            elif not (port := self.config.kubelet_port or port):
                skipped[name] = "no kubelet port (daemonEndpoints empty; set kubeletPort)"
            else:
                host = f"[{ip}]" if ":" in ip else ip  # IPv6
                targets.append(Target(name, f"{scheme}://{host}:{port}/stats/summary"))
        return targets, skipped

    async def collect(self, nodes: pa.Table, *, now: datetime, deadline: float) -> Collected:
        """Scrape every ready node; return by ``deadline`` (an event-loop time) with what arrived.

        ``now`` is the collector's clock for ``uptime`` (Heapster computes it at decode time).
        """
        loop = asyncio.get_running_loop()
        targets, skipped = self.targets(nodes)
        out = Collected(MetricBatch.empty(), failures=dict(skipped))
        token = self._token.current() if self._sends_token else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        spread = min(SPREAD_PER_NODE * len(targets), SPREAD_MAX)
        routes = await self._routes(targets)
        fetches: dict[asyncio.Future[Any], Target] = {
            asyncio.create_task(self._fetch(t, self._random.uniform(0, spread), client, gate, headers)): t
            for t, (client, gate) in zip(targets, routes, strict=True)
        }
        # Completions arrive through a queue: asyncio.wait() over a thousand tasks re-registers a
        # callback on each of them per wake-up, quadratic in the number of nodes.
        arrived: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        for task in fetches:
            task.add_done_callback(arrived.put_nowait)
        decodes: set[asyncio.Future[Any]] = set()
        results: list[_Decoded] = []
        pending: list[tuple[str, bytes]] = []
        unseen = set(fetches)

        def take(finished: asyncio.Future[Any]) -> None:
            if finished in decodes:
                decodes.discard(finished)
                results.append(finished.result())
                return
            if finished not in unseen:
                return
            unseen.discard(finished)
            node = fetches[finished].node
            body, reason, seconds = finished.result()
            if reason is not None:
                out.failures[node] = reason
                return
            out.request_seconds[node] = seconds
            out.bytes += len(body)
            if body[:64].lstrip()[:1] != b"{":
                out.failures[node] = f"not JSON: body starts {bytes(body[:40])!r}"
                return
            pending.append((node, body))

        def decode_some() -> None:
            nonlocal pending
            if pending and not decodes and (sum(len(b) for _, b in pending) >= DECODE_MIN_BYTES or not unseen):
                future = loop.run_in_executor(self._executor, self._decode_batch, pending, now)
                future.add_done_callback(arrived.put_nowait)
                decodes.add(future)
                pending = []

        try:
            async with asyncio.timeout_at(deadline):
                while unseen:
                    take(await arrived.get())
                    decode_some()
        except TimeoutError:
            pass
        for task in list(unseen):
            if task.done():  # finished at the deadline, its callback not run yet
                take(task)
            else:
                task.cancel()
                unseen.discard(task)
                out.failures[fetches[task].node] = "deadline"
        await asyncio.gather(*fetches, return_exceptions=True)
        if pending:  # arrived while the last decode ran, or just before the deadline
            results.append(await loop.run_in_executor(self._executor, self._decode_batch, pending, now))
        for decode in list(decodes):
            results.append(await decode)
        for result in results:
            out.decode_seconds += result.seconds
            for error in result.errors:
                out.failures[error.source] = f"bad Summary: {error.detail}"
            out.scraped += result.documents
        parts = [r.batch for r in results if r.batch.entities.num_rows]
        out.batch = parts[0] if len(parts) == 1 else await loop.run_in_executor(self._executor, concat_batches, parts)
        out.partial = any(reason != "not ready" for reason in out.failures.values())
        return out

    def _client(self, connections: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=300)
        transport = httpx.AsyncHTTPTransport(verify=self._ssl, limits=limits)
        if not _network.install(transport):
            log.warning("httpx changed: scraping without the cached-socket backend (slower, still correct)")
        timeout = httpx.Timeout(self.config.timeout)
        return httpx.AsyncClient(transport=transport, timeout=timeout, headers={"Accept": "application/json"})

    async def _routes(self, targets: list[Target]) -> list[tuple[httpx.AsyncClient, asyncio.Semaphore]]:
        """(pool, concurrency gate) per target; direct mode keeps each node in the same pool."""
        if self._shards:
            gates = [asyncio.Semaphore(n) for n in self._slots]
            return [(self._shards[i % len(gates)], gates[i % len(gates)]) for i in range(len(targets))]
        wanted = {t.node for t in targets}
        for node in [n for n in self._pool_of if n not in wanted]:  # nodes gone: free their slots
            pool = self._pool_of.pop(node)
            self._members[pool].discard(node)
            if not self._members[pool]:
                del self._members[pool]
                await pool.aclose()
        open_pools = [p for p, nodes in self._members.items() if len(nodes) < SHARD_CONNECTIONS]
        for node in wanted - self._pool_of.keys():
            if not open_pools:
                open_pools.append(self._client(SHARD_CONNECTIONS))
                self._members[open_pools[-1]] = set()
            pool = open_pools[-1]
            self._pool_of[node] = pool
            self._members[pool].add(node)
            if len(self._members[pool]) >= SHARD_CONNECTIONS:
                open_pools.pop()
        gate = asyncio.Semaphore(self._gate_size)
        return [(self._pool_of[t.node], gate) for t in targets]

    def _decode_batch(self, arrived: list[tuple[str, bytes]], now: datetime) -> _Decoded:
        started = time.perf_counter()
        if not self._decode:
            result = DecodeResult(MetricBatch.empty(), (), 0, len(arrived))
        else:
            result = decode_summaries([b for _, b in arrived], now=now, sources=[n for n, _ in arrived])
        return _Decoded(result.batch, result.errors, result.documents, time.perf_counter() - started)

    async def _fetch(
        self,
        target: Target,
        delay: float,
        client: httpx.AsyncClient,
        gate: asyncio.Semaphore,
        headers: dict[str, str],
    ) -> tuple[bytes, str | None, float]:
        """(body, None, seconds) or (b"", reason, seconds); never raises (but can be cancelled)."""
        if delay > 0:
            await asyncio.sleep(delay)
        async with gate:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.config.timeout):
                    response = await client.get(target.url, headers=headers)
            except (TimeoutError, httpx.TimeoutException):
                return b"", "timeout", time.perf_counter() - started
            except httpx.HTTPError as exc:
                return b"", _transport_reason(exc), time.perf_counter() - started
            seconds = time.perf_counter() - started
        if response.status_code != 200:
            return b"", _status_reason(response), seconds
        return response.content, None, seconds

    async def aclose(self) -> None:
        """Close pooled connections and the decode thread."""
        for client in [*self._shards, *self._members]:
            await client.aclose()
        self._shards, self._members, self._pool_of = [], {}, {}
        self._executor.shutdown(wait=True)


def _status_reason(response: httpx.Response) -> str:
    code = response.status_code
    if code in (401, 403):
        return f"{code} {'Unauthorized' if code == 401 else 'Forbidden'}"
    if code == 404:
        return "404 not found (no /stats/summary)"
    text = " ".join(response.text.split())[:100]
    return f"HTTP {code}: {text}" if text else f"HTTP {code}"


def _transport_reason(exc: BaseException) -> str:
    """A one-line reason for a connection-level failure; TLS problems say so first."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS: certificate verify failed: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS: {cause.reason or cause}"
        cause = cause.__cause__ or cause.__context__
    message = " ".join(str(exc).split())[:120]
    if "CERTIFICATE_VERIFY_FAILED" in message or "SSL" in message:
        return f"TLS: {message}"
    kinds: dict[type[BaseException], str] = {
        httpx.ConnectError: "connect",
        httpx.RemoteProtocolError: "protocol error",
        httpx.ReadError: "read error",
        httpx.WriteError: "write error",
    }
    kind = kinds.get(type(exc), type(exc).__name__)
    return f"{kind}: {message}" if message else kind
