"""The request bodies of a search: the BM25 first stage, and the same with the rerank processor's context."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DEFAULT_FIELDS: tuple[str, ...] = ("title", "text")


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


def pipeline_search_body(
    query: str, fields: Sequence[str] = DEFAULT_FIELDS, size: int = 10
) -> dict[str, Any]:
    """The first-stage body plus the rerank processor's query context.

    Never add `track_total_hits: false` (OpenSearch 2.19's rerank processor throws a NullPointerException)
    nor send `size: 0` (it fails with "No text documents were provided")."""
    body = first_stage_body(query, fields, size)
    body["ext"] = {"rerank": {"query_context": {"query_text": query}}}
    return body


def _require_positive_size(size: int) -> None:
    if size < 1:
        # size 0 through the rerank pipeline fails in OpenSearch 2.19; no hits is never a search here.
        raise ValueError(f"size must be at least 1, got {size}")
