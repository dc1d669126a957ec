"""The writer's counts as Prometheus metrics:

    log_metrics = RerankLogMetrics(registry)
    writer = RerankLogWriter(settings, observer=log_metrics.observe)
    ...
    log_metrics.unregister()

Counter and Gauge objects, not a collector read at scrape time: under `serve --workers` only what
prometheus-client writes to its multiprocess folder is added up across the workers, and a collector's
values never reach that folder (the rerank-log metrics were missing from /metrics there). The writer keeps
its plain integers (no locks on the event loop) and reports each change; this turns them into increments.
"""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import CollectorRegistry, Counter, Gauge

from connector.rerank_log.writer import LogCounters

_DROP_REASONS = ("queue_full", "engine_error")


class RerankLogMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self.written = Counter(
            "retrosearch_rerank_log_written", "Rerank events written to the rerank log.", registry=registry
        )
        self.dropped = Counter(
            "retrosearch_rerank_log_dropped",
            "Rerank events not logged, by reason: queue_full (or offered after shutdown), engine_error.",
            ["reason"],
            registry=registry,
        )
        for reason in _DROP_REASONS:  # both series from the start, at 0
            self.dropped.labels(reason)
        self.queued = Gauge(
            "retrosearch_rerank_log_queued",
            "Rerank events waiting to be written.",
            multiprocess_mode="livesum",  # all workers together
            registry=registry,
        )
        self._seen = LogCounters()

    def observe(self, totals: LogCounters, queued: int) -> None:
        """The writer's counts after a change: the differences since the last call go to the counters."""
        increments = (
            (self.written, totals.written - self._seen.written),
            (self.dropped.labels("queue_full"), totals.dropped_queue_full - self._seen.dropped_queue_full),
            (
                self.dropped.labels("engine_error"),
                totals.dropped_engine_error - self._seen.dropped_engine_error,
            ),
        )
        for counter, increment in increments:
            if increment:
                counter.inc(increment)
        self._seen = replace(totals)
        self.queued.set(queued)

    def unregister(self) -> None:
        """Take the metrics out of the registry (a second lifespan of the same app registers new ones)."""
        for metric in (self.written, self.dropped, self.queued):
            self._registry.unregister(metric)
