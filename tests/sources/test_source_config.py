"""``--source=kubernetes.summary_api:...`` parsing: Heapster's options, ours, and one-line errors."""

from __future__ import annotations

import pytest

from heapster_columnar.errors import ConfigError
from heapster_columnar.sources.config import SERVICE_ACCOUNT_TOKEN, SummarySourceConfig

HEAPSTER_EXAMPLE = (
    "kubernetes.summary_api:https://kubernetes.default?kubeletHttps=true&kubeletPort=10250"
    "&useServiceAccount=true&inClusterConfig=false&auth=/path/kubeconfig&insecure=false"
)


def test_heapster_example_parses() -> None:
    config = SummarySourceConfig.from_uri(HEAPSTER_EXAMPLE)
    assert config == SummarySourceConfig(
        url="https://kubernetes.default",
        in_cluster_config=False,
        insecure=False,
        auth="/path/kubeconfig",
        use_service_account=True,
        kubelet_port=10250,
        kubelet_https=True,
    )
    assert config.effective_token_file == SERVICE_ACCOUNT_TOKEN


def test_defaults() -> None:
    config = SummarySourceConfig.from_uri("kubernetes.summary_api:''")
    assert config.url == "" and config.in_cluster_config and not config.insecure
    assert config.kubelet_port is None and config.kubelet_https and config.kubelet_mode == "direct"
    assert (config.concurrency, config.timeout, config.deadline) == (64, 10.0, 20.0)
    assert config.effective_token_file is None


def test_our_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CA", "/etc/kubelet-ca.crt")
    config = SummarySourceConfig.from_uri(
        "kubernetes.summary_api:https://10.0.0.1:6443/?kubeletMode=proxy&caFile=${CA}&tokenFile=/t"
        "&concurrency=128&timeout=2.5&deadline=15s&host_id_annotation=example.com/id&kubeletHttps=false"
    )
    assert config.url == "https://10.0.0.1:6443"
    assert config.kubelet_mode == "proxy" and config.ca_file == "/etc/kubelet-ca.crt"
    assert config.token_file == config.effective_token_file == "/t"
    assert (config.concurrency, config.timeout, config.deadline) == (128, 2.5, 15.0)
    assert config.host_id_annotation == "example.com/id" and not config.kubelet_https


@pytest.mark.parametrize(
    ("uri", "named"),
    [
        ("kubernetes.summary_api:''?kubeletPrt=10250", "kubeletPrt"),
        ("kubernetes.summary_api:''?insecure=maybe", "insecure"),
        ("kubernetes.summary_api:''?kubeletHttps=yes please", "kubeletHttps"),
        ("kubernetes.summary_api:''?kubeletPort=http", "kubeletPort"),
        ("kubernetes.summary_api:''?kubeletPort=70000", "kubeletPort"),
        ("kubernetes.summary_api:''?concurrency=0", "concurrency"),
        ("kubernetes.summary_api:''?timeout=-1", "timeout"),
        ("kubernetes.summary_api:''?deadline=soon", "deadline"),
        ("kubernetes.summary_api:''?kubeletMode=ssh", "kubeletMode"),
        ("kubernetes.summary_api:''?auth=/k", "auth"),
        ("kubernetes.summary_ap:https://x", "kubernetes.summary_ap"),
        ("kubernetes:https://kubernetes.default", "kubernetes"),
        ("kubernetes.summary_api:kubernetes.default", "kubernetes.default"),
        ("kubernetes.summary_api:https://host:port", "port"),
        ("summary_api", "summary_api"),
    ],
)
def test_errors_name_the_culprit(uri: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        SummarySourceConfig.from_uri(uri)
    assert "\n" not in str(caught.value)
