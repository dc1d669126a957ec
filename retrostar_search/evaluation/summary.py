"""From rankings to numbers: per-query metrics for each leg, their means, and the deltas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from index_tools.readers.jsonl import total_count
from retrostar_search.evaluation.collection import EvalCollection
from retrostar_search.evaluation.metrics import Metric, mean_scores, score_run
from retrostar_search.evaluation.runner import QueryRun

# How many ids of each ranking the per-query report keeps: enough to see what moved at the top.
REPORTED_TOP = 10


@dataclass(frozen=True)
class QueryResult:
    query_id: str
    query: str
    relevant: int
    first_stage: dict[str, float]
    reranked: dict[str, float] | None
    first_stage_top: list[str]
    reranked_top: list[str] | None
    # None where the rerank path does not report them (through a connector).
    pairs_scored: int | None
    cache_hits: int | None
    degraded: bool
    # Reranked candidates a failure left without a score, and why; `unscored == candidates`: none scored.
    unscored: int
    candidates: int
    degradation_reason: str | None
    first_stage_seconds: float | None
    rerank_seconds: float | None

    @property
    def delta(self) -> dict[str, float] | None:
        return _delta(self.first_stage, self.reranked)

    def as_json(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "query": self.query,
            "relevant": self.relevant,
            "first_stage": self.first_stage,
            "reranked": self.reranked,
            "delta": self.delta,
            "first_stage_top": self.first_stage_top,
            "reranked_top": self.reranked_top,
            "pairs_scored": self.pairs_scored,
            "cache_hits": self.cache_hits,
            "degraded": self.degraded,
            "unscored": self.unscored,
            "degradation_reason": self.degradation_reason,
            "first_stage_seconds": _rounded(self.first_stage_seconds),
            "rerank_seconds": _rounded(self.rerank_seconds),
        }


@dataclass(frozen=True)
class EvalSummary:
    collection: str
    index: str
    engine: str
    metrics: list[str]
    first_stage: dict[str, float]
    reranked: dict[str, float] | None
    per_query: list[QueryResult]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def delta(self) -> dict[str, float] | None:
        return _delta(self.first_stage, self.reranked)

    @property
    def pairs_scored(self) -> int | None:
        return total_count(result.pairs_scored for result in self.per_query)

    @property
    def cache_hits(self) -> int | None:
        return total_count(result.cache_hits for result in self.per_query)

    @property
    def degraded_queries(self) -> int:
        return sum(result.degraded for result in self.per_query)

    @property
    def unreranked_queries(self) -> int:
        """Queries of which not one candidate got a score: their "reranked" ranking is the first stage."""
        return sum(result.degraded and result.unscored >= result.candidates for result in self.per_query)

    @property
    def degradation_reason(self) -> str | None:
        """Why candidates went unscored: the first reason reported."""
        return next(
            (result.degradation_reason for result in self.per_query if result.degradation_reason), None
        )

    def degradation(self) -> str | None:
        """One line on what went unscored, and why; None when every rerank was whole."""
        if not self.degraded_queries:
            return None
        reason = f": {self.degradation_reason}" if self.degradation_reason else ""
        none, some = self.unreranked_queries, self.degraded_queries - self.unreranked_queries
        if none == len(self.per_query):
            return f"nothing was reranked: no query got a single Retro* score{reason}"
        parts = [f"{none} queries were not reranked at all"] if none else []
        if some:
            parts.append(f"{some} queries were reranked only in part")
        return " and ".join(parts) + reason

    def as_json(self) -> dict[str, Any]:
        """The machine-readable summary `--json` prints; metric names as given (``ndcg@10``)."""
        return {
            "collection": self.collection,
            "index": self.index,
            "engine": self.engine,
            "queries": len(self.per_query),
            "metrics": self.metrics,
            "first_stage": self.first_stage,
            "reranked": self.reranked,
            "delta": self.delta,
            "rerank": None
            if self.reranked is None
            else {
                "pairs_scored": self.pairs_scored,
                "cache_hits": self.cache_hits,
                "degraded_queries": self.degraded_queries,
                "unreranked_queries": self.unreranked_queries,
                "degradation": self.degradation(),
            },
            "settings": self.settings,
            "seconds": round(self.seconds, 3),
            "outputs": self.outputs,
        }


def summarise(
    collection: EvalCollection,
    runs: Sequence[QueryRun],
    metrics: Sequence[Metric],
    *,
    index: str,
    engine: str,
    settings: dict[str, Any],
    seconds: float,
) -> EvalSummary:
    """Score both legs on the collection's queries (a query missing from ``runs`` scores 0)."""
    query_ids = list(collection.queries)
    by_id = {run.query_id: run for run in runs}
    reranking = any(run.reranked is not None for run in runs)
    first_stage = score_run(
        {run.query_id: run.first_stage for run in runs},
        collection.qrels,
        metrics,
        query_ids,
        collection.excluded,
    )
    reranked = (
        score_run(
            {run.query_id: run.reranked for run in runs if run.reranked is not None},
            collection.qrels,
            metrics,
            query_ids,
            collection.excluded,
        )
        if reranking
        else None
    )
    results = []
    for query_id in query_ids:
        run = by_id.get(query_id)
        rerank = run.rerank if run is not None else None
        results.append(
            QueryResult(
                query_id=query_id,
                query=collection.queries[query_id],
                relevant=sum(grade > 0 for grade in collection.qrels[query_id].values()),
                first_stage=first_stage[query_id],
                reranked=reranked[query_id] if reranked is not None else None,
                first_stage_top=list(run.first_stage[:REPORTED_TOP]) if run else [],
                reranked_top=list(run.reranked[:REPORTED_TOP]) if run and run.reranked is not None else None,
                pairs_scored=rerank.pairs_scored if rerank else None,
                cache_hits=rerank.cache_hits if rerank else None,
                degraded=rerank.degraded if rerank else False,
                unscored=rerank.unscored if rerank else 0,
                candidates=len(rerank.ranking) if rerank else 0,
                degradation_reason=rerank.reason if rerank else None,
                first_stage_seconds=run.first_stage_seconds if run else None,
                rerank_seconds=run.rerank_seconds if run else None,
            )
        )
    return EvalSummary(
        collection=collection.name,
        index=index,
        engine=engine,
        metrics=[metric.name for metric in metrics],
        first_stage=mean_scores(first_stage, metrics),
        reranked=mean_scores(reranked, metrics) if reranked is not None else None,
        per_query=results,
        settings=settings,
        seconds=seconds,
    )


def _delta(first_stage: dict[str, float], reranked: dict[str, float] | None) -> dict[str, float] | None:
    """Reranked minus first stage, metric by metric; None without a reranked leg."""
    if reranked is None:
        return None
    return {name: reranked[name] - value for name, value in first_stage.items()}


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)
