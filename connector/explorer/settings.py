"""Where the explorer page searches, as flat `explore_*` fields the connector's settings inherit (so each
is also a `RETROSEARCH_EXPLORE_*` environment variable, a `--explore-*` option and a config-file key)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from retrostar_search.engines.connection import (
    Engine,
    EngineConnection,
    credential_fields,
    prefixed_connection,
)


class _ExploreTarget(BaseModel):
    """Whether the page is served, and the engine it searches."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    explore: bool = False
    """Serve the explorer page at /explore and its JSON API, which searches the explore engine's indices with
    the connector's credentials (behind --api-key; beyond loopback a key is required)."""

    explore_engine: Engine | None = None
    """Engine the explorer searches (unset: the log's engine, else opensearch)."""

    explore_url: str | None = None
    """URL of the engine the explorer searches (unset: the log's engine and credentials when --log-url is set,
    else the engine's local default, http://127.0.0.1:9200 for OpenSearch)."""


# Base order = field order (the target, then the credentials), as `serve --help` lists them.
class ExplorerSettings(credential_fields("explore", "the explore engine"), _ExploreTarget):  # type: ignore[misc]
    def explore_connection(self, log_connection: EngineConnection | None) -> EngineConnection:
        """The engine the explorer searches. Without an explore URL it is the log's engine (the cluster
        whose events the page lists), unless another engine is asked for."""
        if (
            self.explore_url is None
            and log_connection is not None
            and self.explore_engine in (None, log_connection.engine)
        ):
            return log_connection
        return prefixed_connection(
            self, "explore", engine=self.explore_engine or Engine.OPENSEARCH, url=self.explore_url
        )
