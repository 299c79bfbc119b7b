"""The only place that turns run options into live components (source, state, pipeline, sinks).

Everything is validated before any I/O: a bad ``--source`` or ``--sink`` URI, an unknown option
or an unusable flag value is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from heapster_columnar.errors import ConfigError
from heapster_columnar.manager.clock import check_resolution
from heapster_columnar.manager.loop import Manager
from heapster_columnar.model.labels import LabelCopier
from heapster_columnar.model.window import Window
from heapster_columnar.processors.chain import Pipeline
from heapster_columnar.sinks.base import Sink, WriteResult
from heapster_columnar.sinks.log import LogSink
from heapster_columnar.sinks.memory import MemorySink
from heapster_columnar.sinks.registry import build_sink
from heapster_columnar.sinks.spool import Spool
from heapster_columnar.sinks.worker import SinkWorker
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
    spool_dir: Path = field(default_factory=lambda: default_spool_dir())
    spool_max_bytes: int = 1 << 30
    sink_queue: int = 2  # windows a durable sink may have queued in memory before the spool takes them


def default_spool_dir() -> Path:
    """``$XDG_STATE_HOME/heapster-columnar/spool`` (``~/.local/state/...``): survives restarts."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "heapster-columnar" / "spool"


INLINE_SINKS = (MemorySink, LogSink)  # in-process and quick: written before the window is handed on


@dataclass(slots=True)
class Collector:
    """Live components; ``close()`` (or ``async with``) releases threads and connections."""

    manager: Manager
    memory: MemorySink | None
    state: Any  # sources.cluster_state.ClusterState
    scraper: Any  # sources.kubelet.KubeletScraper
    telemetry: Telemetry
    sinks: list[Sink] = field(default_factory=list)
    history: Any = None  # api.history.ParquetHistory over the first Parquet sink's store, if any

    async def aclose(self) -> None:
        await self.scraper.aclose()
        self.state.close()


def check(config: RunConfig) -> tuple[SummarySourceConfig, list[tuple[str, Sink]], LabelCopier]:
    """Every option, validated without I/O (the CLI calls this before starting anything)."""
    check_resolution(config.resolution)
    if config.spool_max_bytes <= 0:
        raise ConfigError(f"--spool_max_size must be positive, not {config.spool_max_bytes}")
    if config.sink_queue < 1:
        raise ConfigError(f"--sink_queue must be at least 1, not {config.sink_queue}")
    source = SummarySourceConfig.from_uri(config.source)
    sinks = [(text, build_sink(text)) for text in config.sinks]
    labels = LabelCopier(separator=config.label_separator, store=config.store_labels, ignore=config.ignore_labels)
    return source, sinks, labels


def build(config: RunConfig, *, telemetry: Telemetry | None = None) -> Collector:
    from heapster_columnar.sources.cluster_state import ClusterState, api_client
    from heapster_columnar.sources.kubelet import KubeletScraper

    source, configured, labels = check(config)
    sinks = [sink for _, sink in configured if isinstance(sink, INLINE_SINKS)]
    memory = next((s for s in sinks if isinstance(s, MemorySink)), None)
    if not config.disable_metric_sink and memory is None:
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
    workers = [
        _worker(text, sink, config, telemetry) for text, sink in configured if not isinstance(sink, INLINE_SINKS)
    ]
    manager = Manager(
        scraper=scraper,
        dimensions=state.snapshot,
        pipeline=Pipeline.heapster(labels),
        sinks=sinks,
        workers=workers,
        resolution=config.resolution,
        offset=config.offset,
        scrape_deadline=timedelta(seconds=source.deadline),
        sink_timeout=config.sink_timeout,
        telemetry=telemetry,
    )
    state.start()
    durable = [w.sink for w in workers]
    return Collector(manager, memory, state, scraper, telemetry, [*sinks, *durable], _history(durable))


def _history(sinks: Sequence[Sink]) -> Any:
    """What the model API reads for ranges older than memory: the first Parquet sink's points, else
    the first DuckDB sink's snapshot."""
    from heapster_columnar.api.history import DuckDBHistory, ParquetHistory
    from heapster_columnar.sinks._parquet_fs import open_store
    from heapster_columnar.sinks.duckdb import DuckDBSink
    from heapster_columnar.sinks.parquet import ParquetSink

    for sink in sinks:
        if isinstance(sink, ParquetSink):
            store = open_store(sink.config.target, fsync=False)
            return ParquetHistory(store.fs, store.path("points"))
    for sink in sinks:
        if isinstance(sink, DuckDBSink) and sink.config.snapshot:
            return DuckDBHistory(sink.snapshot_path)
    return None


def _worker(text: str, sink: Sink, config: RunConfig, telemetry: Telemetry) -> SinkWorker:
    """A durable sink on its own thread, with a spool directory of its own (two InfluxDB sinks
    with different URIs never share one; the same URI after a restart finds its backlog)."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    spool = Spool(config.spool_dir / f"{sink.name}-{digest}", max_bytes=config.spool_max_bytes, sink=sink.name)

    def done(window: Window, result: WriteResult) -> None:
        if result.ok:
            telemetry.sink_lag_seconds.labels(sink=sink.name).observe(max(time.time() - window.end.timestamp(), 0))
        series = getattr(sink, "series", None)  # the InfluxDB sink's cardinality count
        if isinstance(series, int):
            telemetry.sink_series.labels(sink=sink.name).set(series)

    return SinkWorker(
        sink,
        telemetry=telemetry,
        spool=spool,
        queue_size=config.sink_queue,
        timeout=config.sink_timeout.total_seconds(),
        on_result=done,
    )
