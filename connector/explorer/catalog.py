"""The indices the explorer's picker offers: what `_cat/indices` lists, less system and log indices."""

from __future__ import annotations

from typing import Any

from retrostar_search.rerank_log.schema import index_pattern


def searchable_indices(client: Any, log_index: str | None) -> list[dict[str, Any]]:
    """`[{"name", "documents"}]` by name. Dot-prefixed (system and hidden) indices and the rerank log's
    own daily indices are left out: searching them for a query makes no sense."""
    log_prefix = index_pattern(log_index).removesuffix("*") if log_index else None
    rows = client.cat.indices(format="json", h="index,docs.count")
    indices = [
        {"name": row["index"], "documents": int(row.get("docs.count") or 0)}
        for row in rows
        if not row["index"].startswith(".")
        and not (log_prefix is not None and row["index"].startswith(log_prefix))
    ]
    return sorted(indices, key=lambda index: index["name"])
