"""Sinks: where processed windows go (memory for the APIs, logs, Parquet, DuckDB, InfluxDB)."""
