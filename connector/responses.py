"""From a RerankResult to the answers engines and clients expect.

OpenSearch and Elasticsearch need exactly one result per input document (unless top_n asks for fewer), with
`relevance_score` a JSON float that never increases along the ranking, since engines sort by it: Retro*'s
0..100 divided by 100 (a cascade gives each stage a band, see `retrostar_search.reranker.relevance`), and
0.0 for unscored documents (after every scored one, in request order, flagged `scored: false`) so an
engine's stable sort keeps them last. `retrostar_score` carries the Retro* score itself.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import TypeAdapter

from connector.schemas import (
    ApiVersion,
    CohereRerankResponse,
    CohereRerankResult,
    Explanation,
    RerankMeta,
    RerankStats,
    ResultDocument,
    SampleExplanation,
    TEIRank,
)
from retrostar_search.engines.search import degradation_reason
from retrostar_search.reranker import RerankResult, ScoredDocument

_TEI_RANKS = TypeAdapter(list[TEIRank])
DEGRADED_HEADER = "X-Retrostar-Degraded"


def cohere_response(
    result: RerankResult,
    *,
    request_id: str,
    model: str,
    api_version: str,
    top_n: int | None,
    return_documents: bool,
    return_explanations: bool,
) -> CohereRerankResponse:
    results = []
    for ranked in _top(result, top_n):
        item = CohereRerankResult(
            index=ranked.index,
            relevance_score=ranked.relevance,
            retrostar_score=ranked.score,
            scored=ranked.scored,
        )
        if return_documents:
            item.document = ResultDocument(text=ranked.candidate.text)
        if return_explanations:
            item.explanation = _explanation(ranked)
        results.append(item)
    # The counts keep their names from RerankResult to the wire; the time is rounded, the reason worded.
    stats = RerankStats.model_validate(result, from_attributes=True)
    stats.model_seconds = round(result.model_seconds, 6)
    stats.reason = degradation_reason(result)
    meta = RerankMeta(api_version=ApiVersion(version=api_version), retrostar=stats)
    if result.degraded:
        meta.warnings = [_degradation_warning(result)]
    return CohereRerankResponse(
        id=request_id, model=model, results=results, degraded=result.degraded, meta=meta
    )


def tei_response(result: RerankResult, *, return_text: bool, return_explanations: bool) -> list[TEIRank]:
    ranks = []
    for ranked in result.ranking:
        rank = TEIRank(index=ranked.index, score=ranked.relevance, scored=ranked.scored)
        if return_text:
            rank.text = ranked.candidate.text
        if return_explanations:
            rank.explanation = _explanation(ranked)
        ranks.append(rank)
    return ranks


def json_response(
    content: CohereRerankResponse | list[TEIRank], *, request_id: str, degraded: bool
) -> Response:
    # Fields never set (document, explanation, warnings) are left out rather than sent as null.
    body = (
        _TEI_RANKS.dump_json(content, exclude_unset=True)
        if isinstance(content, list)
        else content.model_dump_json(exclude_unset=True).encode()
    )
    headers = {"X-Request-ID": request_id}
    if degraded:
        headers[DEGRADED_HEADER] = "true"
    return Response(body, media_type="application/json", headers=headers)


def _top(result: RerankResult, top_n: int | None) -> list[ScoredDocument]:
    return result.ranking[:top_n] if top_n else result.ranking  # absent or 0: every document


def _explanation(ranked: ScoredDocument) -> Explanation:
    return Explanation(
        score=ranked.score,
        cached=ranked.cached,
        reasoning_kept=all(sample.text is not None for sample in ranked.samples),
        samples=[
            SampleExplanation(
                score=sample.score,
                parsed=sample.parsed,
                text=sample.text or "",
                finish_reason=sample.finish_reason,
            )
            for sample in ranked.samples
        ],
        truncated=ranked.truncated,
        stage=ranked.stage or None,
        unscored_reason=ranked.unscored,
    )


def _degradation_warning(result: RerankResult) -> str:
    return (
        f"{result.unscored} of {len(result.ranking)} documents are unscored ({degradation_reason(result)}); "
        "they follow the scored ones in request order with relevance_score 0.0"
    )
