"""The log sink: one structured line per window (Heapster's printed every point; at 8 M points a
window that is a denial of service on the log pipeline, so we summarise)."""

from __future__ import annotations

import logging

import pyarrow.compute as pc

from heapster_columnar.config.uri import Uri
from heapster_columnar.model.window import Window

log = logging.getLogger("heapster_columnar.sinks.log")


class LogSink:
    name = "log"

    @classmethod
    def from_uri(cls, uri: Uri) -> LogSink:
        uri.check(())
        return cls()

    def write(self, window: Window) -> None:
        types = window.points.column("type")
        counts = pc.value_counts(types.cast("string").combine_chunks()).to_pylist()
        by_type = ",".join(f"{c['values']}={c['counts']}" for c in sorted(counts, key=lambda c: str(c["values"])))
        log.info(
            "window end=%s points=%d nodes=%d failed=%d partial=%s by_type=%s",
            window.end.isoformat(),
            window.points.num_rows,
            window.nodes,
            len(window.failures),
            window.partial,
            by_type,
        )

    def close(self) -> None:
        return None
