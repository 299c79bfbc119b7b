"""The cached-socket backend under httpx: installed, and still sees a server closing a connection."""

from __future__ import annotations

import asyncio

import httpx

from heapster_columnar.sources import _network


def test_installs_under_this_httpx() -> None:
    transport = httpx.AsyncHTTPTransport()
    assert _network.install(transport)
    assert isinstance(transport._pool._network_backend, _network.CachedSocketBackend)


def test_a_server_side_close_makes_the_idle_connection_readable() -> None:
    """httpcore's pool relies on ``is_readable`` to drop connections the server closed; the cached
    socket must keep answering for the live socket."""

    async def scenario() -> tuple[bool, bool, object]:
        closed = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await closed.wait()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stream = await _network.CachedSocketBackend().connect_tcp("127.0.0.1", port, timeout=5)
        before = stream.get_extra_info("is_readable")
        closed.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if stream.get_extra_info("is_readable"):
                break
        after = stream.get_extra_info("is_readable")
        peer = stream.get_extra_info("server_addr")  # not cached: AnyIO's answer
        await stream.aclose()
        server.close()
        await server.wait_closed()
        return before, after, peer

    before, after, peer = asyncio.run(scenario())
    assert (before, after) == (False, True)
    assert isinstance(peer, tuple) and peer[0] == "127.0.0.1"
