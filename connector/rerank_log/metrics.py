"""The writer's counters as Prometheus metrics, read at scrape time.

    registry.register(RerankLogCollector(writer))

A collector instead of Counter objects: the writer keeps plain integers (incremented on the event loop,
no locks), and Prometheus reads them only when it scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connector.rerank_log.writer import RerankLogWriter


class RerankLogCollector(Collector):
    def __init__(self, writer: RerankLogWriter) -> None:
        self._writer = writer

    def collect(self) -> Iterator[Metric]:
        counters = self._writer.counters()
        yield CounterMetricFamily(
            "retrosearch_rerank_log_written",
            "Rerank events written to the rerank log.",
            value=counters.written,
        )
        dropped = CounterMetricFamily(
            "retrosearch_rerank_log_dropped",
            "Rerank events not logged, by reason: queue_full (or offered after shutdown), engine_error.",
            labels=["reason"],
        )
        dropped.add_metric(["queue_full"], counters.dropped_queue_full)
        dropped.add_metric(["engine_error"], counters.dropped_engine_error)
        yield dropped
        yield GaugeMetricFamily(
            "retrosearch_rerank_log_queued", "Rerank events waiting to be written.", value=self._writer.queued
        )
