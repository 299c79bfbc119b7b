"""Self-metrics: one registry object handed to the components (no module globals), served later
as ``/metrics``. Names follow Heapster's where it had one (HEAPSTER.md §8.6)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)


class Telemetry:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.window_seconds = Histogram(
            "heapster_columnar_window_seconds", "Window end to all sinks done", buckets=_SECONDS, registry=r
        )
        self.scrape_seconds = Histogram(
            "heapster_columnar_scrape_seconds", "Scrape of every kubelet, per window", buckets=_SECONDS, registry=r
        )
        self.request_seconds = Histogram(
            "heapster_kubelet_summary_request_duration_seconds",
            "One kubelet /stats/summary request",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.stage_seconds = Histogram(
            "heapster_processor_duration_seconds", "Processor stage", ["processor"], buckets=_SECONDS, registry=r
        )
        self.sink_seconds = Histogram(
            "heapster_columnar_sink_seconds", "Sink write", ["sink"], buckets=_SECONDS, registry=r
        )
        self.sink_failures = Counter("heapster_columnar_sink_failures", "Failed sink writes", ["sink"], registry=r)
        self.dropped_points = Counter(
            "heapster_columnar_dropped_points", "Points a sink did not take", ["sink"], registry=r
        )
        self.node_request_seconds = Gauge(
            "heapster_columnar_kubelet_request_last_seconds",
            "The newest /stats/summary request to each node, sending to the last body byte",
            ["node"],
            registry=r,
        )
        self.sink_series = Gauge(
            "heapster_columnar_sink_series",
            "Distinct series a sink has written (InfluxDB's limit is 1 M per database by default)",
            ["sink"],
            registry=r,
        )
        self.nodes_failed = Counter(
            "heapster_columnar_nodes_failed", "Nodes that contributed nothing to a window", ["reason"], registry=r
        )
        self.windows = Counter("heapster_columnar_windows", "Windows completed", registry=r)
        self.partial_windows = Counter("heapster_columnar_partial_windows", "Windows missing some node", registry=r)
        self.points = Gauge("heapster_columnar_points", "Points in the newest window", registry=r)
        self.nodes = Gauge("heapster_columnar_nodes", "Nodes scraped in the newest window", registry=r)
        self.last_window = Gauge(
            "heapster_columnar_last_window_timestamp_seconds", "End of the newest completed window", registry=r
        )
        self.queue_depth = Gauge(
            "heapster_columnar_sink_queue_depth", "Windows queued in memory for a sink", ["sink"], registry=r
        )
        self.spool_bytes = Gauge(
            "heapster_columnar_sink_spool_bytes", "Bytes of windows spooled on disk for a sink", ["sink"], registry=r
        )
        self.sink_lag_seconds = Histogram(
            "heapster_columnar_sink_done_seconds",
            "From the window end to the sink having written it",
            ["sink"],
            buckets=_SECONDS,
            registry=r,
        )
