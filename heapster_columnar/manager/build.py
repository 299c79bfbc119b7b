"""The only place that turns run options into live components (source, state, pipeline, sinks).

Everything is validated before any I/O: a bad ``--source`` or ``--sink`` URI, an unknown option
or an unusable flag value is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from heapster_columnar.manager.clock import check_resolution
from heapster_columnar.manager.loop import Manager
from heapster_columnar.model.labels import LabelCopier
from heapster_columnar.processors.chain import Pipeline
from heapster_columnar.sinks.base import Sink
from heapster_columnar.sinks.memory import MemorySink
from heapster_columnar.sinks.registry import build_sink
from heapster_columnar.sources.config import SummarySourceConfig
from heapster_columnar.telemetry import Telemetry


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    source: str
    sinks: Sequence[str] = ()
    resolution: timedelta = timedelta(seconds=60)
    offset: timedelta = timedelta(seconds=5)
    sink_timeout: timedelta = timedelta(seconds=20)
    label_separator: str = ","
    store_labels: Sequence[str] = ()
    ignore_labels: Sequence[str] = ()
    disable_metric_sink: bool = False


@dataclass(slots=True)
class Collector:
    """Live components; ``close()`` (or ``async with``) releases threads and connections."""

    manager: Manager
    memory: MemorySink | None
    state: Any  # sources.cluster_state.ClusterState
    scraper: Any  # sources.kubelet.KubeletScraper
    telemetry: Telemetry
    sinks: list[Sink] = field(default_factory=list)

    async def aclose(self) -> None:
        await self.scraper.aclose()
        self.state.close()


def check(config: RunConfig) -> tuple[SummarySourceConfig, list[Sink], LabelCopier]:
    """Every option, validated without I/O (the CLI calls this before starting anything)."""
    check_resolution(config.resolution)
    source = SummarySourceConfig.from_uri(config.source)
    sinks = [build_sink(text) for text in config.sinks]
    labels = LabelCopier(separator=config.label_separator, store=config.store_labels, ignore=config.ignore_labels)
    return source, sinks, labels


def build(config: RunConfig, *, telemetry: Telemetry | None = None) -> Collector:
    from heapster_columnar.sources.cluster_state import ClusterState, api_client
    from heapster_columnar.sources.kubelet import KubeletScraper

    source, sinks, labels = check(config)
    memory = None
    if not config.disable_metric_sink and not any(isinstance(s, MemorySink) for s in sinks):
        memory = MemorySink()
        sinks.insert(0, memory)
    api = api_client(
        kubeconfig=source.auth or None,
        in_cluster=source.in_cluster_config,
        url=source.url or None,
        insecure=source.insecure,
    )
    settings = api.configuration
    keys = settings.api_key or {}  # the client keeps it as "BearerToken" (kubeconfig) or "authorization"
    bearer = keys.get("BearerToken") or keys.get("authorization") or ""
    token = bearer.removeprefix("Bearer ").strip() or None
    state = ClusterState(api, host_id_annotation=source.host_id_annotation)
    scraper = KubeletScraper(source, api_url=settings.host, api_token=token, ca_file=settings.ssl_ca_cert)
    telemetry = telemetry or Telemetry()
    manager = Manager(
        scraper=scraper,
        dimensions=state.snapshot,
        pipeline=Pipeline.heapster(labels),
        sinks=sinks,
        resolution=config.resolution,
        offset=config.offset,
        scrape_deadline=timedelta(seconds=source.deadline),
        sink_timeout=config.sink_timeout,
        telemetry=telemetry,
    )
    state.start()
    return Collector(manager, memory, state, scraper, telemetry, sinks)
