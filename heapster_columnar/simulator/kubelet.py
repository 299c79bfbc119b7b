"""A fleet of simulated kubelets: one listening socket per node, each on its own 127.x address.

All kubelets share one aiohttp application; a request is routed to its node by the local address it
arrived on, exactly as a collector reaches a real node by its InternalIP and kubelet port. Documents
come from :mod:`.payloads` and are cached per node and second (kubelet samples advance in whole
seconds, so a second scrape within the same second gets the same bytes). Faults from
:class:`.spec.FaultSpec` are applied per node.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from heapster_columnar.simulator.faults import PERIODIC, apply_faults, period_key
from heapster_columnar.simulator.payloads import MarkedDocument, NodeShape, marked_document, summary_document
from heapster_columnar.simulator.render import SummaryTemplate
from heapster_columnar.simulator.spec import Fault, kubelet_ip

GARBAGE = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def render_summary(index: int, second: int, *, shape: NodeShape, faults: dict[Fault, float]) -> dict[str, Any]:
    """Node ``index``'s document at ``second``, faults applied (module level: worker processes use it)."""
    document = summary_document(index, at=datetime.fromtimestamp(second, UTC), shape=shape)
    return apply_faults(document, faults, second, seed=shape.seed)


def build_template(
    index: int, second: int, *, shape: NodeShape, faults: dict[Fault, float], marked: MarkedDocument | None = None
) -> SummaryTemplate:
    """Node ``index``'s body template from ``second`` on (module level: worker processes use it).

    One marked render (~4 ms) for most nodes. Restart and churn rewrite counters from their values,
    which marks hide, so those nodes are rendered twice and diffed instead (~20 ms, once a period).
    ``marked`` is a render of this node at ``second`` the caller already has (it is changed).
    """
    if any(f in faults for f in PERIODIC):
        return SummaryTemplate.build(partial(render_summary, index, shape=shape, faults=faults), second)
    if marked is None:
        marked = marked_document(index, at=datetime.fromtimestamp(second, UTC), shape=shape)
    apply_faults(marked.document, faults, second, seed=shape.seed)  # the others only touch constants
    return SummaryTemplate.from_marked(marked, second)


class KubeletFleet:
    """Serves ``/stats/summary`` and ``/pods`` for every node of a simulated cluster."""

    def __init__(
        self,
        nodes: int,
        *,
        shape: NodeShape,
        faults: dict[int, dict[Fault, float]],
        pods_of: Callable[[int], list[dict[str, Any]]],
        port: int = 0,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.nodes, self.shape, self.faults, self.token = nodes, shape, faults, token
        self._pods_of, self._port, self._ssl, self._clock = pods_of, port, ssl_context, clock
        self._by_ip: dict[str, int] = {}
        self.ports: list[int] = []
        self._cache: dict[int, tuple[int, bytes]] = {}
        self._templates: dict[int, SummaryTemplate] = {}
        # Templates are exact while every moving value is linear in time (no memory wave); with the
        # wave on, rebuild a node's template this often so memory follows it.
        self.refresh_seconds = 300 if shape.memory_wave else 2**62
        self._runner: web.AppRunner | None = None
        self._hanging: set[asyncio.Future[None]] = set()

    def add_templates(self, templates: dict[int, SummaryTemplate]) -> None:
        """Install templates built elsewhere (at start-up, in worker processes)."""
        for index, template in templates.items():
            self._templates.setdefault(index, template)

    def _render(self, index: int, at: float) -> dict[str, Any]:
        return render_summary(index, int(at), shape=self.shape, faults=self.faults.get(index, {}))

    def document(self, index: int, at: float) -> dict[str, Any]:
        """What node ``index`` reports at wall-clock second ``at``: the simulator's truth."""
        parsed: dict[str, Any] = orjson.loads(self.body(index, at))
        return parsed

    def body(self, index: int, at: float) -> bytes:
        """The bytes served at second ``at``: patched from the node's template, cached per second."""
        second = int(at)
        cached = self._cache.get(index)
        if cached is not None and cached[0] == second:
            return cached[1]
        faults = self.faults.get(index, {})
        if period_key(faults, second) != period_key(faults, second + 1):  # a restart/churn boundary
            body = orjson.dumps(self._render(index, second))
        else:
            template = self._templates.get(index)
            if (
                template is None
                or not template.at <= second < template.at + self.refresh_seconds
                or period_key(faults, template.at) != period_key(faults, second)
            ):
                # start-up builds every template; this is for later periods and refreshes
                template = build_template(index, second, shape=self.shape, faults=faults)
                self._templates[index] = template
            body = template.render(second)
        self._cache[index] = (second, body)
        return body

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/stats/summary", self._summary)
        app.router.add_get("/stats/summary/", self._summary)
        app.router.add_get("/pods", self._pods)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        for index in range(self.nodes):
            ip = kubelet_ip(index)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((ip, self._port))
                sock.listen(128)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                raise OSError(exc.errno, f"kubelet {ip}:{self._port}: {exc.strerror}") from exc
            await web.SockSite(self._runner, sock, ssl_context=self._ssl).start()
            self._by_ip[ip] = index
            self.ports.append(sock.getsockname()[1])

    async def close(self) -> None:
        for future in self._hanging:
            future.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _node(self, request: web.Request) -> int:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if not sockname or sockname[0] not in self._by_ip:
            raise web.HTTPNotFound(text="unknown kubelet address")
        return self._by_ip[sockname[0]]

    def _check_token(self, request: web.Request) -> None:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            raise web.HTTPUnauthorized(text="Unauthorized")

    async def _summary(self, request: web.Request) -> web.StreamResponse:
        index = self._node(request)
        self._check_token(request)
        faults = self.faults.get(index, {})
        if Fault.HANG in faults:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._hanging.add(future)
            try:
                await future
            finally:
                self._hanging.discard(future)
        if Fault.SLOW in faults:
            await asyncio.sleep(faults[Fault.SLOW])
        if Fault.HTTP500 in faults:
            raise web.HTTPInternalServerError(text="Internal Error: failed to get node stats")
        if Fault.GARBAGE in faults:
            return web.Response(body=GARBAGE, content_type="text/html")
        body = self.body(index, self._clock())
        if Fault.TRUNCATED in faults:
            body = body[: len(body) // 2]
        return web.Response(body=body, content_type="application/json")

    async def _pods(self, request: web.Request) -> web.Response:
        index = self._node(request)
        self._check_token(request)
        items = self._pods_of(index)
        body = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")
