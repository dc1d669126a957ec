"""The rerank-log dashboard as Saved Objects NDJSON: an index pattern, the visualizations, one dashboard.

Objects refer to each other only through `references` (the `indexRefName` / `panelRefName` indirection),
never by id inside their JSON strings, which is what the import API resolves and rewrites. Ids are
derived from the index pattern, so re-importing replaces the same objects (with `overwrite=true`) and two
log prefixes get two independent dashboards.
"""

from __future__ import annotations

import json
import re
from typing import Any

from retrostar_search.dashboards.index_pattern import index_pattern_fields
from retrostar_search.dashboards.targets import MIGRATION_VERSIONS, PROFILES, Target
from retrostar_search.dashboards.visualizations import Visualization, visualizations
from retrostar_search.rerank_log.schema import TIMESTAMP_FIELD
from retrostar_search.rerank_log.settings import DEFAULT_LOG_INDEX

DEFAULT_INDEX_PATTERN = f"{DEFAULT_LOG_INDEX}*"
INDEX_REF_NAME = "kibanaSavedObjectMeta.searchSourceJSON.index"

# The dashboard grid is 48 units wide: two charts per row.
_PANEL_WIDTH, _PANEL_HEIGHT, _GRID_COLUMNS = 24, 15, 2


def object_id_prefix(pattern: str) -> str:
    """A readable id stem from the pattern: `retrostar-log*` -> `retrostar-log`."""
    stem = re.sub(r"[^a-z0-9]+", "-", pattern.lower()).strip("-")
    return stem or "retrostar-log"


def saved_objects(target: Target, pattern: str = DEFAULT_INDEX_PATTERN) -> list[dict[str, Any]]:
    """Index pattern, visualizations, then the dashboard: the order an export lists dependencies in."""
    stem = object_id_prefix(pattern)
    pattern_id = f"{stem}-index-pattern"
    charts = visualizations()
    chart_objects = [_visualization(chart, f"{stem}-{chart.slug}", pattern_id) for chart in charts]
    return [
        _index_pattern(pattern_id, pattern),
        *chart_objects,
        _dashboard(f"{stem}-dashboard", target, pattern, [obj["id"] for obj in chart_objects]),
    ]


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n" for obj in objects)


def _saved_object(
    object_type: str, object_id: str, attributes: dict[str, Any], references: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "type": object_type,
        "id": object_id,
        "attributes": attributes,
        "references": references,
        "migrationVersion": {object_type: MIGRATION_VERSIONS[object_type]},
    }


def _index_pattern(object_id: str, pattern: str) -> dict[str, Any]:
    attributes = {
        "title": pattern,
        "timeFieldName": TIMESTAMP_FIELD,
        "fields": json.dumps(index_pattern_fields(), separators=(",", ":")),
    }
    return _saved_object("index-pattern", object_id, attributes, [])


def _visualization(chart: Visualization, object_id: str, pattern_id: str) -> dict[str, Any]:
    search_source = {
        "query": {"query": f"kind:{chart.kind.value}", "language": "kuery"},
        "filter": [],
        "indexRefName": INDEX_REF_NAME,
    }
    attributes = {
        "title": chart.title,
        "description": chart.description,
        "visState": json.dumps(chart.vis_state(), separators=(",", ":")),
        "uiStateJSON": "{}",
        "version": 1,
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(search_source, separators=(",", ":"))},
    }
    references = [{"name": INDEX_REF_NAME, "type": "index-pattern", "id": pattern_id}]
    return _saved_object("visualization", object_id, attributes, references)


def _dashboard(object_id: str, target: Target, pattern: str, chart_ids: list[str]) -> dict[str, Any]:
    profile = PROFILES[target]
    panels = []
    references = []
    for position, chart_id in enumerate(chart_ids):
        panel_index = str(position + 1)
        ref_name = f"panel_{position}"
        panels.append(
            {
                "version": profile.panel_version,
                "gridData": {
                    "x": (position % _GRID_COLUMNS) * _PANEL_WIDTH,
                    "y": (position // _GRID_COLUMNS) * _PANEL_HEIGHT,
                    "w": _PANEL_WIDTH,
                    "h": _PANEL_HEIGHT,
                    "i": panel_index,
                },
                "panelIndex": panel_index,
                "embeddableConfig": {},
                "panelRefName": ref_name,
            }
        )
        references.append({"name": ref_name, "type": "visualization", "id": chart_id})
    attributes = {
        "title": "Retro* rerank log",
        "description": f"What the Retro* reranker did, from the rerank log in {pattern} "
        f"(made for {profile.written_for}).",
        "hits": 0,
        "panelsJSON": json.dumps(panels, separators=(",", ":")),
        "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
        "version": 1,
        "timeRestore": True,
        "timeFrom": "now-24h",
        "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 60_000},
        "kibanaSavedObjectMeta": {
            "searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})
        },
    }
    return _saved_object("dashboard", object_id, attributes, references)
