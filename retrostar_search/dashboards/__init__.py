"""OpenSearch Dashboards / Kibana saved objects for the rerank log, and their import.

`retrosearch dashboards export|import` (retrostar_search/cli/dashboards.py) is the user's entry point;
docs/observability.md describes the charts.
"""

from retrostar_search.dashboards.importer import (
    DashboardsConnection,
    DashboardsImportError,
    ImportFailure,
    ImportResult,
    import_saved_objects,
)
from retrostar_search.dashboards.saved_objects import DEFAULT_INDEX_PATTERN, saved_objects, to_ndjson
from retrostar_search.dashboards.targets import Target

__all__ = [
    "DEFAULT_INDEX_PATTERN",
    "DashboardsConnection",
    "DashboardsImportError",
    "ImportFailure",
    "ImportResult",
    "Target",
    "import_saved_objects",
    "saved_objects",
    "to_ndjson",
]
