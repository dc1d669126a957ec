"""Prometheus metrics, in a registry of each app's own (so several apps in one process, as in tests, never
share counters), and the middleware that counts every request by route and status.

Under `retrosearch serve --workers N` every worker process writes its values to the folder named by
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, which `serve` sets up), and /metrics, in
whichever worker answers it, adds up all of them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from retrostar_search.cache import CacheObserver
from retrostar_search.reranker import RerankResult

# From a cached 10-document rerank (milliseconds) to a request that runs into Elasticsearch's 30 s limit.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 25, 30, 60)
_UNMATCHED_ROUTE = "unmatched"  # unknown paths share one label, so scanners cannot grow the series
# RerankResult's counts that /metrics adds up as they are: the attribute, the metric, its help.
_RESULT_COUNTERS = (
    ("pairs_scored", "retrosearch_pairs_scored", "(query, document) pairs scored by the model."),
    ("cache_hits", "retrosearch_cache_hits", "Pairs served from the score cache."),
    ("backend_errors", "retrosearch_backend_errors", "Pairs the backend failed to score."),
    (
        "unparsed_samples",
        "retrosearch_unparsed_samples",
        "Samples without a score (cut at the token limit or no <score>): counted per the unparsed policy, "
        "never cached.",
    ),
    (
        "truncated_documents",
        "retrosearch_truncated_documents",
        "Documents cut to fit the served context (or a set budget).",
    ),
    (
        "retried_pairs",
        "retrosearch_retried_pairs",
        "Pairs sent a second time after a failed request or an aborted generation.",
    ),
    (
        "aborted_pairs",
        "retrosearch_aborted_pairs",
        "Pairs left unscored because the server aborted their generation twice.",
    ),
    (
        "inflight_joins",
        "retrosearch_inflight_joins",
        "Pairs a rerank took from another rerank that was already scoring them.",
    ),
)


class ConnectorMetrics(CacheObserver):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        def counter(name: str, documentation: str, *labels: str) -> Counter:
            return Counter(name, documentation, labels, registry=self.registry)

        def latency(name: str, documentation: str, *labels: str) -> Histogram:
            return Histogram(name, documentation, labels, buckets=_LATENCY_BUCKETS, registry=self.registry)

        self.requests = counter(
            "retrosearch_requests", "HTTP requests by route and status.", "route", "status"
        )
        self.request_seconds = latency(
            "retrosearch_request_duration_seconds", "HTTP request latency by route.", "route"
        )
        self.in_flight = Gauge(
            "retrosearch_rerank_in_flight",
            "Rerank requests being served now.",
            multiprocess_mode="livesum",  # all workers together
            registry=self.registry,
        )
        self.documents = counter("retrosearch_documents", "Documents received in rerank requests.")
        self.result_counters = {
            attribute: counter(name, documentation) for attribute, name, documentation in _RESULT_COUNTERS
        }
        self.cache_store_hits = counter(
            "retrosearch_cache_store_hits",
            "Pairs found in a score-cache store (sqlite, redis) after missing the memory cache.",
            "store",
        )
        self.cache_errors = counter(
            "retrosearch_cache_errors",
            "Failed score-cache store operations (get, put); the rerank goes on without the store.",
            "store",
            "operation",
        )
        self.degraded = counter(
            "retrosearch_degraded_responses",
            "Rerank responses with unscored documents, by reason (deadline or backend_error).",
            "reason",
        )
        self.unscored = counter(
            "retrosearch_unscored_documents",
            "Documents answered without a score because of a degraded rerank.",
        )
        self.samples = counter(
            "retrosearch_samples",
            "Samples the model generated, by finish reason (stop, length or abort).",
            "finish_reason",
        )
        self.deadline_pairs = counter(
            "retrosearch_deadline_pairs",
            "Pairs still being generated when a deadline passed, by what was done (--on-deadline: abort, "
            "or finish in the background).",
            "action",
        )
        self.background_pairs = counter(
            "retrosearch_background_pairs",
            "Pairs finished in the background after a deadline, by outcome (cached, or not_cached: failed "
            "or without a cacheable score).",
            "outcome",
        )
        self.model_seconds = latency(
            "retrosearch_model_duration_seconds", "Time a rerank spent waiting for the backend."
        )

    def exposition(self) -> bytes:
        """The text /metrics answers: this app's metrics, or every worker's added up under `serve --workers`.

        The rerank log's metrics are read from its writer in this process, so they are left out of the
        added-up answer (each worker logs on its own)."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        workers = CollectorRegistry()
        MultiProcessCollector(workers)
        return generate_latest(workers)

    def store_hits(self, store: str, pairs: int) -> None:
        self.cache_store_hits.labels(store).inc(pairs)

    def store_failed(self, store: str, operation: str) -> None:
        self.cache_errors.labels(store, operation).inc()

    def record_rerank(self, documents: int, result: RerankResult) -> None:
        self.documents.inc(documents)
        self.model_seconds.observe(result.model_seconds)
        for finish_reason, count in result.finish_reasons.items():
            self.samples.labels(finish_reason.value).inc(count)
        for attribute, counter in self.result_counters.items():
            counter.inc(getattr(result, attribute))
        for action, count in result.deadline_pairs.items():
            self.deadline_pairs.labels(action.value).inc(count)
        if result.degraded:
            self.degraded.labels("deadline" if result.deadline_exceeded else "backend_error").inc()
            self.unscored.inc(result.unscored)

    def record_background_finish(self, cached: bool) -> None:
        self.background_pairs.labels("cached" if cached else "not_cached").inc()


class RequestMetricsMiddleware:
    """Counts every HTTP request, including those refused before a route runs (401, 413, 422, 429)."""

    def __init__(self, app: ASGIApp, metrics: ConnectorMetrics, routes: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else _UNMATCHED_ROUTE
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
