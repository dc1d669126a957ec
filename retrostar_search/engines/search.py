"""Searching an index with and without Retro* reranking: the one API the CLI, the evaluation and the
explorer page share.

Three ways to get a list of `Hit`s, two of them reranked:

- ``search_through_pipeline``: OpenSearch reranks inside the search, through the search pipeline that
  ``retrosearch setup opensearch`` created (``?search_pipeline=`` plus ``ext.rerank.query_context``).
- ``rerank_client_side``: the first-stage hits are sent to the connector from here and reordered here.
  This is the path for Elasticsearch on a Basic licence (no inference API), and for OpenSearch when asked.
- ``search_first_stage`` alone is the baseline: BM25 over title and text, as BEIR runs it.

Both rerank paths send the connector the same document text (``document_text``: the fields concatenated
with no separator, which is what OpenSearch's rerank processor builds), so a document gets the same
Retro* score, served from the connector's cache, whichever path asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import httpx

from retrostar_search.engines.connection import Engine
from retrostar_search.engines.connector_endpoint import RERANK_PATH

DEFAULT_FIELDS: tuple[str, ...] = ("title", "text")
TITLE_FIELD = "title"
TEXT_FIELD = "text"
# Retro* scores are 0..100; the connector answers them divided by 100 (Cohere's 0..1 relevance_score),
# and that is also the `_score` OpenSearch gives a hit reranked through the pipeline.
RELEVANCE_SCALE = 100.0


@dataclass
class Hit:
    """One search result. Ranks are 1-based; the rerank fields stay None until a rerank fills them."""

    id: str
    first_stage_rank: int | None
    first_stage_score: float | None
    title: str
    text: str
    source: dict[str, Any] = field(repr=False)
    rank: int | None = None
    retrostar_score: float | None = None
    explanation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``--json`` and the explorer page)."""
        return {
            "id": self.id,
            "rank": self.rank,
            "first_stage_rank": self.first_stage_rank,
            "first_stage_score": self.first_stage_score,
            "retrostar_score": self.retrostar_score,
            "title": self.title,
            "text": self.text,
            "explanation": self.explanation,
        }


class SearchError(RuntimeError):
    """A search or a rerank that failed; the message is safe to print (no secrets, no document text)."""


def first_stage_body(query: str, fields: Sequence[str] = DEFAULT_FIELDS, size: int = 10) -> dict[str, Any]:
    """BM25 over the given fields the way BEIR's lexical baseline queries Elasticsearch: a `best_fields`
    multi_match with tie_breaker 0.5. The whole `_source` comes back: the rerank processor reads its
    `document_fields` from it, so filtering `_source` would silently rerank empty strings."""
    _require_positive_size(size)
    return {
        "size": size,
        "query": {
            "multi_match": {
                "query": query,
                "type": "best_fields",
                "fields": list(fields),
                "tie_breaker": 0.5,
            }
        },
    }


def search_first_stage(
    client: Any, index: str, query: str, size: int = 10, fields: Sequence[str] = DEFAULT_FIELDS
) -> list[Hit]:
    """The first-stage (BM25) hits, best first, with their rank and score."""
    # DFS, as BEIR runs it: term statistics from all shards, so scores do not depend on the sharding.
    response = client.search(
        index=index, body=first_stage_body(query, fields, size), search_type="dfs_query_then_fetch"
    )
    return [
        _hit(raw, first_stage_rank=rank, first_stage_score=raw.get("_score"))
        for rank, raw in enumerate(_raw_hits(response), start=1)
    ]


def pipeline_search_body(
    query: str, fields: Sequence[str] = DEFAULT_FIELDS, size: int = 10
) -> dict[str, Any]:
    """The first-stage body plus the rerank processor's query context.

    Never add `track_total_hits: false` (OpenSearch 2.19's rerank processor throws a NullPointerException)
    nor send `size: 0` (it fails with "No text documents were provided")."""
    body = first_stage_body(query, fields, size)
    body["ext"] = {"rerank": {"query_context": {"query_text": query}}}
    return body


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
    for rank, raw in enumerate(_raw_hits(response), start=1):
        score = raw.get("_score")
        hit = _hit(raw, first_stage_rank=None, first_stage_score=None)
        hit.rank = rank
        hit.retrostar_score = None if score is None else score * RELEVANCE_SCALE
        hits.append(hit)
    return hits


#: What OpenSearch answers a search carrying `ext.rerank` when no plugin registered that extension: a
#: cluster without neural-search (such as the 3.x nodes here, whose plugins Central does not serve).
_NO_RERANK_EXTENSION = "unknown named object category [org.opensearch.search.SearchExtBuilder]"


def pipeline_failure_hint(reason: str, pipeline: str) -> str | None:
    """What to do about an OpenSearch search through `pipeline` that failed with `reason`, if known."""
    if _NO_RERANK_EXTENSION in reason:
        return (
            "this cluster has no neural-search plugin, which the rerank pipeline needs; rerank client-side "
            "with --client-side"
        )
    if "pipeline" in reason.lower() and pipeline in reason:
        return f"create it with: retrosearch setup opensearch --pipeline {pipeline} ..."
    return None


