"""One thread per durable sink, so a slow or down sink never delays the pipeline or the others.

The manager hands each window to :meth:`SinkWorker.submit`, which never blocks. The worker writes
windows in order from a small in-memory queue; a window the sink cannot take now (a retryable
:class:`SinkError`, or the queue full because the sink is behind) goes to the sink's
:class:`~heapster_columnar.sinks.spool.Spool` and is replayed oldest first, with a growing pause
between attempts while the sink keeps failing. While the spool holds anything, new windows join
it behind the older ones, so the sink always receives windows in order. Without a spool (the log
sink), a window that cannot be queued or written is lost and counted, loudly.

A write that hangs cannot be interrupted from Python: past ``timeout`` it is reported once
(log, counter) and the windows behind it are spooled until the sink returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from heapster_columnar.errors import SinkError
from heapster_columnar.model.window import Window
from heapster_columnar.sinks.base import Sink, WriteResult
from heapster_columnar.sinks.spool import Spool
from heapster_columnar.telemetry import Telemetry

__all__ = ["SinkWorker"]

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 1.0, 60.0


@dataclass(slots=True)
class _Stop:
    deadline: float


class SinkWorker:
    """Drives one sink from its own thread; ``results`` keeps the newest outcomes (tests, CLI)."""

    def __init__(
        self,
        sink: Sink,
        *,
        telemetry: Telemetry,
        spool: Spool | None = None,
        queue_size: int = 2,
        timeout: float = 60.0,
        on_result: Callable[[Window, WriteResult], None] | None = None,
    ) -> None:
        self.sink, self.spool, self.timeout = sink, spool, timeout
        self.name = sink.name
        self._telemetry = telemetry
        self._queue: queue.Queue[Window | _Stop] = queue.Queue()
        self._queue_size = queue_size
        self._listeners: list[Callable[[Window, WriteResult], None]] = [on_result] if on_result else []
        self._retry_at = 0.0
        self._retry_pause = RETRY_FIRST
        self._writing: tuple[Window, float] | None = None
        self._hang_reported = False
        self._spool_dropped_seen = 0
        self.results: list[WriteResult] = []
        self._thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)
        self._thread.start()

    # -- the manager's side ------------------------------------------------------------------

    def add_listener(self, listener: Callable[[Window, WriteResult], None]) -> None:
        """Also call ``listener`` (from the sink's thread) with every write's outcome."""
        self._listeners.append(listener)

    def submit(self, window: Window) -> None:
        """Queue ``window``; spool it (or drop and count it, without a spool) if the sink is behind."""
        if self._queue.qsize() >= self._queue_size or self._hung():
            self._set_aside(window, "the sink is behind" if not self._hung() else "the sink is hanging")
        else:
            self._queue.put(window)
        self._telemetry.queue_depth.labels(sink=self.name).set(self._queue.qsize())

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued (up to ``timeout``), spool the rest, close the sink."""
        self._queue.put(_Stop(time.monotonic() + timeout))
        self._thread.join(timeout + 5)
        if self._thread.is_alive():
            log.error("sink %s: still writing at shutdown; its queued windows are in its spool", self.name)
            return
        try:
            self.sink.close()
        except Exception:
            log.exception("closing sink %s failed", self.name)

    def _hung(self) -> bool:
        writing = self._writing
        if writing is None or time.monotonic() - writing[1] < self.timeout:
            return False
        if not self._hang_reported:
            self._hang_reported = True
            self._telemetry.sink_failures.labels(sink=self.name).inc()
            log.error(
                "sink %s: writing window %s for over %g s; later windows go to its spool",
                self.name,
                writing[0].end.isoformat(),
                self.timeout,
            )
        return True

    # -- the worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        stop: _Stop | None = None
        while True:
            if self.spool is not None and len(self.spool):
                self._drain_queue_to_spool()
            item: Window | _Stop | None = None
            try:
                wait = max(self._retry_at - time.monotonic(), 0.0) if self._spooled() else None
                if stop is not None:
                    wait = 0.0
                item = self._queue.get(timeout=wait) if wait != 0.0 else self._queue.get_nowait()
            except queue.Empty:
                item = None
            if isinstance(item, _Stop):
                stop = item
                continue
            if item is not None:
                if self._spooled():
                    self._set_aside(item, None)  # behind older spooled windows
                    continue
                self._attempt(item, fresh=True)
            elif self._spooled() and time.monotonic() >= self._retry_at:
                if not self._replay_one() and stop is not None:
                    break  # the sink still fails: the spool keeps the rest for the next run
            elif stop is not None:
                break
            if stop is not None and time.monotonic() > stop.deadline:
                self._drain_queue_to_spool()
                break
        self._telemetry.queue_depth.labels(sink=self.name).set(0)

    def _spooled(self) -> bool:
        return self.spool is not None and len(self.spool) > 0

    def _drain_queue_to_spool(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Stop):
                self._queue.put(item)  # keep the stop request for the loop
                return
            self._set_aside(item, None)

    def _replay_one(self) -> bool:
        """Try the oldest spooled window; False while the sink still fails (it stays spooled)."""
        assert self.spool is not None
        found = self.spool.oldest()
        if found is None:
            return True
        entry, window = found
        outcome = self._attempt(window)
        if outcome == "retry":
            return False
        self.spool.remove(entry)  # written, or refused for good (counted as lost by _attempt)
        self._update_spool_gauge()
        return True

    def _attempt(self, window: Window, *, fresh: bool = False) -> str:
        """Write one window: "ok", "retry" (retryable failure; a fresh window is spooled) or
        "refused" (lost, logged and counted)."""
        started = time.monotonic()
        self._writing = (window, started)
        error: str | None = None
        retryable = False
        try:
            self.sink.write(window)
        except SinkError as exc:
            error, retryable = str(exc), exc.retryable
        except Exception as exc:  # a bug or an unexpected library error: the window is not lost yet
            error, retryable = f"{type(exc).__name__}: {exc}", True
        finally:
            self._writing = None
            self._hang_reported = False
        seconds = time.monotonic() - started
        t = self._telemetry
        t.sink_seconds.labels(sink=self.name).observe(seconds)
        result = WriteResult(self.name, window.points.num_rows, seconds, error)
        self.results = [*self.results[-19:], result]
        for listener in self._listeners:
            listener(window, result)
        if error is None:
            self._retry_pause, self._retry_at = RETRY_FIRST, 0.0
            return "ok"
        t.sink_failures.labels(sink=self.name).inc()
        if retryable and self.spool is not None:
            self._retry_at = time.monotonic() + self._retry_pause
            log.warning(
                "sink %s: window %s not written (%s); kept in the spool, next attempt in %g s",
                self.name,
                window.end.isoformat(),
                error,
                self._retry_pause,
            )
            self._retry_pause = min(self._retry_pause * 2, RETRY_MAX)
            if fresh:
                self._set_aside(window, None)
            return "retry"
        self._lose(window, error)
        return "refused"

    def _set_aside(self, window: Window, why: str | None) -> None:
        if self.spool is None:
            self._lose(window, why or "no spool")
            return
        try:
            self.spool.add(window)
        except SinkError as exc:
            self._lose(window, str(exc))
            return
        if why:
            log.warning("sink %s: window %s spooled: %s", self.name, window.end.isoformat(), why)
        self._update_spool_gauge()

    def _update_spool_gauge(self) -> None:
        if self.spool is None:
            return
        t = self._telemetry
        t.spool_bytes.labels(sink=self.name).set(self.spool.bytes)
        dropped = self.spool.dropped_points - self._spool_dropped_seen
        if dropped:
            t.dropped_points.labels(sink=self.name).inc(dropped)
            self._spool_dropped_seen = self.spool.dropped_points

    def _lose(self, window: Window, error: str) -> None:
        self._telemetry.dropped_points.labels(sink=self.name).inc(window.points.num_rows)
        log.error(
            "sink %s LOST window %s (%d points): %s", self.name, window.end.isoformat(), window.points.num_rows, error
        )
