"""The rerank log's layout: one index family, two kinds of record, and the mapping that types them.

Events (one per rerank request) and document records (one per reranked document) share daily indices
`<prefix>-YYYY.MM.DD` and are told apart by `kind`. One family means one index template, one retention
policy and one index pattern for the dashboards; the shared fields (time, request id, task, model, query)
sit on both kinds, so per-document charts can group by query without a join.

The dashboards are generated from `MAPPING_PROPERTIES`, so a field renamed here is renamed there too.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any


class RecordKind(StrEnum):
    EVENT = "event"
    DOCUMENT = "document"


TIMESTAMP_FIELD = "@timestamp"
# Keyword sub-field of the query text, for terms aggregations ("slowest queries").
QUERY_KEYWORD_FIELD = "query.keyword"
# Long queries are still stored and searchable; only their keyword (aggregatable) copy is skipped.
_QUERY_KEYWORD_IGNORE_ABOVE = 1024

_KEYWORD = {"type": "keyword"}
_INTEGER = {"type": "integer"}
_FLOAT = {"type": "float"}
_BOOLEAN = {"type": "boolean"}

MAPPING_PROPERTIES: dict[str, dict[str, Any]] = {
    # Both kinds.
    TIMESTAMP_FIELD: {"type": "date"},
    "kind": _KEYWORD,
    "request_id": _KEYWORD,
    "task": _KEYWORD,
    "model": _KEYWORD,
    "backend": _KEYWORD,
    "query": {
        "type": "text",
        "fields": {"keyword": {"type": "keyword", "ignore_above": _QUERY_KEYWORD_IGNORE_ABOVE}},
    },
    "query_hash": _KEYWORD,
    # Events.
    "document_count": _INTEGER,
    "queue_ms": _FLOAT,
    "model_ms": _FLOAT,
    "total_ms": _FLOAT,
    "cache_hits": _INTEGER,
    "cache_hit_ratio": _FLOAT,
    "degraded": _BOOLEAN,
    "unscored_count": _INTEGER,
    "rank_shift_mean": _FLOAT,
    "rank_shift_max": _INTEGER,
    # Document records.
    "doc_id": _KEYWORD,
    "doc_id_hashed": _BOOLEAN,
    "first_stage_rank": _INTEGER,
    "new_rank": _INTEGER,
    "rank_change": _INTEGER,
    "rank_shift": _INTEGER,
    "score": _FLOAT,
    "samples": _INTEGER,
    "sample_count": _INTEGER,
    "unparsed_samples": _INTEGER,
    "cached": _BOOLEAN,
    "reasoning": {"type": "text"},
}

# Unknown fields are kept in _source but not indexed: a newer writer meeting today's index (created from
# an older template) still gets its events in, instead of having them rejected until tomorrow's index.
MAPPINGS: dict[str, Any] = {"dynamic": False, "properties": MAPPING_PROPERTIES}

# Log indices are small; one shard each, and a replica only when the cluster has a second node for it.
INDEX_SETTINGS: dict[str, Any] = {"number_of_shards": 1, "auto_expand_replicas": "0-1"}

# High enough not to tie with a user's catch-all templates (equal priorities on overlapping patterns
# are rejected by both engines).
TEMPLATE_PRIORITY = 200
TEMPLATE_META = {"managed_by": "retrostar-search", "schema_version": 1}


def index_pattern(prefix: str) -> str:
    """The wildcard matching every daily index of the log."""
    return f"{prefix}-*"


def daily_index(prefix: str, when: datetime) -> str:
    """The index an event at `when` (timezone-aware) belongs to: one per UTC day."""
    return f"{prefix}-{when.strftime('%Y.%m.%d')}"


def template_name(prefix: str) -> str:
    return prefix


def retention_policy_name(prefix: str) -> str:
    return f"{prefix}-retention"


def index_template(prefix: str, extra_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Body of `PUT _index_template/<name>` (composable templates: OpenSearch 2.x, Elasticsearch 7.8+)."""
    return {
        "index_patterns": [index_pattern(prefix)],
        "priority": TEMPLATE_PRIORITY,
        "template": {"settings": {**INDEX_SETTINGS, **(extra_settings or {})}, "mappings": MAPPINGS},
        "_meta": TEMPLATE_META,
    }
