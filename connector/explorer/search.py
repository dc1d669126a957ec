"""One explorer search: the first stage from the engine, then the connector's own reranker, in process.

The first stage and the document text come from the shared search API (`search_first_stage`,
`document_text`), so a document gets the same text, and the same cached score, as through the search
pipeline or `retrosearch search`. The rerank goes through `RerankService` like any rerank request: limits,
metrics, the log line and the rerank-log event (with the hits' ids) all apply.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from starlette.concurrency import run_in_threadpool

from connector.schemas import CohereRerankRequest
from connector.service import RerankService
from retrostar_search.engines.search import (
    Explanation,
    Hit,
    RerankStatus,
    degradation_reason,
    document_text,
    search_first_stage,
)
from retrostar_search.reranker import RerankResult, ScoredDocument, Unscored

# The page shows an excerpt; whole documents (up to max_document_chars) would only weigh the answer down.
TEXT_PREVIEW_CHARS = 600
_ELLIPSIS = "…"


async def explore_search(
    service: RerankService, client: Any, index: str, query: str, candidates: int, request_id: str
) -> dict[str, Any]:
    """The first-stage hits and the same hits reranked, as the page's JSON. The engine call runs on a
    worker thread: the engine clients are synchronous and the event loop serves reranks."""
    started = time.perf_counter()
    first_stage = await run_in_threadpool(search_first_stage, client, index, query, candidates)
    searched = time.perf_counter()
    answer: dict[str, Any] = {
        "request_id": request_id,
        "query": query,
        "index": index,
        "model": service.model,
        "timings_ms": {"first_stage": _ms(searched - started), "rerank": 0.0},
        "degraded": False,
        "rerank": RerankStatus(0).to_dict(),
        "cache_hits": 0,
        "first_stage": [],
        "reranked": [],
    }
    if not first_stage:
        return answer
    # Documents as `{"id", "text"}` objects: each hit's id goes with its text into the rerank log.
    documents = [{"id": hit.id, "text": document_text(hit.source)} for hit in first_stage]
    request = CohereRerankRequest.model_validate(
        {"query": query, "documents": documents, "return_explanations": True}  # the page shows the reasoning
    )
    result = await service.rerank(request, request_id, received_at=searched)
    answer["timings_ms"]["rerank"] = _ms(time.perf_counter() - searched)
    failed = result.unscored if result.degraded else 0  # the cascade's unscored documents are no failure
    status = RerankStatus(len(first_stage), failed, degradation_reason(result), request_id)
    answer["degraded"] = status.degraded
    answer["rerank"] = {**status.to_dict(), "message": status.describe()}
    answer["cache_hits"] = result.cache_hits
    reranked = _reranked_hits(first_stage, result, service)
    answer["reranked"] = [_view(hit, scored) for hit, scored in zip(reranked, result.ranking, strict=True)]
    # The same hits, scores included, in their first-stage order; the reasoning is shown once, on the right.
    in_first_stage_order = sorted(reranked, key=lambda hit: hit.first_stage_rank or 0)
    answer["first_stage"] = [_view(replace(hit, explanation=None)) for hit in in_first_stage_order]
    return answer


def _reranked_hits(first_stage: list[Hit], result: RerankResult, service: RerankService) -> list[Hit]:
    return [
        replace(
            first_stage[scored.index],
            rank=rank,
            retrostar_score=scored.score,
            explanation=Explanation.from_samples(
                scored.score, scored.samples, scored.cached, _unscored_reason(scored, result, service)
            ),
        )
        for rank, scored in enumerate(result.ranking, start=1)
    ]


def _unscored_reason(scored: ScoredDocument, result: RerankResult, service: RerankService) -> str | None:
    """Why a document has no score, as the reranker recorded it, in words: an answer without a parsed
    score (--unparsed skip), the cascade (only its first stage's best are scored), or the failure that
    degraded the rerank (the backend's, an abort, the deadline)."""
    match scored.unscored:
        case None:
            return None
        case Unscored.NO_PARSED_SAMPLE:
            return "no sample had a <score> (the connector runs with --unparsed skip)"
        case Unscored.NOT_PLANNED:
            return f"not among the documents the cascade ({service.reranker.cascade}) scores"
        case _:
            return degradation_reason(result)


def _view(hit: Hit, scored: ScoredDocument | None = None) -> dict[str, Any]:
    """`Hit.to_dict()` with the text cut to an excerpt, the rank change (positive: moved up) and, for a
    reranked hit, whether it was scored and from the cache."""
    view = hit.to_dict()
    view["text"] = _preview(hit.text)
    assert hit.first_stage_rank is not None and hit.rank is not None
    view["rank_change"] = hit.first_stage_rank - hit.rank
    if scored is not None:
        view["scored"] = scored.scored
        view["cached"] = scored.cached
    return view


def _preview(text: str) -> str:
    return text if len(text) <= TEXT_PREVIEW_CHARS else text[: TEXT_PREVIEW_CHARS - 1].rstrip() + _ELLIPSIS


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
