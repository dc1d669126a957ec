"""The rerank log: one event per rerank request and one record per document, written in the background to
OpenSearch or Elasticsearch so that Dashboards / Kibana and the explorer page can show what the reranker
did. See docs/observability.md.

The connector needs only this::

    log_metrics = RerankLogMetrics(registry)    # the counts as Prometheus metrics (serve --workers adds up)
    writer = RerankLogWriter(settings, observer=log_metrics.observe)  # settings: RerankLogSettings
    await writer.start()
    writer.submit(RerankEvent(..., documents=outcomes_from_ranking(result.ranking)))
    writer.counters()                           # written / dropped_queue_full / dropped_engine_error
    await writer.stop()
"""

from connector.rerank_log.install import InstallReport, RetentionStatus
from connector.rerank_log.metrics import RerankLogMetrics
from connector.rerank_log.records import DocumentOutcome, RerankEvent, outcomes_from_ranking
from connector.rerank_log.writer import LogCounters, RerankLogWriter
from retrostar_search.rerank_log.settings import DEFAULT_LOG_INDEX, RerankLogSettings

__all__ = [
    "DEFAULT_LOG_INDEX",
    "DocumentOutcome",
    "InstallReport",
    "LogCounters",
    "RerankEvent",
    "RerankLogMetrics",
    "RerankLogSettings",
    "RerankLogWriter",
    "RetentionStatus",
    "outcomes_from_ranking",
]
