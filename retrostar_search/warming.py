"""Warming the score cache before the searches come (`retrosearch warm`): head queries, scored once, are
free afterwards.

Each query runs what a search of it runs, through the evaluation's runner and rerank legs rather than a
copy of them: the same first stage (`search_first_stage`: BM25 over the fields the search pipeline
reranks, the top `candidates`), the same document text (`document_text` over those fields), and a rerank
leg that scores every pair not cached yet:

- in this process, with the reranker `retrosearch serve` builds from the same settings (backend, task,
  cascade, cache), so the scores land under the connector's cache keys in the cache it reads (its sqlite
  file, or a shared cache server);
- or through a running connector, which fills its own cache (the task and cascade are its own).

Many queries are in flight at once (`RunPlan.concurrency`), each with all its pairs together, so the
model server batches them; pairs already cached are served from the cache, so a second run scores none.
A query whose rerank fails costs its own pairs (counted as failed), never the run; an engine error stops
it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from index_tools.readers import QueryFormat, read_queries
from retrostar_search.engines.search import Hit
from retrostar_search.errors import InvalidInput, SearchError
from retrostar_search.evaluation.legs import LegOpener, LegOutcome, RerankLeg
from retrostar_search.evaluation.runner import RunPlan, run_queries
from retrostar_search.settings import RerankerSettings

DEFAULT_CANDIDATES = 100
DEFAULT_CONCURRENCY = 8
_KEPT_ERRORS = 3


@dataclass
class WarmSummary:
    """What a warm-up did. Pairs are (query, document) pairs of every cascade stage; failed pairs (the
    model did not answer, or the connector's deadline cut them) are not cached."""

    queries: int
    pairs_scored: int
    pairs_cached: int
    pairs_failed: int
    queries_incomplete: int
    seconds: float
    errors: list[str]
    rerank: dict[str, Any]
    # Queries left out because the same text came earlier in the list.
    duplicates: int

    @classmethod
    def of(
        cls,
        outcomes: Sequence[LegOutcome],
        seconds: float,
        errors: list[str],
        rerank: dict[str, Any],
        duplicates: int,
    ) -> WarmSummary:
        return cls(
            queries=len(outcomes),
            pairs_scored=sum(outcome.pairs_scored or 0 for outcome in outcomes),
            pairs_cached=sum(outcome.cache_hits or 0 for outcome in outcomes),
            pairs_failed=sum(outcome.failed for outcome in outcomes),
            queries_incomplete=sum(outcome.degraded for outcome in outcomes),
            seconds=seconds,
            errors=errors,
            rerank=rerank,
            duplicates=duplicates,
        )

    @property
    def complete(self) -> bool:
        return self.pairs_failed == 0 and self.queries_incomplete == 0

    @property
    def pairs_per_second(self) -> float:
        return self.pairs_scored / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "seconds": round(self.seconds, 3),
            "pairs_per_second": round(self.pairs_per_second, 2),
        }


@dataclass(frozen=True)
class WarmPlan:
    """A warm-up as asked, checked before anything is contacted: the distinct queries (`duplicates`:
    repeats of an earlier text, left out) and the searches each runs."""

    queries: dict[str, str]
    duplicates: int
    run: RunPlan


def plan_warming(
    path: Path,
    query_format: QueryFormat,
    *,
    index: str,
    candidates: int,
    fields: tuple[str, ...],
    concurrency: int,
) -> WarmPlan:
    """Read the query list; raises InvalidInput (naming the file and line) or OSError for one that cannot
    be warmed."""
    queries, duplicates = distinct_queries(read_queries(path, query_format))
    if not queries:
        raise InvalidInput(f"{path}: no queries")
    run = RunPlan(
        index=index, depth=candidates, candidates=candidates, concurrency=concurrency, fields=fields
    )
    return WarmPlan(queries, duplicates, run)


def require_shared_cache(settings: RerankerSettings) -> None:
    """In-process warming is only worth its GPU time into a cache the connector reads too: InvalidInput
    when `settings` name none."""
    shared = settings.cache_path is not None or settings.cache_url is not None
    if settings.cache_size == 0 or not shared:
        raise InvalidInput(
            "warming in this process needs the connector's persistent cache: its --cache-path (sqlite "
            "file) or its shared cache server, and a --cache-size above 0 (or warm through it with "
            "--connector-url)"
        )


def distinct_queries(queries: Mapping[str, str]) -> tuple[dict[str, str], int]:
    """The queries whose text has not come before (id → text, in order), and how many were left out.
    A query without text is an error naming it: nothing would be warmed for it."""
    blank = [query_id for query_id, text in queries.items() if not text.strip()]
    if blank:
        shown = ", ".join(repr(query_id) for query_id in blank[:5])
        raise InvalidInput(f"{len(blank)} queries have no text: {shown}{', ...' if len(blank) > 5 else ''}")
    first: dict[str, str] = {}
    for query_id, text in queries.items():
        first.setdefault(text, query_id)
    return {query_id: text for text, query_id in first.items()}, len(queries) - len(first)


class _ToleratingLeg:
    """A leg whose failed rerank (the connector answering an error) costs that query's pairs, not the run."""

    def __init__(self, leg: RerankLeg, errors: list[str]) -> None:
        self.leg = leg
        self.errors = errors

    async def rerank(self, query: str, hits: Sequence[Hit]) -> LegOutcome:
        try:
            return await self.leg.rerank(query, hits)
        except SearchError as error:
            if len(self.errors) < _KEPT_ERRORS:
                self.errors.append(str(error))
            return LegOutcome(ranking=[], degraded=True, pairs_scored=0, cache_hits=0, failed=len(hits))

    def describe(self) -> dict[str, Any]:
        return self.leg.describe()


async def warm_cache(
    client: Any,
    plan: WarmPlan,
    open_leg: LegOpener,
    on_query_done: Callable[[], None] = lambda: None,
) -> WarmSummary:
    """Score the top `candidates` of every query of the plan into the cache (see the module docstring)."""
    errors: list[str] = []
    started = time.perf_counter()
    # The leg is opened inside the event loop: async HTTP clients bind to the loop that uses them.
    async with open_leg() as leg:
        runs = await run_queries(client, plan.queries, plan.run, _ToleratingLeg(leg, errors), on_query_done)
        rerank = leg.describe()
    outcomes = [run.rerank for run in runs if run.rerank is not None]
    return WarmSummary.of(outcomes, time.perf_counter() - started, errors, rerank, plan.duplicates)
