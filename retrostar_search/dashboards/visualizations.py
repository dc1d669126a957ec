"""The dashboard's charts, as legacy (aggregation-based) visualizations: the one kind both OpenSearch
Dashboards 2.x and Kibana 8 render from the same `visState`.

Each chart reads either the per-request events or the per-document records of the rerank log (see
retrostar_search/rerank_log/schema.py), selected by a `kind:` query in its search source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retrostar_search.rerank_log.schema import QUERY_KEYWORD_FIELD, TIMESTAMP_FIELD, RecordKind

_MISSING_QUERY_LABEL = "(query text not logged)"


@dataclass(frozen=True, slots=True)
class Visualization:
    slug: str  # part of the saved object's id
    title: str
    description: str
    kind: RecordKind  # which records it aggregates
    vis_type: str
    params: dict[str, Any]
    aggs: list[dict[str, Any]]

    def vis_state(self) -> dict[str, Any]:
        return {"title": self.title, "type": self.vis_type, "params": self.params, "aggs": self.aggs}


# -- aggregations -------------------------------------------------------------------------------------


def _agg(agg_id: str, agg_type: str, schema: str, **params: Any) -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": agg_type, "schema": schema, "params": params}


def _metric(agg_id: str, agg_type: str, field: str | None = None, label: str = "") -> dict[str, Any]:
    params: dict[str, Any] = {}
    if field is not None:
        params["field"] = field
    if label:
        params["customLabel"] = label
    return _agg(agg_id, agg_type, "metric", **params)


def _over_time(agg_id: str) -> dict[str, Any]:
    return _agg(
        agg_id,
        "date_histogram",
        "segment",
        field=TIMESTAMP_FIELD,
        interval="auto",
        min_doc_count=1,
        extended_bounds={},
    )


def _histogram(
    agg_id: str, field: str, interval: int, label: str, bounds: tuple[int, int] | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "field": field,
        "interval": interval,
        "min_doc_count": False,
        "has_extended_bounds": bounds is not None,
        "extended_bounds": {"min": bounds[0], "max": bounds[1]} if bounds else {},
        "customLabel": label,
    }
    return _agg(agg_id, "histogram", "segment", **params)


def _terms(
    agg_id: str, schema: str, field: str, order_by: str, size: int, label: str, missing_label: str = ""
) -> dict[str, Any]:
    return _agg(
        agg_id,
        "terms",
        schema,
        field=field,
        orderBy=order_by,
        order="desc",
        size=size,
        otherBucket=False,
        otherBucketLabel="Other",
        missingBucket=bool(missing_label),
        missingBucketLabel=missing_label or "Missing",
        customLabel=label,
    )


# -- chart parameters ---------------------------------------------------------------------------------


def _xy_params(
    chart_type: str, series: list[tuple[str, str]], value_title: str, *, percentage: bool = False
) -> dict[str, Any]:
    """Parameters of a line / area / vertical-bar chart; `series` is (metric agg id, label) per series."""
    return {
        "type": chart_type,
        "grid": {"categoryLines": False},
        "categoryAxes": [
            {
                "id": "CategoryAxis-1",
                "type": "category",
                "position": "bottom",
                "show": True,
                "style": {},
                "scale": {"type": "linear"},
                "labels": {"show": True, "filter": True, "truncate": 100},
                "title": {},
            }
        ],
        "valueAxes": [
            {
                "id": "ValueAxis-1",
                "name": "LeftAxis-1",
                "type": "value",
                "position": "left",
                "show": True,
                "style": {},
                "scale": {"type": "linear", "mode": "percentage" if percentage else "normal"},
                "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                "title": {"text": value_title},
            }
        ],
        "seriesParams": [
            {
                "show": True,
                "type": chart_type,
                "mode": "stacked" if chart_type != "line" else "normal",
                "data": {"id": agg_id, "label": label},
                "valueAxis": "ValueAxis-1",
                "drawLinesBetweenPoints": True,
                "lineWidth": 2,
                "interpolate": "linear",
                "showCircles": True,
            }
            for agg_id, label in series
        ],
        "addTooltip": True,
        "addLegend": True,
        "legendPosition": "right",
        "times": [],
        "addTimeMarker": False,
        "labels": {"show": False},
        "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
    }


_TABLE_PARAMS: dict[str, Any] = {
    "perPage": 10,
    "showPartialRows": False,
    "showMetricsAtAllLevels": False,
    "showTotal": False,
    "totalFunc": "sum",
    "percentageCol": "",
}


# -- the charts ---------------------------------------------------------------------------------------


def _xy_chart(
    slug: str,
    title: str,
    description: str,
    kind: RecordKind,
    chart_type: str,
    value_title: str,
    aggs: list[dict[str, Any]],
    *,
    percentage: bool = False,
) -> Visualization:
    """A line / area / histogram chart with one series per metric aggregation, labelled as the metric."""
    series = [(agg["id"], agg["params"].get("customLabel", "")) for agg in aggs if agg["schema"] == "metric"]
    params = _xy_params(chart_type, series, value_title, percentage=percentage)
    return Visualization(slug, title, description, kind, chart_type, params, aggs)


def _latency_over_time() -> Visualization:
    return _xy_chart(
        "latency-over-time",
        "Retro* rerank latency over time",
        "Mean latency per rerank request, split into queue, model and total milliseconds.",
        RecordKind.EVENT,
        "line",
        "Milliseconds",
        [
            _metric("1", "avg", "total_ms", "Total (ms)"),
            _metric("2", "avg", "model_ms", "Model (ms)"),
            _metric("3", "avg", "queue_ms", "Queue (ms)"),
            _over_time("4"),
        ],
    )


def _score_distribution() -> Visualization:
    documents = _metric("1", "count", label="Documents")
    scores = _histogram("2", "score", 5, "Retro* score", (0, 100))
    description = "How many reranked documents got each Retro* score (0-100, bins of 5)."
    return _xy_chart(
        "score-distribution", "Retro* score distribution", description, RecordKind.DOCUMENT, "histogram",
        "Documents", [documents, scores],
    )  # fmt: skip


def _rank_change_distribution() -> Visualization:
    documents = _metric("1", "count", label="Documents")
    description = "First-stage rank minus new rank per document: positive values moved up."
    return _xy_chart(
        "rank-change-distribution", "Retro* rank changes", description, RecordKind.DOCUMENT, "histogram",
        "Documents", [documents, _histogram("2", "rank_change", 1, "Rank change")],
    )  # fmt: skip


def _cache_hit_rate() -> Visualization:
    hit_rate = _metric("1", "avg", "cache_hit_ratio", "Cache hit rate")
    description = "Mean share of each request's documents served from the score cache."
    return _xy_chart(
        "cache-hit-rate", "Retro* score-cache hit rate", description, RecordKind.EVENT, "line",
        "Share of documents", [hit_rate, _over_time("2")],
    )  # fmt: skip


def _degraded_share() -> Visualization:
    requests = _metric("1", "count", label="Requests")
    degraded = _terms("3", "group", "degraded", "1", 2, "Degraded")
    description = "Share of rerank requests answered degraded (backend failure or deadline)."
    return _xy_chart(
        "degraded-rate", "Retro* degraded responses", description, RecordKind.EVENT, "area",
        "Share of requests", [requests, _over_time("2"), degraded], percentage=True,
    )  # fmt: skip


def _query_table(
    slug: str, title: str, description: str, metrics: list[tuple[str, str | None, str]]
) -> Visualization:
    """A table with one row per distinct query (by hash), ranked by the first metric, with its text;
    `metrics` are (aggregation, field, label), numbered "1", "2"... in order."""
    return Visualization(
        slug=slug,
        title=title,
        description=description,
        kind=RecordKind.EVENT,
        vis_type="table",
        params=_TABLE_PARAMS,
        aggs=[
            *(_metric(str(number), *metric) for number, metric in enumerate(metrics, start=1)),
            _terms("10", "bucket", "query_hash", "1", 20, "Query hash"),
            _terms("11", "bucket", QUERY_KEYWORD_FIELD, "1", 1, "Query", _MISSING_QUERY_LABEL),
        ],
    )


def _slowest_queries() -> Visualization:
    description = (
        "Queries by their slowest rerank (total milliseconds); the text shows when --log-queries is on."
    )
    metrics = [
        ("max", "total_ms", "Slowest total (ms)"),
        ("avg", "model_ms", "Mean model (ms)"),
        ("max", "document_count", "Documents"),
        ("count", None, "Requests"),
    ]
    return _query_table("slowest-queries", "Retro* slowest queries", description, metrics)


def _most_changed_queries() -> Visualization:
    description = (
        "Queries whose ranking the reranker changed most: mean and largest move of a document, in ranks."
    )
    metrics = [
        ("max", "rank_shift_mean", "Mean rank shift"),
        ("max", "rank_shift_max", "Largest rank shift"),
        ("count", None, "Requests"),
    ]
    return _query_table("most-changed-queries", "Retro* most-changed queries", description, metrics)


def visualizations() -> list[Visualization]:
    """The charts, in dashboard order."""
    return [
        _latency_over_time(),
        _degraded_share(),
        _score_distribution(),
        _rank_change_distribution(),
        _cache_hit_rate(),
        _slowest_queries(),
        _most_changed_queries(),
    ]
