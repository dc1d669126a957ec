"""The index pattern's field list, derived from the rerank log's own mapping.

Shipping the field list (instead of letting the app fetch it) makes the visualizations valid even before
the first log index exists; deriving it from `MAPPING_PROPERTIES` keeps both sides in step.
"""

from __future__ import annotations

from typing import Any

from retrostar_search.rerank_log.schema import MAPPING_PROPERTIES

# Engine field type -> the dashboards' own field type.
_FIELD_TYPES: dict[str, str] = {
    "date": "date",
    "keyword": "string",
    "text": "string",
    "integer": "number",
    "long": "number",
    "float": "number",
    "double": "number",
    "boolean": "boolean",
}

# Metadata fields every exported index pattern lists.
_META_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "_id", "type": "string", "esTypes": ["_id"], "aggregatable": True, "searchable": True},
    {"name": "_index", "type": "string", "esTypes": ["_index"], "aggregatable": True, "searchable": True},
    {"name": "_score", "type": "number", "aggregatable": False, "searchable": False},
    {
        "name": "_source",
        "type": "_source",
        "esTypes": ["_source"],
        "aggregatable": False,
        "searchable": False,
    },
)


def index_pattern_fields(properties: dict[str, dict[str, Any]] = MAPPING_PROPERTIES) -> list[dict[str, Any]]:
    """Field specs as an index-pattern saved object stores them (JSON-encoded in `attributes.fields`)."""
    fields = [{**meta, "count": 0, "scripted": False, "readFromDocValues": False} for meta in _META_FIELDS]
    for name, spec in properties.items():
        fields.append(_field(name, spec["type"]))
        for sub_name, sub_spec in spec.get("fields", {}).items():
            fields.append(_field(f"{name}.{sub_name}", sub_spec["type"], parent=name))
    return sorted(fields, key=lambda field: field["name"])


def field_types(properties: dict[str, dict[str, Any]] = MAPPING_PROPERTIES) -> dict[str, str]:
    """Every field a visualization may name, with its dashboards type."""
    return {field["name"]: field["type"] for field in index_pattern_fields(properties)}


def _field(name: str, es_type: str, parent: str | None = None) -> dict[str, Any]:
    analysed = es_type == "text"  # text fields have no doc values: searchable, not aggregatable
    field: dict[str, Any] = {
        "name": name,
        "type": _FIELD_TYPES[es_type],
        "esTypes": [es_type],
        "count": 0,
        "scripted": False,
        "searchable": True,
        "aggregatable": not analysed,
        "readFromDocValues": not analysed,
    }
    if parent is not None:
        field["subType"] = {"multi": {"parent": parent}}
    return field
