"""The ``--source=kubernetes.summary_api:<url>?<options>`` flag, parsed once at start-up.

Every option Heapster accepts (HEAPSTER.md §3.1) is understood, plus our own kubelet access
options; anything else, or a value of the wrong form, is a one-line :class:`ConfigError` naming it,
raised before any I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from heapster_columnar.config.uri import Uri, parse_uri
from heapster_columnar.errors import ConfigError

__all__ = ["SERVICE_ACCOUNT_CA", "SERVICE_ACCOUNT_TOKEN", "SOURCE_KIND", "SummarySourceConfig"]

SOURCE_KIND = "kubernetes.summary_api"
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
SERVICE_ACCOUNT_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

KubeletMode = Literal["direct", "proxy"]

_HEAPSTER_OPTIONS = (
    "inClusterConfig",
    "insecure",
    "auth",
    "useServiceAccount",
    "kubeletPort",
    "kubeletHttps",
    "host_id_annotation",
)
_OUR_OPTIONS = ("kubeletMode", "caFile", "tokenFile", "concurrency", "timeout", "deadline")


@dataclass(frozen=True, slots=True, kw_only=True)
class SummarySourceConfig:
    """What the summary source was told to do (``from_uri`` is the only usual way in).

    ``url`` (the URI's URL part): API server address; empty means in-cluster discovery or the
    kubeconfig's server. Heapster options:

    - ``inClusterConfig`` (default true): use the pod's service account (token + CA); the URL
      host, if any, overrides the server address.
    - ``insecure`` (false): skip TLS verification, of the API server and of kubelets.
    - ``auth`` (""): kubeconfig file (its current context); only with ``inClusterConfig=false``.
    - ``useServiceAccount`` (false): send the service-account token file as bearer token.
    - ``kubeletPort`` (none): one port for every kubelet. **Deviation**: Heapster defaults to the
      read-only port 10255, which modern kubelets no longer open; we use each Node's
      ``status.daemonEndpoints.kubeletEndpoint.Port`` (normally 10250) unless a port is given.
    - ``kubeletHttps`` (true): https to kubelets. **Deviation**: Heapster's default is false, for
      the same read-only port; ``kubeletHttps=false`` is the opt-in plain-HTTP mode (no token sent
      over it, as Heapster).
    - ``host_id_annotation`` (""): Node annotation used as ``host_id`` when ``externalID`` is empty.

    Our options:

    - ``kubeletMode`` (direct): ``direct`` = each node's address; ``proxy`` = through the API
      server, ``/api/v1/nodes/{name}/proxy/stats/summary`` (one host: no per-node TLS or routes).
    - ``caFile`` (none): CA bundle for kubelet certificates; default the API server's CA.
    - ``tokenFile`` (none): bearer token file, re-read when it changes (projected tokens rotate);
      default the service-account token with ``useServiceAccount``, else the API credentials.
    - ``concurrency`` (64): requests in flight at once (and the connection pool size).
    - ``timeout`` (10): seconds one kubelet request may take, connect to last byte.
    - ``deadline`` (20, Heapster's fixed scrape timeout): seconds after a scrape starts at which
      the window goes on with what arrived; the rest count as failed ("deadline").
    """

    url: str = ""
    in_cluster_config: bool = True
    insecure: bool = False
    auth: str = ""
    use_service_account: bool = False
    kubelet_port: int | None = None
    kubelet_https: bool = True
    host_id_annotation: str = ""
    kubelet_mode: KubeletMode = "direct"
    ca_file: str | None = None
    token_file: str | None = None
    concurrency: int = 64
    timeout: float = 10.0
    deadline: float = 20.0

    @classmethod
    def from_uri(cls, text: str) -> SummarySourceConfig:
        """Parse a ``--source`` value (``kubernetes.summary_api:<url>?<options>``)."""
        uri = parse_uri(text)
        if uri.kind == "kubernetes":
            raise ConfigError(
                f"{text!r}: the legacy 'kubernetes' (cAdvisor) source is not supported; use {SOURCE_KIND}:<url>"
            )
        if uri.kind != SOURCE_KIND:
            raise ConfigError(f"{text!r}: unknown source kind {uri.kind!r} (known: {SOURCE_KIND})")
        uri.check((*_HEAPSTER_OPTIONS, *_OUR_OPTIONS))
        if uri.target:
            parts = urlsplit(uri.target)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"{uri.kind}: {uri.target!r} is not an http(s)://host[:port] URL")
            try:
                parts.port  # noqa: B018 - raises on a malformed port
            except ValueError:
                raise ConfigError(f"{uri.kind}: {uri.target!r} has a malformed port") from None
        mode = uri.options.get("kubeletMode") or "direct"
        if mode not in ("direct", "proxy"):
            raise ConfigError(f"{uri.kind}: option kubeletMode={mode!r} must be 'direct' or 'proxy'")
        in_cluster = uri.flag("inClusterConfig", True)
        auth = uri.options.get("auth", "")
        if auth and in_cluster:
            raise ConfigError(f"{uri.kind}: option auth={auth!r} needs inClusterConfig=false")
        port = uri.integer("kubeletPort", 0, minimum=1) if uri.options.get("kubeletPort") else None
        if port is not None and port > 65535:
            raise ConfigError(f"{uri.kind}: option kubeletPort={port} is not a port (1-65535)")
        config = cls(
            url=uri.target.rstrip("/"),
            in_cluster_config=in_cluster,
            insecure=uri.flag("insecure", False),
            auth=auth,
            use_service_account=uri.flag("useServiceAccount", False),
            kubelet_port=port,
            kubelet_https=uri.flag("kubeletHttps", True),
            host_id_annotation=uri.options.get("host_id_annotation", ""),
            kubelet_mode="proxy" if mode == "proxy" else "direct",
            ca_file=uri.options.get("caFile") or None,
            token_file=uri.options.get("tokenFile") or None,
            concurrency=uri.integer("concurrency", 64, minimum=1),
            timeout=_seconds(uri, "timeout", 10.0),
            deadline=_seconds(uri, "deadline", 20.0),
        )
        return config

    @property
    def effective_token_file(self) -> str | None:
        """The token file kubelet requests use, if any (``tokenFile``, else the service account's)."""
        if self.token_file:
            return self.token_file
        return SERVICE_ACCOUNT_TOKEN if self.use_service_account else None


def _seconds(uri: Uri, name: str, default: float) -> float:
    """A positive number of seconds: ``10``, ``2.5`` or ``10s``."""
    value = uri.options.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value.removesuffix("s"))
    except ValueError:
        raise ConfigError(f"{uri.kind}: option {name}={value!r} is not a number of seconds") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{uri.kind}: option {name}={value!r} must be a positive number of seconds")
    return number
