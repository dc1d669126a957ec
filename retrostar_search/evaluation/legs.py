"""The rerank leg of an evaluation (and of `retrosearch warm`): how the first-stage candidates of one query
get reordered.

Two paths, both scoring the same document text (``document_text`` over the fields, title and text by
default, as OpenSearch's rerank processor builds it):

- ``InProcessLeg``: the core Reranker in this process, with a persistent score cache. It honours the
  run's own cascade and task, has no deadline (an evaluation waits for every score), and counts the pairs
  it sends to the model exactly. The default.
- ``ConnectorLeg``: a running connector, client-side, exactly as `retrosearch search` reranks. The task
  goes with each request; the cascade and the cache are the connector's own settings, and the counts are
  the ones it reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from retrostar_search.engines.search import DEFAULT_FIELDS, ConnectorClient, Hit, degradation_reason
from retrostar_search.errors import BackendError
from retrostar_search.reranker import Reranker
from retrostar_search.scoring import Cascade
from retrostar_search.settings import RerankerSettings
from retrostar_search.tasks import TaskDefinition, resolve_task

# Above the connector's own deadline (25 s by default): past it the connector answers what it knows.
CONNECTOR_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class LegOutcome:
    """How one query's candidates came back from a leg (the connector's own record of a rerank is
    `engines.connector_client.RerankOutcome`)."""

    # The candidates' ids, best first.
    ranking: list[str]
    # True when some candidate went unscored (backend failure): its place is a first-stage guess.
    degraded: bool
    # Pairs sent to the model and pairs served from the cache; None where the path does not report them.
    pairs_scored: int | None = None
    cache_hits: int | None = None
    # Candidates left without a score by a failure, and why (the backend's error, the deadline).
    unscored: int = 0
    reason: str | None = None
    # Pairs the model did not answer, in any cascade stage (failed, or cut by a deadline): at least the
    # unscored candidates.
    failed: int = 0


class RerankLeg(Protocol):
    async def rerank(self, query: str, hits: Sequence[Hit]) -> LegOutcome: ...

    def describe(self) -> dict[str, Any]:
        """What produced the reranked figures, for the summary."""
        ...


# What opens a leg inside the run's event loop (async HTTP clients bind to the loop that uses them).
LegOpener = Callable[[], AbstractAsyncContextManager[RerankLeg]]


class InProcessLeg:
    def __init__(
        self,
        reranker: Reranker,
        task: TaskDefinition,
        cascade: Cascade,
        fields: Sequence[str] = DEFAULT_FIELDS,
    ) -> None:
        self.reranker = reranker
        self.task = task
        self.cascade = cascade
        self.fields = fields

    async def rerank(self, query: str, hits: Sequence[Hit]) -> LegOutcome:
        if not hits:
            return LegOutcome(ranking=[], degraded=False, pairs_scored=0, cache_hits=0)
        result = await self.reranker.rerank(
            query, [hit.candidate(self.fields) for hit in hits], task=self.task, cascade=self.cascade
        )
        unscored = result.unscored if result.degraded else 0  # not those a cascade stage left out
        return LegOutcome(
            ranking=[hits[scored.index].id for scored in result.ranking],
            degraded=result.degraded,
            pairs_scored=result.pairs_scored,
            cache_hits=result.cache_hits,
            unscored=unscored,
            reason=degradation_reason(result),
            failed=max(result.backend_errors, unscored),
        )

    def describe(self) -> dict[str, Any]:
        backend = self.reranker.backend
        return {
            "path": "in-process",
            "backend": backend.kind,
            "model": backend.model,
            "task": self.task.model_dump(),
            "cascade": str(self.cascade),
        }


class ConnectorLeg:
    def __init__(
        self,
        client: ConnectorClient,
        task: str | None = None,
        fields: Sequence[str] = DEFAULT_FIELDS,
    ) -> None:
        self.client = client
        self.task = task
        self.fields = fields

    async def rerank(self, query: str, hits: Sequence[Hit]) -> LegOutcome:
        # The client is synchronous (and shareable between threads); a thread keeps the queries concurrent.
        answer = await asyncio.to_thread(
            self.client.rerank, query, [hit.candidate(self.fields) for hit in hits], False, self.task
        )
        return LegOutcome(
            ranking=[hits[score.index].id for score in answer.scores],
            degraded=answer.degraded,
            unscored=answer.unscored,
            reason=answer.reason,
            pairs_scored=answer.pairs_scored,
            cache_hits=answer.cache_hits,
            failed=max(answer.backend_errors or 0, answer.unscored),
        )

    def describe(self) -> dict[str, Any]:
        readiness = self.client.readiness()
        return {
            "path": "connector",
            "connector_url": self.client.base_url,  # ConnectorClient keeps it without credentials
            "backend": readiness.backend,
            "model": readiness.model,
            # The preset sent with each request, else the connector's own task as its /ready says.
            "task": resolve_task(self.task).model_dump()
            if self.task
            else (readiness.task.model_dump() if readiness.task else "the connector's (not reported)"),
        }


@asynccontextmanager
async def open_in_process_leg(
    settings: RerankerSettings,
    task: TaskDefinition,
    cascade: Cascade,
    fields: Sequence[str] = DEFAULT_FIELDS,
) -> AsyncIterator[InProcessLeg]:
    """The reranker `retrosearch serve` would build from ``settings`` (backend, cache, sampling,
    truncation), with the run's task and cascade. Fails at once when the backend does not answer,
    rather than after every query has come back unscored."""
    async with Reranker.from_settings(settings) as reranker:
        backend = reranker.backend
        if not await backend.ready():
            raise BackendError(backend.not_ready_reason or f"the {backend.kind} backend is not ready")
        yield InProcessLeg(reranker, task, cascade, fields)


@asynccontextmanager
async def open_connector_leg(
    url: str,
    api_key: str | None,
    task: TaskDefinition | None,
    fields: Sequence[str] = DEFAULT_FIELDS,
) -> AsyncIterator[ConnectorLeg]:
    """A leg through the connector at `url`; `task` None (or the generic task, the connector's own
    default) sends no task, so the connector's configured one applies."""
    # A preset travels by name.
    task_name = None if task is None or task.name == "default" else task.name
    with ConnectorClient(url, api_key=api_key, timeout=CONNECTOR_TIMEOUT_S) as client:
        yield ConnectorLeg(client, task_name, fields)
