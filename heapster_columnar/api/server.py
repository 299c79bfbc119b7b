"""The collector's HTTP side on one port: health, ``/metrics``, ``metrics.k8s.io`` and the model API.

aiohttp (already the simulator's server) on the collector's event loop; every answer that touches
a window is computed in a worker thread so a 150,000-pod list never stalls scraping. Heapster's
flags: ``--heapster-port`` (8082), ``--listen_ip``, ``--tls_cert``/``--tls_key``,
``--tls_client_ca`` + ``--allowed_users``; plus a bearer-token file. With any auth configured only
``/healthz`` is open to unauthenticated clients (Heapster also left ``/metrics`` open).

Client certificates: the TLS server asks for one whenever ``--tls_client_ca`` is set (Heapster
asked only when ``--allowed_users`` was non-empty, so a CA alone rejected everyone — HEAPSTER.md
§8.7). A certificate from another CA fails the TLS handshake itself (Python's TLS verifies what it
requests); a client without one gets 401, a verified user not in ``--allowed_users`` 403.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from heapster_columnar.api import resource_metrics as rm
from heapster_columnar.api.model import HistoryReader, ModelApi, add_model_routes
from heapster_columnar.api.selectors import SelectorError, parse_selector
from heapster_columnar.errors import ConfigError
from heapster_columnar.model.window import Window
from heapster_columnar.sinks.memory import MemorySink
from heapster_columnar.telemetry import Telemetry

__all__ = ["ApiOptions", "create_app", "serve", "warm"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/healthz", "/healthz/healthz"})
_USER = web.AppKey("user", str)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiOptions:
    listen_ip: str = ""  # all addresses, as Heapster
    port: int = 8082
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    allowed_users: tuple[str, ...] = ()
    token_file: str | None = None
    healthz_max_age: timedelta = timedelta(minutes=3)

    def check(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls_cert and --tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("--tls_client_ca needs --tls_cert and --tls_key (client certificates need TLS)")
        if self.allowed_users and not self.tls_client_ca:
            raise ConfigError("--allowed_users needs --tls_client_ca")
        for name, path in (
            ("--tls_cert", self.tls_cert),
            ("--tls_key", self.tls_key),
            ("--tls_client_ca", self.tls_client_ca),
            ("--api_token_file", self.token_file),
        ):
            if path and not Path(path).is_file():
                raise ConfigError(f"{name}: {path} is not a readable file")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--heapster-port: {self.port} is not a port")

    @property
    def authenticated(self) -> bool:
        return bool(self.tls_client_ca or self.token_file)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
            if self.tls_client_ca:
                context.load_verify_locations(self.tls_client_ca)
                context.verify_mode = ssl.CERT_OPTIONAL
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS files {self.tls_cert}, {self.tls_key}: {exc}") from None
        return context


class _Api:
    def __init__(
        self, memory: MemorySink, telemetry: Telemetry, options: ApiOptions, ready: Callable[[], bool]
    ) -> None:
        self.memory, self.telemetry, self.options, self.ready = memory, telemetry, options, ready
        self._token: tuple[float, str] | None = None
        self._cache_lock = threading.Lock()
        self._pods_cache: tuple[Window | None, pl.DataFrame] | None = None
        self._all_pods: tuple[pl.DataFrame, bytes] | None = None
        r = telemetry.registry
        self.requests = Counter(
            "heapster_columnar_http_requests", "API requests", ["handler", "method", "code"], registry=r
        )
        self.latency = Histogram("heapster_columnar_http_request_seconds", "API request time", ["handler"], registry=r)

    # --- middlewares ------------------------------------------------------------------------------

    @web.middleware
    async def observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        name = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.requests.labels(handler=name, method=request.method, code=str(exc.status)).inc()
            raise
        self.requests.labels(handler=name, method=request.method, code=str(response.status)).inc()
        self.latency.labels(handler=name).observe(time.perf_counter() - started)
        return response

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.options.authenticated or request.path in OPEN_PATHS:
            return await handler(request)
        if self.options.token_file and self._token_ok(request.headers.get("Authorization", "")):
            return await handler(request)
        user = _certificate_user(request) if self.options.tls_client_ca else None
        if user is None:
            return _error(401, "Unauthorized", "a client certificate or a bearer token is required")
        if self.options.allowed_users and user not in self.options.allowed_users:
            return _error(403, "Forbidden", f"user {user!r} is not in --allowed_users")
        return await handler(request)

    def _token_ok(self, header: str) -> bool:
        path = self.options.token_file
        assert path is not None
        try:
            stamp = Path(path).stat().st_mtime
            if self._token is None or self._token[0] != stamp:  # re-read when it rotates
                self._token = (stamp, Path(path).read_text().strip())
        except OSError:
            return False
        return bool(self._token[1]) and hmac.compare_digest(header.encode(), f"Bearer {self._token[1]}".encode())

    @web.middleware
    async def json_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error a JSON body saying what was wrong; never an HTML page, never a bare 500."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason)
        except (ValueError, SelectorError) as exc:
            return _error(400, "BadRequest", str(exc))
        except Exception:
            log.exception("%s %s failed", request.method, request.path_qs)
            return _error(500, "InternalError", "the server failed on this request; its log names the cause")

    # --- health and self-metrics ---------------------------------------------------------------------

    def _health(self) -> str | None:
        latest = self.memory.latest()
        if latest is None:
            return "no window has completed yet"
        age = datetime.now(UTC) - latest.end
        if age > self.options.healthz_max_age:
            return f"the newest window ended {age.total_seconds():.0f} s ago (limit {self.options.healthz_max_age})"
        return None

    async def healthz(self, request: web.Request) -> web.Response:
        problem = self._health()
        if problem is None:
            return web.Response(text="ok")
        if request.path == "/healthz/healthz" or "verbose" in request.query:
            return web.Response(status=500, text=f"[-]healthz failed: {problem}\n")
        return web.Response(status=500, text="[-]healthz failed: reason withheld\n")

    async def readyz(self, request: web.Request) -> web.Response:
        if self.ready() and self.memory.latest() is not None:
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready: waiting for the cluster state and a first window\n")

    async def metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, self.telemetry.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- metrics.k8s.io --------------------------------------------------------------------------

    async def rm_group(self, request: web.Request) -> web.Response:
        return _json(rm.group())

    async def rm_resources(self, request: web.Request) -> web.Response:
        return _json(rm.discovery())

    async def rm_nodes(self, request: web.Request) -> web.Response:
        selector = parse_selector(request.query.get("labelSelector"))
        name = request.match_info.get("name")
        rows = await asyncio.to_thread(rm.node_metrics, self.memory.latest(), selector, now=datetime.now(UTC))
        if name is None:
            return web.Response(body=rm.as_list("NodeMetrics", rows), content_type="application/json")
        found = rows.filter(rows["name"] == name)
        if found.height == 0:
            return _not_found("nodes", name)
        return web.Response(text=found["json"][0], content_type="application/json")

    async def rm_pods(self, request: web.Request) -> web.Response:
        selector = parse_selector(request.query.get("labelSelector"))
        namespace, name = request.match_info.get("namespace"), request.match_info.get("name")
        window = self.memory.latest()

        def answer() -> pl.DataFrame:
            rows = self._pods_of(window)
            if namespace is not None:
                rows = rows.filter(pl.col("namespace") == namespace)
            if name is not None:
                rows = rows.filter(pl.col("name") == name)
            return rm.select_pods(window, rows, selector) if window is not None else rows

        if namespace is None and name is None and not selector:  # kubectl top pods -A, the HPA's list
            body = await asyncio.to_thread(self._all_pods_of, window)
            return web.Response(body=body, content_type="application/json")
        rows = await asyncio.to_thread(answer)
        if name is None:
            return web.Response(body=rm.as_list("PodMetrics", rows), content_type="application/json")
        if rows.height == 0:
            return _not_found("pods", name)
        return web.Response(text=rows["json"][0], content_type="application/json")

    def _all_pods_of(self, window: Window | None) -> bytes:
        rows = self._pods_of(window)
        with self._cache_lock:
            cached = self._all_pods
            if cached is not None and cached[0] is rows:
                return cached[1]
            body = rm.as_list("PodMetrics", rows)
            self._all_pods = (rows, body)
            return body

    def _pods_of(self, window: Window | None) -> pl.DataFrame:
        """Every pod's PodMetrics of ``window``, built once per window: 150,000 pods cost ~1 s to
        encode, a filter of the encoded rows a few ms (kubectl and the HPA ask many times a window)."""
        with self._cache_lock:
            cached = self._pods_cache
            if cached is not None and cached[0] is window:
                return cached[1]
            rows = rm.pod_metrics(window, now=datetime.now(UTC))
            self._pods_cache = (window, rows)
            return rows


def _certificate_user(request: web.Request) -> str | None:
    """The verified client certificate's Common Name (Heapster's user), if one was presented."""
    transport = request.transport
    peer: Any = transport.get_extra_info("peercert") if transport is not None else None
    if not peer:
        return None
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return _json(body, status=code)


def _not_found(resource: str, name: str) -> web.Response:
    return _error(404, "NotFound", f'{resource}.{rm.GROUP} "{name}" not found')


def create_app(
    memory: MemorySink,
    telemetry: Telemetry,
    options: ApiOptions,
    *,
    ready: Callable[[], bool] = lambda: True,
    history: HistoryReader | None = None,
) -> web.Application:
    """Every route on one application; the model API reads ``memory`` and, for older ranges, ``history``."""
    api = _Api(memory, telemetry, options, ready)
    app = web.Application(middlewares=[api.json_errors, api.observe, api.authenticate])
    app[_API] = api
    get = app.router.add_get
    for path in ("/healthz", "/healthz/healthz"):
        get(path, api.healthz)
    get("/readyz", api.readyz)
    get("/metrics", api.metrics)
    base = f"/apis/{rm.GROUP}"
    get(base, api.rm_group)
    get(f"{base}/{rm.VERSION}", api.rm_resources)
    get(f"{base}/{rm.VERSION}/nodes", api.rm_nodes)
    get(f"{base}/{rm.VERSION}/nodes/{{name}}", api.rm_nodes)
    get(f"{base}/{rm.VERSION}/pods", api.rm_pods)
    get(f"{base}/{rm.VERSION}/namespaces/{{namespace}}/pods", api.rm_pods)
    get(f"{base}/{rm.VERSION}/namespaces/{{namespace}}/pods/{{name}}", api.rm_pods)
    add_model_routes(ModelApi(memory, history))(app)
    return app


_API = web.AppKey("api", _Api)


def warm(app: web.Application, window: Window) -> None:
    """Encode ``window``'s pod list now (in a worker thread, off every request's path): the first
    ``kubectl top pods -A`` after a window then costs a lookup, not the ~1.3 s encoding."""
    app[_API]._all_pods_of(window)


async def serve(app: web.Application, options: ApiOptions) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (``await runner.cleanup()``) and the bound port."""
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, options.listen_ip or None, options.port, ssl_context=options.ssl_context())
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {options.listen_ip or '*'}:{options.port}: {exc.strerror or exc}"
        ) from None
    addresses = runner.addresses  # (host, port[, ...]) per bound socket
    port = int(addresses[0][1]) if addresses else options.port
    return runner, port
