"""Recent rerank events, read back from the rerank log for the explorer's events list."""

from __future__ import annotations

from typing import Any

from retrostar_search.rerank_log.schema import TIMESTAMP_FIELD, RecordKind, index_pattern

# The event fields the API answers with (a field added to events later stays out until it is named here).
EVENT_FIELDS = (
    TIMESTAMP_FIELD,
    "request_id",
    "task",
    "model",
    "backend",
    "query",
    "query_hash",
    "document_count",
    "queue_ms",
    "model_ms",
    "total_ms",
    "cache_hits",
    "degraded",
    "unscored_count",
    "rank_shift_mean",
    "rank_shift_max",
)


def recent_events(client: Any, log_index: str, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` events, newest first. No log index yet is no events, not an error."""
    response = client.search(
        index=index_pattern(log_index),
        body={
            "size": limit,
            "query": {"term": {"kind": RecordKind.EVENT.value}},
            "sort": [{TIMESTAMP_FIELD: {"order": "desc"}}],
            "_source": list(EVENT_FIELDS),
        },
        ignore_unavailable=True,
    )
    return [hit["_source"] for hit in response["hits"]["hits"]]
