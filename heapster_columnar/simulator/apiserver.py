"""The simulated Kubernetes API server: enough of core/v1 for list+watch clients and the node proxy.

Serves nodes, pods and namespaces from an :class:`.store.ObjectStore` the way kube-apiserver does
for the official Python client and kubectl: discovery documents, lists with label/field selectors
and ``limit``/``continue`` paging, newline-delimited JSON watches (with bookmarks and the in-stream
410 ``Expired`` error real servers send), ``Status`` objects for every error, bearer-token
authentication, and ``/api/v1/nodes/{name}/proxy/...`` forwarded to the node's kubelet.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from aiohttp import web

from heapster_columnar.simulator.store import KINDS, Gone, ObjectStore, Watch

__all__ = ["GIT_VERSION", "create_app", "start_apiserver"]

GIT_VERSION = "v1.30.0-heapster-columnar-sim"
WATCH_TIMEOUT_SECONDS = 1800.0  # kube-apiserver's --min-request-timeout: a watch without timeoutSeconds
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
_REASONS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed", 410: "Expired"}
_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter."
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Failure(Exception):
    """Raised by handlers; the error middleware turns it into a ``Status`` response."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body = _status_body(code, reason, message, details)


def _status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    body.update(message=message, reason=reason, code=code)
    if details:
        body["details"] = details
    return body


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _resource(name: str, kind: str, namespaced: bool, short: str, verbs: tuple[str, ...]) -> dict[str, Any]:
    singular = "" if "/" in name else kind.lower()
    out = {"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": list(verbs)}
    if short:
        out["shortNames"] = [short]
    if name == "pods":
        out["categories"] = ["all"]
    return out


