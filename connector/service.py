"""One rerank request's policy, independent of its wire shape: limits, the task, the deadline, strictness,
metrics, the log line and the rerank-log event. HTTP-free: refusals and strict failures are the core's
domain errors, which connector/errors.py answers with their statuses."""

from __future__ import annotations

import logging
import time

from connector.limits import RequestGate, check_request
from connector.metrics import ConnectorMetrics
from connector.outcomes import RecentOutcomes
from connector.rerank_log import RerankEvent, RerankLogWriter, outcomes_from_ranking
from connector.schemas import RerankRequestBase, TaskOverride
from connector.settings import ConnectorSettings
from retrostar_search.engines.search import degradation_reason
from retrostar_search.errors import BackendError, DeadlineExceeded, InvalidInput, RetrostarError
from retrostar_search.reranker import Reranker, RerankResult
from retrostar_search.tasks import TaskDefinition, UnknownTaskError, resolve_task

logger = logging.getLogger(__name__)


class RerankService:
    """Built once at startup; shared by every request."""

    def __init__(
        self,
        settings: ConnectorSettings,
        reranker: Reranker,
        metrics: ConnectorMetrics,
        rerank_log: RerankLogWriter | None = None,
    ) -> None:
        self.settings = settings
        self.reranker = reranker
        self.metrics = metrics
        self.rerank_log = rerank_log
        self.gate = RequestGate(settings.max_concurrent_requests, on_change=metrics.in_flight.set)
        self.default_task = settings.task_definition()
        self.outcomes = RecentOutcomes()
        # What the reranker does beyond a request's answer is counted too: the cache's stores, and pairs
        # that finish in the background.
        if reranker.cache is not None:
            reranker.cache.observer = metrics
        reranker.on_background_finish = metrics.record_background_finish

    @property
    def model(self) -> str:
        return self.reranker.backend.model

    async def rerank(self, request: RerankRequestBase, request_id: str, received_at: float) -> RerankResult:
        """Rerank the request's candidates once it is within the limits and one of the slots is free;
        `received_at` is the `time.perf_counter()` at which the request arrived, for the rerank log's
        latency split."""
        candidates = request.candidates
        check_request(request.query, request.task, candidates, self.settings)
        task = self._task(request.task)
        deadline = self.settings.deadline_seconds(request.deadline)
        async with self.gate.admit():
            scoring_started = time.perf_counter()
            result = await self.reranker.rerank(
                request.query, candidates, task=task, deadline=deadline, explain=request.return_explanations
            )
        finished = time.perf_counter()
        self.metrics.record_rerank(len(candidates), result)
        self.outcomes.record(request.query, candidates, result, request_id, degradation_reason(result))
        self._log(request_id, len(candidates), result)
        if self.rerank_log is not None:
            queue_seconds, total_seconds = scoring_started - received_at, finished - received_at
            self._submit_event(request.query, request_id, task, result, queue_seconds, total_seconds)
        strict = self.settings.strict if request.strict is None else request.strict
        if result.degraded and strict:
            raise _strict_failure(result, len(candidates), deadline)
        return result

    def _task(self, override: str | TaskOverride | None) -> TaskDefinition:
        if override is None:
            return self.default_task
        try:
            if isinstance(override, str):
                return resolve_task(override)
            return resolve_task(
                override.name,
                query_type=override.query_type,
                doc_type=override.doc_type,
                relevance_definition=override.relevance_definition,
            )
        except UnknownTaskError as exc:
            raise InvalidInput(f"invalid request: task: {exc}") from None

    def _submit_event(
        self,
        query: str,
        request_id: str,
        task: TaskDefinition,
        result: RerankResult,
        queue_seconds: float,
        total_seconds: float,
    ) -> None:
        assert self.rerank_log is not None
        # Building the event only collects references (hashing and excerpts happen on the writer's thread)
        # and submit never blocks; still, a fault in logging must cost the log an event, never a rerank.
        try:
            self.rerank_log.submit(
                RerankEvent(
                    request_id=request_id,
                    task=task.name,
                    model=self.model,
                    backend=self.reranker.backend.kind,
                    query=query,
                    documents=outcomes_from_ranking(result.ranking),
                    queue_ms=queue_seconds * 1000,
                    model_ms=result.model_seconds * 1000,
                    total_ms=total_seconds * 1000,
                    cache_hits=result.cache_hits,
                    degraded=result.degraded,
                )
            )
        except Exception as exc:
            # The type only, as for any unexpected error: a message may quote the request.
            logger.error("rerank %s: not logged to the rerank log (%s)", request_id, type(exc).__name__)

    def _log(self, request_id: str, documents: int, result: RerankResult) -> None:
        # Counts and timings only: queries and documents are the users' data and stay out of logs.
        summary = (
            f"rerank {request_id}: {documents} documents, {result.pairs_scored} pairs scored, "
            f"{result.cache_hits} cache hits, {result.unscored} unscored, model {result.model_seconds:.3f} s"
        )
        if not result.degraded:
            logger.info(summary)
            return
        logger.warning(f"{summary}; degraded: {degradation_reason(result)}")


def _strict_failure(result: RerankResult, documents: int, deadline: float | None) -> RetrostarError:
    unscored = f"{result.unscored} of {documents} documents unscored"
    if result.deadline_exceeded:
        return DeadlineExceeded(f"deadline of {deadline:g} s passed with {unscored} (strict)")
    first_error = f": {result.error_messages[0]}" if result.error_messages else ""
    return BackendError(f"backend failed, {unscored} (strict){first_error}")
