"""What the connector hands the log for one rerank request, and how it becomes engine documents.

The connector builds a `RerankEvent` (cheap: it only holds references); hashing, excerpting and summing
happen in `event_records`, which the writer runs on its own thread, so none of it lands on a request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from retrostar_search.rerank_log.schema import TIMESTAMP_FIELD, RecordKind
from retrostar_search.reranker import ScoredDocument
from retrostar_search.scoring import SCORE_PATTERN

REASONING_EXCERPT_CHARS = 500
_ELLIPSIS = "…"
# 64 bits of SHA-256: plenty to tell the documents and queries of one deployment apart.
_HASH_HEX_CHARS = 16


@dataclass(frozen=True, slots=True)
class DocumentOutcome:
    """One document of a rerank: where it was, where it went, and what the model said about it.

    Ranks are 1-based. `text` is only used to derive an id when the caller gave none; it is never stored.
    """

    first_stage_rank: int
    new_rank: int
    score: float | None
    sample_scores: tuple[int | None, ...] = ()
    reasoning: str | None = None
    doc_id: str | None = None
    text: str | None = None
    cached: bool = False


@dataclass(frozen=True, slots=True)
class RerankEvent:
    """One rerank request as the log records it. Latencies are milliseconds."""

    request_id: str
    task: str
    model: str
    backend: str
    query: str
    documents: Sequence[DocumentOutcome]
    queue_ms: float
    model_ms: float
    total_ms: float
    cache_hits: int
    degraded: bool
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


def outcomes_from_ranking(ranking: Sequence[ScoredDocument]) -> tuple[DocumentOutcome, ...]:
    """The outcomes of a `Reranker.rerank` result (`RerankResult.ranking`), in the new order.

    The input position is the first-stage rank; the first sample's trajectory stands for the document's
    reasoning.
    """
    return tuple(
        DocumentOutcome(
            first_stage_rank=document.index + 1,
            new_rank=position,
            score=document.score,
            sample_scores=tuple(sample.score for sample in document.samples),
            reasoning=document.samples[0].text if document.samples else None,
            doc_id=document.candidate.id,
            text=document.candidate.text,
            cached=document.cached,
        )
        for position, document in enumerate(ranking, start=1)
    )


def event_records(event: RerankEvent, *, log_queries: bool, log_reasoning: bool) -> list[dict[str, Any]]:
    """The event document followed by one record per reranked document, ready to index."""
    shared: dict[str, Any] = {
        TIMESTAMP_FIELD: event.timestamp.isoformat(timespec="milliseconds"),
        "request_id": event.request_id,
        "task": event.task,
        "model": event.model,
        "backend": event.backend,
        "query_hash": short_hash(event.query),
    }
    if log_queries:
        shared["query"] = event.query

    shifts = [abs(doc.first_stage_rank - doc.new_rank) for doc in event.documents]
    count = len(event.documents)
    summary = {
        **shared,
        "kind": RecordKind.EVENT.value,
        "document_count": count,
        "queue_ms": event.queue_ms,
        "model_ms": event.model_ms,
        "total_ms": event.total_ms,
        "cache_hits": event.cache_hits,
        "cache_hit_ratio": event.cache_hits / count if count else 0.0,
        "degraded": event.degraded,
        "unscored_count": sum(1 for doc in event.documents if doc.score is None),
        "rank_shift_mean": sum(shifts) / count if count else 0.0,
        "rank_shift_max": max(shifts, default=0),
    }
    records = [summary]
    for doc, shift in zip(event.documents, shifts, strict=True):
        record = {
            **shared,
            "kind": RecordKind.DOCUMENT.value,
            "doc_id": doc.doc_id if doc.doc_id is not None else short_hash(doc.text or ""),
            "doc_id_hashed": doc.doc_id is None,
            "first_stage_rank": doc.first_stage_rank,
            "new_rank": doc.new_rank,
            # Positive: the reranker moved the document up.
            "rank_change": doc.first_stage_rank - doc.new_rank,
            "rank_shift": shift,
            "score": doc.score,
            "samples": [score for score in doc.sample_scores if score is not None],
            "sample_count": len(doc.sample_scores),
            "unparsed_samples": sum(1 for score in doc.sample_scores if score is None),
            "cached": doc.cached,
        }
        if log_reasoning and doc.reasoning:
            record["reasoning"] = reasoning_excerpt(doc.reasoning)
        records.append(record)
    return records


def reasoning_excerpt(trajectory: str, limit: int = REASONING_EXCERPT_CHARS) -> str:
    """The end of the reasoning, just before the `<score>` tag.

    Retro* analyses the query, then the document, then justifies its score: the last part is what explains
    the number, while the opening mostly restates the query.
    """
    match = SCORE_PATTERN.search(trajectory)
    reasoning = (trajectory[: match.start()] if match else trajectory).strip()
    if len(reasoning) <= limit:
        return reasoning
    return _ELLIPSIS + reasoning[-(limit - len(_ELLIPSIS)) :].lstrip()


def short_hash(text: str) -> str:
    """A stable id for a text; for grouping, not anonymity (a short query can be guessed from it)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_HEX_CHARS]