_READ = ("get", "list", "watch")
API_RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        _resource("namespaces", "Namespace", False, "ns", _READ),
        _resource("nodes", "Node", False, "no", _READ),
        _resource("nodes/proxy", "NodeProxyOptions", False, "", ("get",)),
        _resource("pods", "Pod", True, "po", _READ),
    ],
}
VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": GIT_VERSION,
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    start = f"{key[0]}/{key[1]}" if key[0] else key[1]
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str, kind: str) -> tuple[tuple[str, str], int]:
    """(key to continue after, list version). Any malformed token is reported as expired (410), so
    a client's single recovery path — list again from the start — also covers it."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        start, rv = data["start"].rstrip("\x00"), int(data["rv"])
        namespace, _, name = start.rpartition("/") if KINDS[kind][1] else ("", "", start)
        if data.get("v") != "meta.k8s.io/v1" or not name or rv <= 0:
            raise ValueError(token)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise _Failure(410, "Expired", f"continue key is not valid: {exc}") from exc
    return (namespace, name), rv


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _number(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise _Failure(400, "BadRequest", f"invalid {name}: {raw!r}") from None


@dataclass(frozen=True, slots=True)
class ApiService:
    """An aggregated API (Kubernetes' APIService): requests under ``/apis/<group>/`` go to ``url``.

    ``ca_file`` verifies its certificate (the APIService's caBundle); ``token`` is sent as the
    bearer token (standing in for the front-proxy client certificate a real API server uses).
    """

    group: str
    version: str
    url: str
    ca_file: str | None = None
    token: str | None = None


class _ApiServer:
    """Request handlers over one store; holds the watches to end on shutdown."""

    def __init__(
        self,
        store: ObjectStore,
        token: str | None,
        kubelet_url: Callable[[str], str | None] | None,
        http_client: httpx.AsyncClient | None,
        bookmark_seconds: float,
    ) -> None:
        self.store, self.token, self.kubelet_url = store, token, kubelet_url
        self.http, self.bookmark_seconds = http_client, bookmark_seconds
        self.watches: set[Watch] = set()
        self.services: dict[str, tuple[ApiService, httpx.AsyncClient]] = {}

    # --- middlewares and lifecycle ------------------------------------------------------------------

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Failure as failure:
            return _json(failure.body, status=failure.body["code"])
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            reason = _REASONS.get(exc.status, exc.reason.replace(" ", ""))
            message = "the server could not find the requested resource" if exc.status == 404 else exc.reason
            return _json(_status_body(exc.status, reason, message), status=exc.status)

    @web.middleware
    async def auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is not None and request.path not in PUBLIC_PATHS:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {self.token}".encode()):
                raise _Failure(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    async def client_context(self, app: web.Application) -> AsyncIterator[None]:
        """Owns an httpx client for the proxy when the caller gave none; closes it on cleanup."""
        own = self.http is None
        if own:
            self.http = httpx.AsyncClient(timeout=30)
        yield
        if own and self.http is not None:
            await self.http.aclose()
            self.http = None

    async def on_shutdown(self, app: web.Application) -> None:
        """End open watches, or the runner would wait for each to reach its timeout."""
        for watch in list(self.watches):
            watch.close()
        for _, client in self.services.values():
            await client.aclose()

    def register(self, service: ApiService) -> None:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=service.ca_file) if service.ca_file else True
        old = self.services.get(service.group)
        self.services[service.group] = (service, httpx.AsyncClient(verify=verify, timeout=30))
        if old is not None:  # (called on the server's loop)
            asyncio.get_running_loop().create_task(old[1].aclose())

    # --- fixed documents ----------------------------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        return _json(VERSION)

    async def api(self, request: web.Request) -> web.Response:
        host = request.host or "127.0.0.1"
        cidrs = [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]
        return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": cidrs})

    async def api_v1(self, request: web.Request) -> web.Response:
        return _json(API_RESOURCES)

    async def apis(self, request: web.Request) -> web.Response:
        groups = []
        for service, _ in self.services.values():
            version = {"groupVersion": f"{service.group}/{service.version}", "version": service.version}
            groups.append({"name": service.group, "versions": [version], "preferredVersion": version})
        return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def aggregated(self, request: web.Request) -> web.Response:
        """The aggregation layer: forward ``/apis/<group>/...`` to the registered service."""
        group = request.match_info["group"]
        found = self.services.get(group)
        if found is None:
            raise _Failure(404, "NotFound", "the server could not find the requested resource")
        service, client = found
        url = service.url.rstrip("/") + request.path
        if request.query_string:
            url += "?" + request.query_string
        headers = {"Accept": "application/json"}
        if service.token:
            headers["Authorization"] = f"Bearer {service.token}"
        try:
            upstream = await client.get(url, headers=headers)
        except httpx.TransportError as exc:
            message = f"error trying to reach service: {type(exc).__name__}: {exc}"
            raise _Failure(503, "ServiceUnavailable", message) from exc
        headers = {"Content-Type": upstream.headers.get("Content-Type", "application/json")}
        return web.Response(body=upstream.content, status=upstream.status_code, headers=headers)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    # --- objects ------------------------------------------------------------------------------------

    async def collection(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["resource"]
        namespace = request.match_info.get("namespace")
        labels, fields = request.query.get("labelSelector"), request.query.get("fieldSelector")
        if _flag(request, "watch"):
            return await self._watch(request, kind, namespace, labels, fields)
        after: tuple[str, str] | None = None
        at: int | None = None
        if token := request.query.get("continue"):
            after, at = _decode_continue(token, kind)
        try:
            page = self.store.list(
                kind, namespace, labels, fields, limit=_number(request, "limit"), after=after, resource_version=at
            )
        except Gone as exc:
            raise _Failure(410, "Expired", _EXPIRED) from exc
        except ValueError as exc:
            raise _Failure(400, "BadRequest", str(exc)) from exc
        meta: dict[str, Any] = {"resourceVersion": str(page.resource_version)}
        if page.last_key is not None:
            meta["continue"] = _encode_continue(page.resource_version, page.last_key)
            if not labels and not fields:
                meta["remainingItemCount"] = page.remaining
        return _json({"kind": KINDS[kind][0] + "List", "apiVersion": "v1", "metadata": meta, "items": page.items})

    async def item(self, request: web.Request) -> web.Response:
        kind, name = request.match_info["resource"], request.match_info["name"]
        obj = self.store.get(kind, name, request.match_info.get("namespace"))
        if obj is None:
            raise _Failure(404, "NotFound", f'{kind} "{name}" not found', {"name": name, "kind": kind})
        return _json(obj)

    async def _watch(
        self, request: web.Request, kind: str, namespace: str | None, labels: str | None, fields: str | None
    ) -> web.StreamResponse:
        initial_end = _flag(request, "sendInitialEvents")
        rv = _number(request, "resourceVersion")
        start = None if initial_end or not rv else rv  # unset and "0" both begin with the current state
        timeout = float(_number(request, "timeoutSeconds") or WATCH_TIMEOUT_SECONDS)
        bookmarks = _flag(request, "allowWatchBookmarks")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            watch = self.store.watch(kind, start, namespace=namespace, label_selector=labels, field_selector=fields)
        except ValueError as exc:
            raise _Failure(400, "BadRequest", str(exc)) from exc
        except Gone as exc:  # real servers answer 200 and put the 410 in the stream
            await response.prepare(request)
            await response.write(_event("ERROR", _status_body(410, "Expired", exc.message)))
            return response
        self.watches.add(watch)
        try:
            await response.prepare(request)
            await self._stream(watch, response, kind, timeout, bookmarks, initial_end)
        except ConnectionError:
            pass  # the client went away mid-write (when it goes away while we wait, aiohttp cancels us)
        finally:
            self.watches.discard(watch)
            watch.close()
        return response

    async def _stream(
        self, watch: Watch, response: web.StreamResponse, kind: str, timeout: float, bookmarks: bool, initial_end: bool
    ) -> None:
        """Write events until the deadline; bookmarks when idle for ``bookmark_seconds`` and at the end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if initial_end:  # the initial ADDED events lead the queue; a marked bookmark says they are done
            for _ in range(watch.initial_count):
                await response.write(_event(*watch.pending.popleft()))
            await response.write(_bookmark(kind, watch, initial_end=True))
        while True:
            wait = deadline - loop.time()
            if wait <= 0:
                break
            try:
                async with asyncio.timeout(min(wait, self.bookmark_seconds) if bookmarks else wait):
                    type_, obj = await anext(watch)
            except TimeoutError:
                if bookmarks and deadline - loop.time() > 0:
                    await response.write(_bookmark(kind, watch))
                continue
            except StopAsyncIteration:
                return
            except Gone as exc:
                await response.write(_event("ERROR", _status_body(410, "Expired", exc.message)))
                return
            await response.write(_event(type_, obj))
        if bookmarks and not watch.pending:  # with events still queued the version would claim too much
            await response.write(_bookmark(kind, watch))

    # --- node proxy ---------------------------------------------------------------------------------

    async def proxy(self, request: web.Request) -> web.Response:
        name, path = request.match_info["name"], request.match_info.get("path", "")
        if self.store.get("nodes", name) is None:
            raise _Failure(404, "NotFound", f'nodes "{name}" not found', {"name": name, "kind": "nodes"})
        base = self.kubelet_url(name) if self.kubelet_url else None
        if base is None or self.http is None:
            raise _Failure(503, "ServiceUnavailable", f"no kubelet address known for node {name!r}")
        url = base.rstrip("/") + "/" + path
        if request.query_string:
            url += "?" + request.query_string
        try:
            upstream = await self.http.get(url, headers={"Accept": request.headers.get("Accept", "*/*")})
        except httpx.TransportError as exc:
            message = f"error trying to reach service: {type(exc).__name__}: {exc}"
            raise _Failure(503, "ServiceUnavailable", message) from exc
        headers = {"Content-Type": upstream.headers.get("Content-Type", "application/octet-stream")}
        return web.Response(body=upstream.content, status=upstream.status_code, headers=headers)


def _event(type_: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": type_, "object": obj}) + b"\n"


def _bookmark(kind: str, watch: Watch, *, initial_end: bool = False) -> bytes:
    """A BOOKMARK: only the object's kind and the version the watch has delivered up to."""
    meta: dict[str, Any] = {"resourceVersion": str(watch.resource_version)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return _event("BOOKMARK", {"kind": KINDS[kind][0], "apiVersion": "v1", "metadata": meta})


SERVER = web.AppKey("server", _ApiServer)


def register_api_service(app: web.Application, service: ApiService) -> None:
    """Route ``/apis/<service.group>/`` to ``service`` from now on (as creating an APIService does)."""
    app[SERVER].register(service)


def create_app(
    store: ObjectStore,
    *,
    token: str | None = None,
    kubelet_url: Callable[[str], str | None] | None = None,
    http_client: httpx.AsyncClient | None = None,
    bookmark_seconds: float = 60.0,
) -> web.Application:
    """The API server application. ``kubelet_url(node)`` gives a node's kubelet base URL for the
    proxy; ``http_client`` (kept open: the caller owns it) carries the kubelet TLS settings and
    token, else the app makes and closes its own. ``bookmark_seconds``: idle time (s) before a
    watch that allows bookmarks gets one. Serve it with ``handler_cancellation=True`` (as
    :func:`start_apiserver` does) so that a watch whose client left ends at once."""
    server = _ApiServer(store, token, kubelet_url, http_client, bookmark_seconds)
    app = web.Application(middlewares=[server.errors, server.auth])
    app.cleanup_ctx.append(server.client_context)
    app.on_shutdown.append(server.on_shutdown)
    get = app.router.add_get
    for path in PUBLIC_PATHS:
        get(path, server.healthz)
    for path, handler in (("/version", server.version), ("/api", server.api), ("/api/v1", server.api_v1)):
        get(path, handler)
        get(path + "/", handler)  # the Python client asks for /version/ and /apis/
    get("/apis", server.apis)
    get("/apis/", server.apis)
    get("/api/v1/{resource:nodes|namespaces|pods}", server.collection)
    get("/api/v1/namespaces/{namespace}/{resource:pods}", server.collection)
    get("/api/v1/{resource:nodes|namespaces}/{name}", server.item)
    get("/api/v1/namespaces/{namespace}/{resource:pods}/{name}", server.item)
    get("/apis/{group}", server.aggregated)
    get("/apis/{group}/{path:.*}", server.aggregated)
    app[SERVER] = server
    get("/api/v1/nodes/{name}/proxy", server.proxy)
    get("/api/v1/nodes/{name}/proxy/{path:.*}", server.proxy)
    return app


async def start_apiserver(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a loopback address; returns the runner (``await runner.cleanup()`` to stop)
    and the bound port. ValueError for any host outside 127.0.0.0/8: the simulator never listens
    on a reachable interface."""
    try:
        loopback = ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the simulated API server binds 127.x addresses only, not {host!r}")
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=5.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]
