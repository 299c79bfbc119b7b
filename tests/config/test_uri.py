"""Source and sink URIs: Heapster's spelling, clear errors for everything else."""

from __future__ import annotations

import pytest

from heapster_columnar.config.uri import parse_uri
from heapster_columnar.errors import ConfigError


def test_heapster_source_uri() -> None:
    uri = parse_uri(
        "kubernetes.summary_api:https://kubernetes.default?kubeletHttps=true&kubeletPort=10250&useServiceAccount=true"
    )
    assert (uri.kind, uri.target, uri.scheme) == ("kubernetes.summary_api", "https://kubernetes.default", "https")
    assert uri.flag("kubeletHttps", False) is True
    assert uri.integer("kubeletPort", 10255) == 10250
    assert uri.flag("insecure", False) is False


def test_in_cluster_idiom_and_paths() -> None:
    assert parse_uri("kubernetes.summary_api:''").target == ""
    uri = parse_uri("parquet:/data/metrics?partition=hour&compression=zstd")
    assert (uri.target, dict(uri.options)) == ("/data/metrics", {"partition": "hour", "compression": "zstd"})


def test_environment_expansion() -> None:
    env = {"HOST": "influx.local", "DB": "k8s"}
    uri = parse_uri("influxdb:http://${HOST}:8086?db=$DB&user=$NOPE", environ=env)
    assert (uri.target, uri.options["db"], uri.options["user"]) == ("http://influx.local:8086", "k8s", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no-kind-here", "expected <kind>"),
        (":http://x", "expected <kind>"),
        ("influxdb:http://x?db=a&db=b", "'db' is given twice"),
        ("influxdb:http://x?db", "malformed options"),
    ],
)
def test_malformed_uris_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_uri(text)


def test_unknown_options_and_bad_values_are_named() -> None:
    uri = parse_uri("influxdb:http://x?db=k8s&retension=30d&withfields=maybe")
    with pytest.raises(ConfigError, match=r"unknown option 'retension'.*known: db, retention, withfields"):
        uri.check(["db", "retention", "withfields"])
    with pytest.raises(ConfigError, match="withfields='maybe' is not a boolean"):
        uri.flag("withfields", False)
    with pytest.raises(ConfigError, match="must be at least 1"):
        parse_uri("x:y?n=0").integer("n", 5, minimum=1)


def test_errors_never_show_passwords() -> None:
    uri = parse_uri("influxdb:http://root:s3cret@influx:8086?db=k8s&pw=hunter2&user=root")
    assert uri.redacted == "influxdb:http://root:***@influx:8086?db=k8s&pw=***&user=root"
    with pytest.raises(ConfigError) as failure:
        uri.check(["db"])
    assert "hunter2" not in str(failure.value) and "s3cret" not in str(failure.value)
