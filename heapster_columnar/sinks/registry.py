"""``--sink`` URIs to sink objects: Heapster's ``kind:target?options`` form, one module per kind.

Kinds are imported only when used (DuckDB's module is not free to import).
"""

from __future__ import annotations

import importlib

from heapster_columnar.config.uri import parse_uri
from heapster_columnar.errors import ConfigError
from heapster_columnar.sinks.base import Sink

__all__ = ["SINK_KINDS", "build_sink"]

SINK_KINDS: dict[str, str] = {
    "log": "heapster_columnar.sinks.log:LogSink",
    "memory": "heapster_columnar.sinks.memory:MemorySink",
    "parquet": "heapster_columnar.sinks.parquet:ParquetSink",
    "duckdb": "heapster_columnar.sinks.duckdb:DuckDBSink",
    "influxdb": "heapster_columnar.sinks.influxdb:InfluxDBSink",
}


def build_sink(text: str) -> Sink:
    """The sink for one ``--sink`` value; a ConfigError names a bad kind or option (no I/O here)."""
    uri = parse_uri(text) if ":" in text else parse_uri(f"{text}:")
    where = SINK_KINDS.get(uri.kind)
    if where is None:
        raise ConfigError(f"--sink {text!r}: unknown sink kind {uri.kind!r} (available: {', '.join(SINK_KINDS)})")
    module, _, name = where.partition(":")
    cls = getattr(importlib.import_module(module), name)
    sink: Sink = cls.from_uri(uri)
    return sink
