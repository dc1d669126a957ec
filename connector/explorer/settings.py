"""Where the explorer page searches, as flat `explore_*` fields the connector's settings inherit (so each
is also a `RETROSEARCH_EXPLORE_*` environment variable, a `--explore-*` option and a config-file key)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from retrostar_search.engines.connection import Engine, EngineConnection


class ExplorerSettings(BaseModel):
    explore: bool = Field(
        default=True,
        description="Serve the explorer page at /explore and its JSON API, which searches the explore "
        "engine's indices with the connector's credentials (behind --api-key when one is set).",
    )
    explore_engine: Engine | None = Field(
        default=None, description="Engine the explorer searches (unset: the log's engine, else opensearch)."
    )
    explore_url: str | None = Field(
        default=None,
        description="URL of the engine the explorer searches (unset: the log's engine and credentials when "
        "--log-url is set, else the engine's local default, http://127.0.0.1:9200 for OpenSearch).",
    )
    explore_username: str | None = Field(default=None, description="Basic-auth user for the explore engine.")
    explore_password: SecretStr | None = Field(
        default=None, description="Basic-auth password for the explore engine."
    )
    explore_api_key: SecretStr | None = Field(default=None, description="API key for the explore engine.")
    explore_ca_certs: str | None = Field(
        default=None, description="CA bundle to verify the explore engine's https."
    )
    explore_verify_certs: bool = Field(
        default=True,
        description="Verify the explore engine's https certificate (off only for test clusters).",
    )

    def explore_connection(self, log_connection: EngineConnection | None) -> EngineConnection:
        """The engine the explorer searches. Without an explore URL it is the log's engine (the cluster
        whose events the page lists), unless another engine is asked for."""
        if (
            self.explore_url is None
            and log_connection is not None
            and self.explore_engine in (None, log_connection.engine)
        ):
            return log_connection
        return EngineConnection(
            engine=self.explore_engine or Engine.OPENSEARCH,
            url=self.explore_url,
            username=self.explore_username,
            password=self.explore_password,
            api_key=self.explore_api_key,
            ca_certs=self.explore_ca_certs,
            verify_certs=self.explore_verify_certs,
        )
