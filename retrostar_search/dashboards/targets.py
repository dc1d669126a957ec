"""The two dashboard apps the saved objects are made for, and what differs between them.

Both read the saved-object format of Kibana 7.10, which OpenSearch Dashboards forked and still writes in
2.x: a `migrationVersion` per type (index-pattern 7.6.0, visualization 7.10.0, dashboard 7.9.3, as in an
OpenSearch Dashboards 2.x export). Kibana 8 imports 7.x exports and runs its own migrations from those
versions up (adding the 8.x defaults), so one generator serves both; only the XSRF header of the import
API and the version stamped on dashboard panels differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Target(StrEnum):
    OPENSEARCH_DASHBOARDS = "opensearch-dashboards"
    KIBANA = "kibana"


@dataclass(frozen=True, slots=True)
class TargetProfile:
    #: Header the Saved Objects API requires on a POST (its CSRF guard), sent with the value "true".
    xsrf_header: str
    #: Version recorded on each dashboard panel: the app version that "created" it. Kibana runs its
    #: embeddable migrations for panels older than itself, so Kibana gets the 7.10 the objects are written in.
    panel_version: str
    #: Version the objects were written for, as documentation in the NDJSON's own terms.
    written_for: str


MIGRATION_VERSIONS: dict[str, str] = {
    "index-pattern": "7.6.0",
    "visualization": "7.10.0",
    "dashboard": "7.9.3",
}

PROFILES: dict[Target, TargetProfile] = {
    Target.OPENSEARCH_DASHBOARDS: TargetProfile(
        xsrf_header="osd-xsrf", panel_version="2.19.0", written_for="OpenSearch Dashboards 2.19"
    ),
    Target.KIBANA: TargetProfile(xsrf_header="kbn-xsrf", panel_version="7.10.0", written_for="Kibana 8.19"),
}