def attach_first_stage(reranked: Sequence[Hit], first_stage: Sequence[Hit]) -> list[Hit]:
    """The reranked hits with the first-stage rank and score of the same documents filled in."""
    by_id = {hit.id: hit for hit in first_stage}
    attached = []
    for hit in reranked:
        original = by_id.get(hit.id)
        attached.append(
            replace(
                hit,
                first_stage_rank=original.first_stage_rank if original else None,
                first_stage_score=original.first_stage_score if original else None,
            )
        )
    return attached


def document_text(source: Mapping[str, Any], fields: Sequence[str] = DEFAULT_FIELDS) -> str:
    """What the connector ranks for one document: the fields' values concatenated with no separator, a
    missing field counting as "" and a list as its items joined by spaces. This mirrors OpenSearch's
    rerank processor (neural-search DocumentContextSourceFetcher) so both rerank paths score the same
    string."""
    parts = []
    for name in fields:
        value = source.get(name)
        if value is None:
            parts.append("")
        elif isinstance(value, list):
            parts.append(" ".join(str(item) for item in value))
        else:
            parts.append(str(value))
    return "".join(parts)


@dataclass(frozen=True)
class RerankScore:
    """The connector's verdict on one document of a request."""

    index: int
    relevance_score: float
    scored: bool
    explanation: str | None = None

    @property
    def retrostar_score(self) -> float | None:
        return self.relevance_score * RELEVANCE_SCALE if self.scored else None


class ConnectorClient:
    """The rerank connector's Cohere-shaped `POST /v1/rerank`, over one pooled HTTP connection.

    `timeout` should exceed the connector's own deadline: past it the connector answers what it knows,
    which is better than a client-side timeout with nothing."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        # What messages and reports name: the URL without any user:password written into it (httpx
        # still sends those as basic auth).
        self.base_url = str(httpx.URL(base_url).copy_with(userinfo=b"")).rstrip("/")

    def backend_kind(self) -> str | None:
        """The connector's backend ("sglang", "openai", "engine", "cpu") as its /ready reports it; None when
        the connector does not answer. Lets output say when scores come from the CPU fallback, not Retro*."""
        try:
            body = self._http.get("/ready", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            return None
        return body.get("backend") if isinstance(body, dict) else None

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        explain: bool = False,
        task: str | Mapping[str, Any] | None = None,
        document_ids: Sequence[str] | None = None,
    ) -> list[RerankScore]:
        """One score per document, best first (unscored documents last, as the connector orders them).

        `document_ids` only label the documents in the connector's rerank log (else it records hashes)."""
        if not documents:
            return []
        payload: dict[str, Any] = {"query": query, "documents": list(documents)}
        if document_ids is not None:
            payload["document_ids"] = list(document_ids)
        if explain:
            payload["return_explanations"] = True
        if task is not None:
            payload["task"] = task
        try:
            response = self._http.post(RERANK_PATH, json=payload)
        except httpx.TimeoutException:
            raise SearchError(f"the connector at {self.base_url} timed out") from None
        except httpx.HTTPError as error:
            raise SearchError(
                f"the connector at {self.base_url} is unreachable ({type(error).__name__})"
            ) from None
        if response.status_code >= 400:
            raise SearchError(
                f"the connector at {self.base_url} answered HTTP {response.status_code}: "
                f"{_error_message(response)}"
            )
        results = response.json().get("results", [])
        if len(results) != len(documents):
            raise SearchError(f"the connector answered {len(results)} results for {len(documents)} documents")
        return [
            RerankScore(
                index=int(result["index"]),
                relevance_score=float(result["relevance_score"]),
                scored=bool(result.get("scored", True)),
                explanation=_reasoning(result.get("explanation")),
            )
            for result in results
        ]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConnectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    texts = [document_text(hit.source, fields) for hit in hits]
    scores = connector.rerank(query, texts, explain=explain, task=task, document_ids=[hit.id for hit in hits])
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
    texts = [document_text(hit.source, fields) for hit in hits]
    scores = connector.rerank(query, texts, explain=True, task=task, document_ids=[hit.id for hit in hits])
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


def _require_positive_size(size: int) -> None:
    if size < 1:
        # size 0 through the rerank pipeline fails in OpenSearch 2.19; no hits is never a search here.
        raise ValueError(f"size must be at least 1, got {size}")


def _raw_hits(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(response["hits"]["hits"])


def _hit(raw: Mapping[str, Any], first_stage_rank: int | None, first_stage_score: float | None) -> Hit:
    source = dict(raw.get("_source") or {})
    return Hit(
        id=str(raw["_id"]),
        first_stage_rank=first_stage_rank,
        first_stage_score=first_stage_score,
        title=str(source.get(TITLE_FIELD) or ""),
        text=str(source.get(TEXT_FIELD) or ""),
        source=source,
    )


def _reasoning(explanation: Mapping[str, Any] | None) -> str | None:
    """The reasoning text of an explanation; several samples are kept apart by a rule line."""
    if not explanation:
        return None
    texts = [sample.get("text", "") for sample in explanation.get("samples") or []]
    return "\n---\n".join(text for text in texts if text) or None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]
