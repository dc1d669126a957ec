"""Running the queries (of an evaluation, or of `retrosearch warm`): the engine's first stage for every
query, then the rerank leg, several queries at a time.

The engine clients are synchronous, so first-stage searches run in worker threads; the rerank leg is
async already. ``concurrency`` bounds how many queries are in flight, which bounds both the engine's
search threads and the pairs the model sees at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrostar_search.engines.search import DEFAULT_FIELDS, Hit, search_first_stage
from retrostar_search.evaluation.legs import LegOutcome, RerankLeg

if TYPE_CHECKING:  # the collection module needs the eval extra; `warm` runs queries without it
    from retrostar_search.evaluation.collection import EvalCollection


@dataclass(frozen=True)
class RunPlan:
    index: str
    # First-stage hits kept per query: at least the deepest metric cutoff, so recall@100 sees 100.
    depth: int
    # The first `candidates` hits go to the reranker; the rest keep their first-stage order below them.
    candidates: int
    concurrency: int = 8
    # Searched by the first stage (and reranked by the leg, which holds the same fields).
    fields: tuple[str, ...] = DEFAULT_FIELDS


@dataclass(frozen=True)
class QueryRun:
    query_id: str
    # Document ids best first, excluded ids already removed.
    first_stage: list[str]
    reranked: list[str] | None
    first_stage_seconds: float
    rerank_seconds: float | None = None
    rerank: LegOutcome | None = None


def reranked_ranking(first_stage: Sequence[str], candidates: int, outcome: LegOutcome) -> list[str]:
    """The reranked candidates, then the first-stage hits beyond them (the usual rerank-top-k run)."""
    reranked = set(outcome.ranking)
    return [*outcome.ranking, *(doc_id for doc_id in first_stage[candidates:] if doc_id not in reranked)]


# Judged documents looked up before a run: enough to tell a wrong index from a right one, cheap on any.
JUDGED_SAMPLE = 1000


def judged_in_index(client: Any, index: str, collection: EvalCollection) -> tuple[int, int]:
    """How many of the collection's relevant judged documents (up to `JUDGED_SAMPLE`, in a stable order)
    the index holds, and how many were looked up. None held means the index is not this collection's
    corpus: every figure would be 0."""
    judged = sorted(
        {doc_id for grades in collection.qrels.values() for doc_id, grade in grades.items() if grade > 0}
    )[:JUDGED_SAMPLE]
    if not judged:
        return 0, 0
    response = client.search(
        index=index, body={"query": {"ids": {"values": judged}}, "size": 0, "track_total_hits": True}
    )
    total = response["hits"]["total"]
    return int(total["value"] if isinstance(total, dict) else total), len(judged)


async def run_queries(
    client: Any,
    queries: Mapping[str, str],
    plan: RunPlan,
    leg: RerankLeg | None = None,
    on_query_done: Callable[[], None] = lambda: None,
    excluded_ids: Mapping[str, set[str]] | None = None,
) -> list[QueryRun]:
    """One QueryRun per query (id → text), in their order; an engine or leg exception stops the run.
    `excluded_ids`: per query, ids never to return (BRIGHT's)."""
    slots = asyncio.Semaphore(plan.concurrency)

    async def run_one(query_id: str, query: str) -> QueryRun:
        async with slots:
            excluded = (excluded_ids or {}).get(query_id, set())
            started = time.perf_counter()
            # Ask for extra hits so that removing this query's excluded ids still leaves `depth` of them.
            hits: list[Hit] = await asyncio.to_thread(
                search_first_stage, client, plan.index, query, plan.depth + len(excluded), plan.fields
            )
            first_stage_seconds = time.perf_counter() - started
            kept = [hit for hit in hits if hit.id not in excluded][: plan.depth]
            first_stage = [hit.id for hit in kept]
            if leg is None:
                on_query_done()
                return QueryRun(query_id, first_stage, None, first_stage_seconds)
            started = time.perf_counter()
            outcome = await leg.rerank(query, kept[: plan.candidates])
            rerank_seconds = time.perf_counter() - started
            on_query_done()
            return QueryRun(
                query_id,
                first_stage,
                reranked_ranking(first_stage, plan.candidates, outcome),
                first_stage_seconds,
                rerank_seconds,
                outcome,
            )

    # A task group cancels the queries still running as soon as one fails.
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(run_one(query_id, query)) for query_id, query in queries.items()]
    return [task.result() for task in tasks]
