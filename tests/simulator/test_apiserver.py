"""The simulated API server, driven by the official kubernetes client; the store's selectors directly.

The server (and a kubelet stub for the proxy route) run in a background thread with their own event
loop; the tests change the store from the main thread, which is the cross-thread path the simulator
relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp import web
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from heapster_columnar.simulator.apiserver import GIT_VERSION, create_app, start_apiserver
from heapster_columnar.simulator.store import ObjectStore, field_selector, label_selector

TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KUBELET_TOKEN = "kubelet-secret"
T = TypeVar("T")


# --- objects shaped like the real ones (samples/kubelet/list-*-nri-minikube-v1.28-2023.yaml) --------


def node(name: str, ip: str) -> dict[str, Any]:
    info = dict.fromkeys(("bootID", "machineID", "systemUUID"), "0f1e2d3c")
    info |= {"architecture": "amd64", "operatingSystem": "linux", "osImage": "Ubuntu 22.04.3 LTS"}
    info |= {"containerRuntimeVersion": "containerd://1.7.13", "kernelVersion": "6.1.0"}
    info |= {"kubeletVersion": "v1.30.0", "kubeProxyVersion": "v1.30.0"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {
            "capacity": {"cpu": "4", "memory": "8039920Ki", "pods": "110"},
            "allocatable": {"cpu": "3900m", "memory": "7937520Ki", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": info,
        },
    }


def pod(namespace: str, name: str, node_name: str | None, labels: dict[str, str], cpu: str = "100m") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "registry.k8s.io/pause:3.9",
                "resources": {"requests": {"cpu": cpu, "memory": "70Mi"}, "limits": {"memory": "170Mi"}},
            }
        ],
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
    }
    status: dict[str, Any] = {"phase": "Pending", "qosClass": "Burstable"}
    if node_name is not None:
        spec["nodeName"] = node_name
        container = {"name": "main", "image": "registry.k8s.io/pause:3.9", "imageID": "", "ready": True}
        container |= {"restartCount": 2, "state": {"running": {"startedAt": "2023-11-10T06:19:00Z"}}}
        status |= {"phase": "Running", "startTime": "2023-11-10T06:18:55Z", "containerStatuses": [container]}
        status["conditions"] = [{"type": "Ready", "status": "True"}]
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name.rsplit("-", 1)[0], "uid": "b00e2de0"}
    meta = {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def namespace(name: str) -> dict[str, Any]:
    meta = {"name": name, "labels": {"kubernetes.io/metadata.name": name}}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta, "spec": {"finalizers": ["kubernetes"]}}


PODS = [
    pod("kube-system", "coredns-5dd5756b68-xmx7l", "node-1", {"k8s-app": "kube-dns"}),
    pod("shop", "web-7c9d-1", "node-1", {"app": "web", "tier": "frontend"}, cpu="250m"),
    pod("shop", "web-7c9d-2", "node-2", {"app": "web", "tier": "frontend"}, cpu="250m"),
    pod("shop", "db-0", "node-2", {"app": "db", "tier": "backend"}, cpu="1"),
    pod("default", "batch-0", None, {"app": "batch"}),
]


def fill(store: ObjectStore) -> None:
    for name in ("default", "kube-system", "shop"):
        store.add("namespaces", namespace(name))
    store.add("nodes", node("node-1", "127.0.0.1"))
    store.add("nodes", node("node-2", "127.0.0.2"))
    for p in PODS:
        store.add("pods", p)


# --- the running server ------------------------------------------------------------------------------


@dataclass
class Running:
    store: ObjectStore
    url: str
    kubelet_requests: list[tuple[str, str]]  # (path with query, Authorization header) seen by the stub


async def start_kubelet_stub(seen: list[tuple[str, str]]) -> tuple[web.AppRunner, int]:
    async def summary(request: web.Request) -> web.Response:
        seen.append((request.path_qs, request.headers.get("Authorization", "")))
        return web.json_response({"node": {"nodeName": "node-1"}, "pods": []})

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="Internal Error: failed to get node stats")

    app = web.Application()
    app.router.add_get("/stats/summary", summary)
    app.router.add_get("/pods", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


@contextlib.contextmanager
def serve(store: ObjectStore) -> Iterator[Running]:
    """The API server (and a kubelet stub) on 127.0.0.1 in a background event loop; closes all."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="apiserver-test", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    seen: list[tuple[str, str]] = []

    async def start() -> tuple[web.AppRunner, web.AppRunner, httpx.AsyncClient, int]:
        stub, stub_port = await start_kubelet_stub(seen)
        http = httpx.AsyncClient(headers={"Authorization": f"Bearer {KUBELET_TOKEN}"}, timeout=2)
        kubelets = {"node-1": f"http://127.0.0.1:{stub_port}", "node-2": "http://127.0.0.1:1"}
        app = create_app(store, token=TOKEN, kubelet_url=kubelets.get, http_client=http, bookmark_seconds=0.1)
        runner, port = await start_apiserver(app)
        return stub, runner, http, port

    async def stop() -> None:
        await runner.cleanup()
        await stub.cleanup()
        await http.aclose()
        await loop.shutdown_asyncgens()
        await loop.shutdown_default_executor()

    stub, runner, http, port = run(start())
    try:
        yield Running(store, f"http://127.0.0.1:{port}", seen)
    finally:
        run(stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


@pytest.fixture
def server() -> Iterator[Running]:
    store = ObjectStore(log_size=50)
    fill(store)
    with serve(store) as running:
        yield running


def configuration(url: str, token: str | None = TOKEN) -> client.Configuration:
    config = client.Configuration(host=url, api_key={"authorization": f"Bearer {token}"} if token else {})
    config.retries = False
    return config


@pytest.fixture
def api(server: Running) -> Iterator[client.ApiClient]:
    with client.ApiClient(configuration(server.url)) as api_client:
        yield api_client


@pytest.fixture
def v1(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def http(server: Running) -> Iterator[httpx.Client]:
    """A raw client, for what the typed one hides: the stream's lines, headers, plain-text bodies."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=5) as raw:
        yield raw


def status_of(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


# --- discovery, lists, gets --------------------------------------------------------------------------


def test_discovery_documents(api: client.ApiClient) -> None:
    assert client.VersionApi(api).get_code().git_version == GIT_VERSION
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    resources = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert set(resources) == {"namespaces", "nodes", "nodes/proxy", "pods"}
    assert resources["pods"].namespaced and resources["pods"].verbs == ["get", "list", "watch"]
    assert client.ApisApi(api).get_api_versions().groups == []


def test_lists_deserialize_into_typed_models(v1: client.CoreV1Api, server: Running) -> None:
    nodes = v1.list_node()
    assert [n.metadata.name for n in nodes.items] == ["node-1", "node-2"]
    assert nodes.items[0].status.node_info.kubelet_version == "v1.30.0"
    assert nodes.items[1].status.addresses[0].address == "127.0.0.2"
    assert nodes.items[0].status.allocatable["cpu"] == "3900m"
    assert [n.metadata.name for n in v1.list_namespace().items] == ["default", "kube-system", "shop"]
    pods = v1.list_pod_for_all_namespaces()
    assert [(p.metadata.namespace, p.metadata.name) for p in pods.items] == sorted(
        (p["metadata"]["namespace"], p["metadata"]["name"]) for p in PODS
    )
    db = next(p for p in pods.items if p.metadata.name == "db-0")
    assert db.spec.containers[0].resources.requests == {"cpu": "1", "memory": "70Mi"}
    assert db.status.container_statuses[0].restart_count == 2
    assert db.metadata.owner_references[0].kind == "ReplicaSet"
    assert db.metadata.creation_timestamp is not None and db.metadata.uid
    # one counter across kinds: 3 namespaces, 2 nodes, 5 pods
    assert pods.metadata.resource_version == str(server.store.resource_version) == "10"
    assert int(db.metadata.resource_version) == 9


def test_namespaced_list_and_get(v1: client.CoreV1Api) -> None:
    assert [p.metadata.name for p in v1.list_namespaced_pod("shop").items] == ["db-0", "web-7c9d-1", "web-7c9d-2"]
    assert v1.list_namespaced_pod("no-such-namespace").items == []
    assert v1.read_namespaced_pod("web-7c9d-1", "shop").spec.node_name == "node-1"
    assert v1.read_node("node-2").metadata.labels["kubernetes.io/hostname"] == "node-2"
    assert v1.read_namespace("kube-system").metadata.name == "kube-system"
    with pytest.raises(ApiException) as caught:
        v1.read_namespaced_pod("web-7c9d-1", "default")
    assert caught.value.status == 404
    body = status_of(caught.value)
    assert body["reason"] == "NotFound" and body["details"] == {"name": "web-7c9d-1", "kind": "pods"}


def test_field_and_label_selectors(v1: client.CoreV1Api) -> None:
    def names(**kwargs: str) -> list[str]:
        return [p.metadata.name for p in v1.list_pod_for_all_namespaces(**kwargs).items]

    assert names(field_selector="spec.nodeName=node-1") == ["coredns-5dd5756b68-xmx7l", "web-7c9d-1"]
    assert names(field_selector="spec.nodeName=") == ["batch-0"]  # unscheduled pods
    assert names(field_selector="spec.nodeName!=node-1,metadata.namespace=shop") == ["db-0", "web-7c9d-2"]
    assert names(field_selector="status.phase=Pending") == ["batch-0"]
    assert names(label_selector="app in (web, db),tier!=backend") == ["web-7c9d-1", "web-7c9d-2"]
    assert names(label_selector="!app") == ["coredns-5dd5756b68-xmx7l"]
    assert [n.metadata.name for n in v1.list_node(field_selector="metadata.name=node-2").items] == ["node-2"]
    with pytest.raises(ApiException) as caught:
        v1.list_pod_for_all_namespaces(field_selector="spec.hostname=x")
    assert caught.value.status == 400 and "field label not supported" in status_of(caught.value)["message"]


def test_paging_is_consistent_at_the_first_page_version(v1: client.CoreV1Api, server: Running) -> None:
    first = v1.list_pod_for_all_namespaces(limit=2)
    assert len(first.items) == 2 and first.metadata.remaining_item_count == 3
    rv = first.metadata.resource_version
    server.store.delete("pods", PODS[3])  # shop/db-0, on a later page; the list still shows it
    server.store.add("pods", pod("shop", "api-0", "node-1", {"app": "api"}))  # and not this one
    pages, token = [first], first.metadata._continue
    while token:
        pages.append(v1.list_pod_for_all_namespaces(limit=2, _continue=token))
        token = pages[-1].metadata._continue
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert {p.metadata.resource_version for p in pages} == {rv}
    names = [i.metadata.name for p in pages for i in p.items]
    assert names == ["batch-0", "coredns-5dd5756b68-xmx7l", "db-0", "web-7c9d-1", "web-7c9d-2"]
    assert "api-0" in [p.metadata.name for p in v1.list_pod_for_all_namespaces().items]


def test_continue_token_that_is_invalid_or_too_old_is_expired(v1: client.CoreV1Api, server: Running) -> None:
    for token in ("not-a-token", "eyJydiI6IDF9"):  # garbage; base64 of {"rv": 1} with no start key
        with pytest.raises(ApiException) as caught:
            v1.list_node(limit=1, _continue=token)
        assert caught.value.status == 410 and status_of(caught.value)["reason"] == "Expired"
    token = v1.list_node(limit=1).metadata._continue
    for i in range(60):  # more node changes than the log (50) keeps
        server.store.update("nodes", node("node-2", f"127.0.0.{i % 200 + 2}"))
    with pytest.raises(ApiException) as caught:
        v1.list_node(limit=1, _continue=token)
    assert caught.value.status == 410 and status_of(caught.value)["reason"] == "Expired"


# --- watch -------------------------------------------------------------------------------------------


def test_watch_sees_added_then_deleted_from_another_thread(v1: client.CoreV1Api, server: Running) -> None:
    rv = v1.list_namespaced_pod("shop").metadata.resource_version
    server.store.add("pods", pod("shop", "web-7c9d-3", "node-2", {"app": "web"}))  # after rv: replayed
    server.store.add("pods", pod("default", "other-0", "node-2", {"app": "web"}))  # other namespace: not seen
    seen: list[tuple[str, str, str]] = []
    w = watch.Watch()
    for event in w.stream(v1.list_namespaced_pod, "shop", resource_version=rv, timeout_seconds=5):
        obj = event["object"]
        assert isinstance(obj, client.V1Pod)
        seen.append((event["type"], obj.metadata.name, obj.metadata.resource_version))
        if event["type"] == "ADDED":
            server.store.delete("pods", event["raw_object"])  # the watch is waiting in the loop thread
        else:
            w.stop()
    assert [(t, n) for t, n, _ in seen] == [("ADDED", "web-7c9d-3"), ("DELETED", "web-7c9d-3")]
    assert int(seen[1][2]) > int(seen[0][2]) > int(rv)


def test_watch_translates_changes_across_the_selector(v1: client.CoreV1Api, server: Running) -> None:
    rv = v1.list_pod_for_all_namespaces().metadata.resource_version
    moved = pod("shop", "web-7c9d-1", "node-1", {"app": "web", "tier": "backend"})
    server.store.update("pods", moved)  # leaves tier=frontend: DELETED for this watch
    server.store.update("pods", pod("shop", "web-7c9d-1", "node-1", {"app": "web", "tier": "frontend"}))  # ADDED
    server.store.update("pods", pod("shop", "web-7c9d-2", "node-2", {"app": "web", "tier": "frontend"}))  # MODIFIED
    events = []
    w = watch.Watch()
    stream = w.stream(
        v1.list_pod_for_all_namespaces, label_selector="tier=frontend", resource_version=rv, timeout_seconds=5
    )
    for event in stream:
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 3:
            w.stop()
    assert events == [("DELETED", "web-7c9d-1"), ("ADDED", "web-7c9d-1"), ("MODIFIED", "web-7c9d-2")]


def test_watch_without_version_starts_with_current_state(v1: client.CoreV1Api) -> None:
    w = watch.Watch()
    names = []
    for event in w.stream(v1.list_node, timeout_seconds=5):
        names.append((event["type"], event["object"].metadata.name))
        if len(names) == 2:
            w.stop()
    assert names == [("ADDED", "node-1"), ("ADDED", "node-2")]


def test_watch_from_compacted_version_raises_410(v1: client.CoreV1Api, server: Running, http: httpx.Client) -> None:
    for i in range(60):
        server.store.update("namespaces", namespace("shop") | {"status": {"phase": f"Active{i}"}})
    with pytest.raises(ApiException) as caught:
        for _ in watch.Watch().stream(v1.list_namespace, resource_version="12", timeout_seconds=5):
            pytest.fail("no event expected before the error")
    assert caught.value.status == 410
    assert "Expired" in caught.value.reason and "too old resource version" in caught.value.reason
    # a pod watch from the same version is fine (each kind's log is bounded on its own): it idles
    params = {"watch": "1", "resourceVersion": "12", "allowWatchBookmarks": "1", "timeoutSeconds": "5"}
    with http.stream("GET", "/api/v1/pods", params=params) as response:
        assert json.loads(next(response.iter_lines()))["type"] == "BOOKMARK"


def test_bookmarks_carry_the_latest_version_and_the_stream_ends_at_its_timeout(
    server: Running, http: httpx.Client
) -> None:
    params = {"watch": "true", "resourceVersion": "10", "allowWatchBookmarks": "true", "timeoutSeconds": "1"}
    started = time.monotonic()
    with http.stream("GET", "/api/v1/namespaces/shop/pods", params=params) as response:
        assert response.headers["content-type"] == "application/json"
        lines = iter(response.iter_lines())
        first = json.loads(next(lines))
        server.store.add("nodes", node("node-3", "127.0.0.3"))  # another kind moves the version on
        rest = [json.loads(line) for line in lines]
    assert 0.9 < time.monotonic() - started < 3
    assert first["type"] == "BOOKMARK" and first["object"]["metadata"] == {"resourceVersion": "10"}
    assert {e["type"] for e in rest} == {"BOOKMARK"} and first["object"]["kind"] == "Pod"
    assert rest[-1]["object"]["metadata"]["resourceVersion"] == "11"


def test_send_initial_events_ends_with_a_marked_bookmark(http: httpx.Client) -> None:
    params = {"watch": "1", "sendInitialEvents": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "1"}
    with http.stream("GET", "/api/v1/nodes", params=params) as response:
        events = [json.loads(line) for _, line in zip(range(3), response.iter_lines(), strict=False)]
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [
        ("ADDED", "node-1"),
        ("ADDED", "node-2"),
        ("BOOKMARK", None),
    ]
    assert events[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_shutdown_ends_open_watches_at_once() -> None:
    store = ObjectStore()
    fill(store)
    with contextlib.ExitStack() as server_stack:
        running = server_stack.enter_context(serve(store))
        with (
            httpx.Client(base_url=running.url, headers=AUTH) as http,
            http.stream("GET", "/api/v1/pods", params={"watch": "1"}) as response,
        ):
            lines = response.iter_lines()
            assert json.loads(next(lines))["type"] == "ADDED"
            started = time.monotonic()
            server_stack.close()  # the server goes while the watch is open
            assert time.monotonic() - started < 2  # not the runner's 5 s shutdown timeout
            assert [json.loads(line)["type"] for line in lines] == ["ADDED"] * (len(PODS) - 1)


# --- auth and proxy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong"])
def test_wrong_or_missing_token_is_401(server: Running, token: str | None) -> None:
    with client.ApiClient(configuration(server.url, token)) as api_client, pytest.raises(ApiException) as caught:
        client.CoreV1Api(api_client).list_node()
    assert caught.value.status == 401 and status_of(caught.value)["reason"] == "Unauthorized"
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz").text == "ok"
        assert http.get("/version").status_code == 401


def test_proxy_forwards_to_the_kubelet(v1: client.CoreV1Api, server: Running, http: httpx.Client) -> None:
    response = v1.connect_get_node_proxy_with_path("node-1", "stats/summary", _preload_content=False)
    assert json.loads(response.data) == {"node": {"nodeName": "node-1"}, "pods": []}
    answer = http.get("/api/v1/nodes/node-1/proxy/stats/summary", params={"only_cpu_and_memory": "true"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    broken = http.get("/api/v1/nodes/node-1/proxy/pods")
    assert (broken.status_code, broken.text) == (500, "Internal Error: failed to get node stats")
    unknown = http.get("/api/v1/nodes/node-9/proxy/stats/summary")
    assert unknown.status_code == 404 and unknown.json()["reason"] == "NotFound"
    down = http.get("/api/v1/nodes/node-2/proxy/stats/summary")
    assert down.status_code == 503 and down.json()["reason"] == "ServiceUnavailable"
    assert http.get("/api/v1/secrets").json()["code"] == 404
    # the kubelet sees the API server's own credentials, never the caller's
    assert server.kubelet_requests == [
        ("/stats/summary", f"Bearer {KUBELET_TOKEN}"),
        ("/stats/summary?only_cpu_and_memory=true", f"Bearer {KUBELET_TOKEN}"),
    ]


def test_start_apiserver_refuses_addresses_outside_loopback() -> None:
    app = create_app(ObjectStore())
    for host in ("0.0.0.0", "10.0.0.1", "localhost", "::"):
        with pytest.raises(ValueError, match="127"):
            asyncio.run(start_apiserver(app, host=host))


# --- selectors ----------------------------------------------------------------------------------------

LABELS = {"metadata": {"labels": {"app": "web", "tier": "frontend", "example.com/team": "a"}}}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("app in (db, web)", True),
        ("app notin (web)", False),
        ("missing notin (web)", True),
        ("example.com/team", True),
        ("!example.com/team", False),
        ("!missing", True),
        ("app=web,tier in (backend)", False),
        (" app = web , tier ", True),
        ("app=", False),  # an empty value is valid: the label present and empty
    ],
)
def test_label_selector(selector: str, matches: bool) -> None:
    assert label_selector(selector)(LABELS) is matches


@pytest.mark.parametrize("selector", ["=web", "app in web", "app in (a", "a b", "app~web"])
def test_label_selector_rejects_bad_syntax(selector: str) -> None:
    with pytest.raises(ValueError):
        label_selector(selector)


def test_field_selector_knows_the_fields_of_each_kind() -> None:
    running = {"metadata": {"name": "p", "namespace": "n"}, "spec": {"nodeName": "a", "hostNetwork": True}}
    assert field_selector("pods", "spec.nodeName=a,metadata.name==p")(running)
    assert field_selector("pods", "spec.hostNetwork=true")(running)
    assert not field_selector("pods", "metadata.namespace!=n")(running)
    with pytest.raises(ValueError, match="not supported"):
        field_selector("nodes", "spec.nodeName=a")
