"""The public surface is deliberate: adding or dropping a name must show up in review."""

import heapster_columnar


def test_public_names_are_exactly_these() -> None:
    assert heapster_columnar.__all__ == [
        "POINTS_SCHEMA",
        "ClusterSpec",
        "ConfigError",
        "DecodeResult",
        "FaultSpec",
        "HeapsterColumnarError",
        "MetricBatch",
        "NodeScrapeError",
        "PayloadError",
        "SinkError",
        "SourceError",
        "StoreError",
        "__version__",
        "decode_summaries",
        "to_points",
    ]
    assert all(hasattr(heapster_columnar, name) for name in heapster_columnar.__all__)
    assert heapster_columnar.__version__ != "0+unknown"  # read from the installed metadata
