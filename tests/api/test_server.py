"""The API server on a real socket: health, self-metrics, metrics.k8s.io answers, TLS and auth."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
import pytest
import trustme

from heapster_columnar.api.server import ApiOptions, create_app, serve
from heapster_columnar.errors import ConfigError
from heapster_columnar.sinks.memory import MemorySink
from heapster_columnar.telemetry import Telemetry

sys.path.insert(0, str(Path(__file__).parents[1] / "sinks"))
from windows import fixture_windows

Call = Callable[[httpx.AsyncClient, str], Awaitable[None]]


def run_against(memory: MemorySink, options: ApiOptions, body: Callable[[str], Awaitable[None]]) -> None:
    async def scenario() -> None:
        runner, port = await serve(create_app(memory, Telemetry(), options), options)
        scheme = "https" if options.tls_cert else "http"
        try:
            await body(f"{scheme}://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def fresh(kubelet_data: Path) -> MemorySink:
    """Two fixture windows re-stamped to end now, so /healthz sees a fresh window."""
    memory = MemorySink()
    now = datetime.now(UTC).replace(microsecond=0)
    for window in fixture_windows(kubelet_data, 2, start=now - timedelta(seconds=15)):
        memory.write(window)
    return memory


LOCAL = ApiOptions(listen_ip="127.0.0.1", port=0)


def test_health_and_readiness(fresh: MemorySink, kubelet_data: Path) -> None:
    stale = MemorySink()
    for window in fixture_windows(kubelet_data, 1):  # ended in 2023
        stale.write(window)

    async def body_fresh(url: str) -> None:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{url}/healthz")).text == "ok"
            assert (await client.get(f"{url}/readyz")).status_code == 200

    async def body_stale(url: str) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{url}/healthz")
            assert response.status_code == 500 and "reason withheld" in response.text
            verbose = await client.get(f"{url}/healthz?verbose")
            assert "the newest window ended" in verbose.text and "limit 0:03:00" in verbose.text

    async def body_empty(url: str) -> None:
        async with httpx.AsyncClient() as client:
            assert "no window has completed" in (await client.get(f"{url}/healthz/healthz")).text
            assert (await client.get(f"{url}/readyz")).status_code == 503

    run_against(fresh, LOCAL, body_fresh)
    run_against(stale, LOCAL, body_stale)
    run_against(MemorySink(), LOCAL, body_empty)


def _entities(memory: MemorySink) -> pl.DataFrame:
    latest = memory.latest()
    assert latest is not None
    frame = pl.from_arrow(latest.batch.entities)
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_node_and_pod_metrics_match_the_window(fresh: MemorySink) -> None:
    entities = _entities(fresh)
    node = entities.filter(pl.col("type") == "node").row(0, named=True)
    containers = entities.filter(pl.col("type") == "pod_container")
    base = "/apis/metrics.k8s.io/v1beta1"

    async def body(url: str) -> None:
        async with httpx.AsyncClient() as client:
            nodes = orjson.loads((await client.get(f"{url}{base}/nodes")).content)
            assert nodes["kind"] == "NodeMetricsList" and len(nodes["items"]) == 1
            item = nodes["items"][0]
            assert item["metadata"]["name"] == node["nodename"] == "datagen-1-28"
            assert item["usage"] == {"cpu": f"{node['cpu/usage_rate']}m", "memory": str(node["memory/working_set"])}
            assert item["window"] == "15s"
            one = orjson.loads((await client.get(f"{url}{base}/nodes/datagen-1-28")).content)
            assert one == item
            missing = await client.get(f"{url}{base}/nodes/nope")
            assert missing.status_code == 404 and "nope" in missing.json()["message"]

            pods = orjson.loads((await client.get(f"{url}{base}/pods")).content)["items"]
            for pod in pods:
                ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
                for container in pod["containers"]:
                    row = containers.filter(
                        (pl.col("namespace_name") == ns)
                        & (pl.col("pod_name") == name)
                        & (pl.col("container_name") == container["name"])
                    ).row(0, named=True)
                    assert container["usage"]["cpu"] == f"{row['cpu/usage_rate']}m"
                    assert container["usage"]["memory"] == str(row["memory/working_set"])
            assert len(pods) >= 5
            system = orjson.loads((await client.get(f"{url}{base}/namespaces/kube-system/pods")).content)["items"]
            assert system and {p["metadata"]["namespace"] for p in system} == {"kube-system"}
            selected = await client.get(f"{url}{base}/namespaces/kube-system/pods?labelSelector=k8s-app=kube-dns")
            names = [p["metadata"]["name"] for p in orjson.loads(selected.content)["items"]]
            assert names and all(n.startswith("coredns-") for n in names)
            bad = await client.get(f"{url}{base}/pods?labelSelector=app in (")
            assert bad.status_code == 400 and "parenthes" in bad.json()["message"]

    run_against(fresh, LOCAL, body)


def test_metrics_endpoint_exposes_the_registry(fresh: MemorySink) -> None:
    async def body(url: str) -> None:
        async with httpx.AsyncClient() as client:
            await client.get(f"{url}/apis/metrics.k8s.io/v1beta1/nodes")
            text = (await client.get(f"{url}/metrics")).text
            assert "heapster_columnar_sink_spool_bytes" in text or "heapster_columnar_windows_total" in text
            line = next(
                ln
                for ln in text.splitlines()
                if ln.startswith("heapster_columnar_http_requests_total{") and "nodes" in ln
            )
            assert line.endswith(" 1.0") and 'code="200"' in line

    run_against(fresh, LOCAL, body)


# --- TLS and authentication ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    files = {"server": str(root / "server.pem"), "ca": str(root / "ca.pem"), "trust": ca}
    for name, issuer in (("alice", ca), ("bob", ca), ("mallory", other)):
        cert = issuer.issue_cert(f"{name}@example.com", common_name=name)
        cert.private_key_and_cert_chain_pem.write_to_path(str(root / f"{name}.pem"))
        files[name] = str(root / f"{name}.pem")
    (root / "token").write_text("t0ken\n")
    files["token"] = str(root / "token")
    return files


def _client(pki: dict[str, Any], user: str | None) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=pki["ca"])
    if user is not None:
        context.load_cert_chain(pki[user])
    return httpx.AsyncClient(verify=context)


def test_client_certificates_and_allowed_users(fresh: MemorySink, pki: dict[str, Any]) -> None:
    options = ApiOptions(
        listen_ip="127.0.0.1",
        port=0,
        tls_cert=pki["server"],
        tls_key=pki["server"],
        tls_client_ca=pki["ca"],
        allowed_users=("alice",),
    )
    path = "/apis/metrics.k8s.io/v1beta1/nodes"

    async def body(url: str) -> None:
        async with _client(pki, "alice") as alice:
            assert (await alice.get(url + path)).status_code == 200
            assert (await alice.get(url + "/metrics")).status_code == 200
        async with _client(pki, "bob") as bob:
            denied = await bob.get(url + path)
            assert denied.status_code == 403 and "bob" in denied.json()["message"]
        async with _client(pki, None) as anonymous:
            assert (await anonymous.get(url + path)).status_code == 401
            assert (await anonymous.get(url + "/metrics")).status_code == 401
            assert (await anonymous.get(url + "/healthz")).status_code == 200  # the one open path
        async with _client(pki, "mallory") as mallory:  # signed by another CA: refused in the handshake
            with pytest.raises(httpx.TransportError):
                await mallory.get(url + path)

    run_against(fresh, options, body)


def test_a_ca_alone_accepts_every_verified_user(fresh: MemorySink, pki: dict[str, Any]) -> None:
    """Heapster's bug: with --tls_client_ca and no --allowed_users it never asked for certificates
    and rejected everyone (HEAPSTER.md §8.7)."""
    options = ApiOptions(
        listen_ip="127.0.0.1", port=0, tls_cert=pki["server"], tls_key=pki["server"], tls_client_ca=pki["ca"]
    )

    async def body(url: str) -> None:
        async with _client(pki, "bob") as bob:
            assert (await bob.get(url + "/apis/metrics.k8s.io/v1beta1/pods")).status_code == 200

    run_against(fresh, options, body)


def test_bearer_token(fresh: MemorySink, pki: dict[str, Any]) -> None:
    options = ApiOptions(listen_ip="127.0.0.1", port=0, token_file=pki["token"])

    async def body(url: str) -> None:
        async with httpx.AsyncClient() as client:
            path = url + "/apis/metrics.k8s.io/v1beta1/nodes"
            assert (await client.get(path, headers={"Authorization": "Bearer t0ken"})).status_code == 200
            assert (await client.get(path, headers={"Authorization": "Bearer nope"})).status_code == 401
            assert (await client.get(path)).status_code == 401

    run_against(fresh, options, body)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ApiOptions(tls_cert="/x.pem"), "go together"),
        (ApiOptions(tls_client_ca="/ca.pem"), "needs --tls_cert"),
        (ApiOptions(allowed_users=("a",)), "needs --tls_client_ca"),
        (ApiOptions(token_file="/nonexistent/token"), "not a readable file"),
    ],
)
def test_bad_serving_flags_are_named(options: ApiOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options.check()
