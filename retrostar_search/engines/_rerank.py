"""Searching with and without Retro*: the first stage, the search pipeline, and the client-side rerank
through the connector, put together by `search_and_rerank`, which also finds out who scored and whether
every document got a score."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from retrostar_search.engines._hits import RELEVANCE_SCALE, Hit, attach_first_stage, parse_hit, raw_hits
from retrostar_search.engines._queries import DEFAULT_FIELDS, first_stage_body, pipeline_search_body
from retrostar_search.engines._status import RerankStatus
from retrostar_search.engines.connection import Engine
from retrostar_search.engines.connector_client import ConnectorClient, ConnectorReadiness, RerankAnswer
from retrostar_search.engines.connector_endpoint import document_digest, rerank_fingerprint
from retrostar_search.engines.opensearch_ml import MLCommons
from retrostar_search.engines.pipeline_wiring import PipelineWiring, read_pipeline_wiring
from retrostar_search.errors import EngineError, SearchError

# `_score`s this close to the BM25 scores of the same hits mean the pipeline handed back the first stage.
_SAME_SCORE = 1e-5


def search_first_stage(
    client: Any, index: str, query: str, size: int = 10, fields: Sequence[str] = DEFAULT_FIELDS
) -> list[Hit]:
    """The first-stage (BM25) hits, best first, with their rank and score."""
    # DFS, as BEIR runs it: term statistics from all shards, so scores do not depend on the sharding.
    response = client.search(
        index=index, body=first_stage_body(query, fields, size), search_type="dfs_query_then_fetch"
    )
    return [
        parse_hit(raw, first_stage_rank=rank, first_stage_score=raw.get("_score"))
        for rank, raw in enumerate(raw_hits(response), start=1)
    ]


def search_through_pipeline(
    client: Any,
    index: str,
    query: str,
    size: int = 10,
    pipeline: str = "retrostar",
    fields: Sequence[str] = DEFAULT_FIELDS,
) -> list[Hit]:
    """OpenSearch only: the top `size` BM25 hits reranked by the search pipeline, best first.

    The processor replaces `_score` with the connector's relevance_score (Retro* / 100); the first-stage
    rank is not in the response: pair the result with ``search_first_stage`` through
    ``attach_first_stage`` to know it. Whether the rerank scored every hit is not in the response either:
    ``verify_pipeline_rerank`` finds out."""
    response = client.search(
        index=index,
        body=pipeline_search_body(query, fields, size),
        search_type="dfs_query_then_fetch",
        search_pipeline=pipeline,
    )
    hits = []
    for rank, raw in enumerate(raw_hits(response), start=1):
        score = raw.get("_score")
        hit = parse_hit(raw, first_stage_rank=None, first_stage_score=None)
        hit.rank = rank
        hit.retrostar_score = None if score is None else score * RELEVANCE_SCALE
        hits.append(hit)
    return hits


def rerank_client_side(
    hits: Sequence[Hit],
    query: str,
    connector: ConnectorClient,
    top: int | None = None,
    fields: Sequence[str] = DEFAULT_FIELDS,
    explain: bool = False,
    task: str | Mapping[str, Any] | None = None,
) -> list[Hit]:
    """The hits reordered by the connector's scores (it breaks ties by the input order), the best `top`
    kept, each with its new rank and Retro* score (None when the connector could not score it)."""
    reranked, _ = _rerank_with_answer(hits, query, connector, top, fields, explain, task)
    return reranked


def attach_explanations(
    hits: Sequence[Hit],
    query: str,
    connector: ConnectorClient,
    fields: Sequence[str] = DEFAULT_FIELDS,
    task: str | Mapping[str, Any] | None = None,
) -> list[Hit]:
    """The hits (order kept) with the connector's reasoning for each. The pipeline path returns scores
    only; asking the connector for the same document texts gets the same scores, from its cache."""
    answer = connector.rerank(query, [hit.candidate(fields) for hit in hits], explain=True, task=task)
    by_index = {score.index: score for score in answer.scores}
    return [replace(hit, explanation=by_index[i].explanation) for i, hit in enumerate(hits)]


@dataclass
class RerankedSearch:
    """One query searched both ways: the first-stage candidates and the reranked top, how the rerank went
    (`status`) and who scored (`scorer`, what the connector's /ready says; None when not asked)."""

    query: str
    index: str
    path: Literal["pipeline", "client-side"]  # reranked inside OpenSearch, or here through the connector
    first_stage: list[Hit]
    reranked: list[Hit]
    status: RerankStatus
    scorer: ConnectorReadiness | None = None
    # The pipeline path: what the pipeline reranks with (None when it could not be read: `notes` say why).
    wiring: PipelineWiring | None = None
    notes: tuple[str, ...] = ()

    @property
    def degraded(self) -> bool:
        return self.status.degraded

    def to_dict(self) -> dict[str, Any]:
        scorer = self.scorer
        return {
            "query": self.query,
            "index": self.index,
            "path": self.path,
            "degraded": self.degraded,
            "rerank": self.status.to_dict(),
            "scorer": None if scorer is None else scorer.to_dict(),
            "task": None if scorer is None or scorer.task is None else scorer.task.model_dump(),
            "notes": list(self.notes),
            "first_stage": [hit.to_dict() for hit in self.first_stage],
            "reranked": [hit.to_dict() for hit in self.reranked],
        }


def search_and_rerank(
    client: Any,
    engine: Engine,
    index: str,
    query: str,
    connector: ConnectorClient | None,
    candidates: int = 50,
    top: int = 10,
    fields: Sequence[str] = DEFAULT_FIELDS,
    pipeline: str = "retrostar",
    client_side: bool = False,
    explain: bool = False,
    task: str | Mapping[str, Any] | None = None,
    open_connector: Callable[[str], ConnectorClient] | None = None,
) -> RerankedSearch:
    """The BM25 top `candidates`, and the same candidates reranked with the best `top` kept.

    OpenSearch reranks through `pipeline` unless `client_side`; Elasticsearch always reranks client-side
    (the Basic licence has no inference API). The rerank processor has no top-k of its own, so the
    pipeline reranks all `candidates` and the cut to `top` happens here. `connector` is the client-side
    path's; the pipeline path reads which connector the pipeline calls from the cluster and asks that one
    (opened with `open_connector`, by default `connector.at`) who scored, how the rerank went, and for the
    explanations."""
    if top < 1 or candidates < top:
        raise ValueError(f"need 1 <= top <= candidates, got top={top}, candidates={candidates}")
    first_stage = search_first_stage(client, index, query, candidates, fields)
    if engine is Engine.OPENSEARCH and not client_side:
        reranked = search_through_pipeline(client, index, query, candidates, pipeline, fields)
        return _pipeline_outcome(
            client, query, index, pipeline, first_stage, reranked, top, fields, explain, task,
            open_connector or _need(connector).at,
        )  # fmt: skip
    connector = _need(connector)
    reranked, answer = _rerank_with_answer(first_stage, query, connector, top, fields, explain, task)
    status = RerankStatus(len(first_stage), answer.unscored, answer.reason, answer.request_id)
    return RerankedSearch(
        query,
        index,
        "client-side",
        first_stage,
        reranked,
        status,
        connector.readiness() if first_stage else None,
    )


def verify_pipeline_rerank(
    query: str,
    first_stage: Sequence[Hit],
    reranked: Sequence[Hit],
    connector: ConnectorClient | None,
    fields: Sequence[str],
    wiring: PipelineWiring | None = None,
) -> tuple[RerankStatus, set[str]]:
    """How the pipeline's rerank of these hits went, and the ids of the hits it left unscored.

    OpenSearch's rerank processor keeps nothing of the connector's answer but the scores, and with
    `ignore_failure` a failed rerank comes back as the BM25 order. So, in this order:

    1. Every `_score` equal to the hit's BM25 score: the processor handed back the first stage.
    2. The connector the pipeline calls remembers each rerank by its fingerprint (query and document
       texts, built as the processor builds them): its outcome says how many went unscored, which, and why.
    3. It cannot be asked (unreachable from here, restarted): every score 0.0 is what a rerank that scored
       nothing looks like; anything else is reported as not verified, not as degraded."""
    documents = len(reranked)
    if not reranked:
        return RerankStatus(0), set()
    bm25 = {hit.id: hit.first_stage_score for hit in first_stage}
    if _pipeline_returned_bm25(reranked, bm25):
        ignore = (
            " and ignore_failure hid the error" if wiring is None or wiring.processor.ignore_failure else ""
        )
        reason = (
            f"the pipeline answered the BM25 order and scores: its rerank failed{ignore} (is the connector "
            "up and reachable from the engine? `retrosearch doctor` checks)"
        )
        return RerankStatus(documents, documents, reason), {hit.id for hit in reranked}
    problem = "the pipeline's connector is not known"
    if connector is not None:
        texts = {hit.id: hit.candidate(fields).text for hit in reranked}
        try:
            outcome = connector.outcome(rerank_fingerprint(query, texts.values()))
        except SearchError as error:
            outcome, problem = None, str(error)
        else:
            problem = f"the connector at {connector.base_url} does not remember this rerank (restarted?)"
        if outcome is not None:
            unscored = (
                {
                    hit_id
                    for hit_id, text in texts.items()
                    if document_digest(text) in outcome.unscored_digests
                }
                if outcome.unscored < documents
                else set(texts)
            )
            return RerankStatus(documents, outcome.failed, outcome.reason, outcome.request_id), unscored
    if all(hit.retrostar_score == 0 for hit in reranked):
        reason = f"every score is 0.0, which is how a rerank that scored nothing comes back ({problem})"
        return RerankStatus(documents, documents, reason, verified=False), {hit.id for hit in reranked}
    return RerankStatus(documents, reason=problem, verified=False), set()


def _pipeline_outcome(
    client: Any,
    query: str,
    index: str,
    pipeline: str,
    first_stage: list[Hit],
    reranked: list[Hit],
    top: int,
    fields: Sequence[str],
    explain: bool,
    task: str | Mapping[str, Any] | None,
    open_connector: Callable[[str], ConnectorClient],
) -> RerankedSearch:
    notes: list[str] = []
    try:
        wiring: PipelineWiring | None = read_pipeline_wiring(MLCommons(client), pipeline)
    except EngineError as error:
        wiring = None
        notes.append(f"could not read which connector pipeline {pipeline!r} calls: {error}")
    # The processor ranks the text of its own document_fields; the fingerprint must hash the same text.
    ranked_fields = (
        wiring.processor.document_fields if wiring and wiring.processor.document_fields else fields
    )
    connector = open_connector(wiring.connector_url) if wiring is not None else None
    try:
        scorer = connector.readiness() if connector is not None else None
        status, unscored = verify_pipeline_rerank(
            query, first_stage, reranked, connector, ranked_fields, wiring
        )
        kept = [
            replace(hit, retrostar_score=None) if hit.id in unscored else hit
            for hit in attach_first_stage(reranked, first_stage)[:top]
        ]
        if explain and kept:
            if connector is None:
                notes.append("no explanations: the pipeline's connector is not known")
            else:
                # The search is done: explanations that cannot be had are a note, not a failure.
                try:
                    kept = attach_explanations(kept, query, connector, ranked_fields, task)
                except SearchError as error:
                    notes.append(f"no explanations: {error}")
    finally:
        if connector is not None:
            connector.close()
    return RerankedSearch(query, index, "pipeline", first_stage, kept, status, scorer, wiring, tuple(notes))


def _rerank_with_answer(
    hits: Sequence[Hit],
    query: str,
    connector: ConnectorClient,
    top: int | None,
    fields: Sequence[str],
    explain: bool,
    task: str | Mapping[str, Any] | None,
) -> tuple[list[Hit], RerankAnswer]:
    answer = connector.rerank(query, [hit.candidate(fields) for hit in hits], explain=explain, task=task)
    reranked = [
        replace(
            hits[score.index],
            rank=rank,
            retrostar_score=score.retrostar_score,
            explanation=None
            if score.explanation is None
            else score.explanation.with_unscored_reason(answer.reason),
        )
        for rank, score in enumerate(answer.scores, start=1)
    ]
    return (reranked if top is None else reranked[:top]), answer


def _pipeline_returned_bm25(reranked: Sequence[Hit], bm25: Mapping[str, float | None]) -> bool:
    for hit in reranked:
        first_stage_score = bm25.get(hit.id)
        if first_stage_score is None or hit.retrostar_score is None:
            return False
        if not math.isclose(hit.retrostar_score / RELEVANCE_SCALE, first_stage_score, rel_tol=_SAME_SCORE):
            return False
    # All zero BM25 scores would match a rerank that scored nothing; that case is the connector's to tell.
    return any(bm25.get(hit.id) for hit in reranked)


def _need(connector: ConnectorClient | None) -> ConnectorClient:
    if connector is None:
        raise ValueError("this rerank path calls the connector: give a ConnectorClient")
    return connector
