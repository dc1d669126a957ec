"""Searching with and without Retro*: the first stage, the search pipeline, and the client-side rerank
through the connector, put together by `search_and_rerank`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from retrostar_search.engines._hits import RELEVANCE_SCALE, Hit, attach_first_stage, parse_hit, raw_hits
from retrostar_search.engines._queries import DEFAULT_FIELDS, first_stage_body, pipeline_search_body
from retrostar_search.engines.connection import Engine
from retrostar_search.engines.connector_client import ConnectorClient


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
    ``attach_first_stage`` to know it. A pipeline made with `ignore_failure` answers a failed rerank with
    the BM25 order and scores, which this function cannot tell from a rerank."""
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
    scores = connector.rerank(query, [hit.candidate(fields) for hit in hits], explain=explain, task=task)
    reranked = []
    for rank, score in enumerate(scores, start=1):
        hit = replace(
            hits[score.index],
            rank=rank,
            retrostar_score=score.retrostar_score,
            explanation=score.explanation,
        )
        reranked.append(hit)
    return reranked if top is None else reranked[:top]


def attach_explanations(
    hits: Sequence[Hit],
    query: str,
    connector: ConnectorClient,
    fields: Sequence[str] = DEFAULT_FIELDS,
    task: str | Mapping[str, Any] | None = None,
) -> list[Hit]:
    """The hits (order kept) with the connector's reasoning for each. The pipeline path returns scores
    only; asking the connector for the same document texts gets the same scores, from its cache."""
    scores = connector.rerank(query, [hit.candidate(fields) for hit in hits], explain=True, task=task)
    by_index = {score.index: score for score in scores}
    return [replace(hit, explanation=by_index[i].explanation) for i, hit in enumerate(hits)]


@dataclass
class RerankedSearch:
    """One query searched both ways: the first-stage candidates and the reranked top."""

    query: str
    index: str
    path: Literal["pipeline", "client-side"]  # reranked inside OpenSearch, or here through the connector
    first_stage: list[Hit]
    reranked: list[Hit]

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "index": self.index,
            "path": self.path,
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
) -> RerankedSearch:
    """The BM25 top `candidates`, and the same candidates reranked with the best `top` kept.

    OpenSearch reranks through `pipeline` unless `client_side`; Elasticsearch always reranks client-side
    (the Basic licence has no inference API). The rerank processor has no top-k of its own, so the
    pipeline reranks all `candidates` and the cut to `top` happens here. `connector` is needed for the
    client-side path and for `explain`."""
    if top < 1 or candidates < top:
        raise ValueError(f"need 1 <= top <= candidates, got top={top}, candidates={candidates}")
    first_stage = search_first_stage(client, index, query, candidates, fields)
    if engine is Engine.OPENSEARCH and not client_side:
        reranked = search_through_pipeline(client, index, query, candidates, pipeline, fields)
        reranked = attach_first_stage(reranked, first_stage)[:top]
        if explain:
            reranked = attach_explanations(reranked, query, _need(connector), fields, task)
        return RerankedSearch(query, index, "pipeline", first_stage, reranked)
    reranked = rerank_client_side(first_stage, query, _need(connector), top, fields, explain, task)
    return RerankedSearch(query, index, "client-side", first_stage, reranked)


def _need(connector: ConnectorClient | None) -> ConnectorClient:
    if connector is None:
        raise ValueError("this rerank path calls the connector: give a ConnectorClient")
    return connector
