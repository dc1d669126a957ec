"""How to reach a search engine: one typed description, turned into the official client.

Every command that talks to an engine (index, setup, search, eval, the rerank log) builds its client here,
so https, basic auth, API keys, CA bundles and the explicit no-verify switch behave the same everywhere;
the dashboards apps are reached with the same description (`ServiceConnection`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model, model_validator

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch
    from opensearchpy import OpenSearch


class Engine(StrEnum):
    OPENSEARCH = "opensearch"
    ELASTICSEARCH = "elasticsearch"


DEFAULT_URLS: dict[Engine, str] = {
    Engine.OPENSEARCH: "http://127.0.0.1:9200",
    Engine.ELASTICSEARCH: "http://127.0.0.1:9201",
}


class ServiceConnection(BaseModel):
    """Where an HTTP service is and how to authenticate (basic auth or an API key, never both); secrets
    stay `SecretStr` so they never print."""

    model_config = ConfigDict(frozen=True)

    url: str | None = None  # None: the engine's local default (an EngineConnection's `resolved_url`)
    # Basic auth, or an API key sent as `Authorization: ApiKey ...`.
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    ca_certs: str | None = None  # a CA bundle to verify https with
    verify_certs: bool = True
    request_timeout: float = 60.0  # seconds

    @model_validator(mode="after")
    def _one_kind_of_auth(self) -> ServiceConnection:
        if self.api_key is not None and self.username is not None:
            raise ValueError("give either a username/password or an API key, not both")
        return self


class EngineConnection(ServiceConnection):
    """Where an engine is, which one, and how to authenticate."""

    engine: Engine = Engine.OPENSEARCH

    @property
    def resolved_url(self) -> str:
        return self.url or DEFAULT_URLS[self.engine]

    def client(self) -> OpenSearch | Elasticsearch:
        if self.engine is Engine.OPENSEARCH:
            return self.opensearch_client()
        return self.elasticsearch_client()

    def opensearch_client(self) -> OpenSearch:
        from opensearchpy import OpenSearch

        options = self._tls_options()
        if self.api_key is not None:
            options["headers"] = {"Authorization": f"ApiKey {self.api_key.get_secret_value()}"}
        return OpenSearch(
            timeout=self.request_timeout,
            # urllib3 keeps one connection per host by default; parallel bulk threads need more.
            pool_maxsize=16,
            http_auth=self._basic_auth(),
            **options,
        )

    def elasticsearch_client(self) -> Elasticsearch:
        from elasticsearch import Elasticsearch

        from retrostar_search.engines.elasticsearch_compat import RestCompatibleTransport

        options = self._tls_options()
        if self.api_key is not None:
            options["api_key"] = self.api_key.get_secret_value()
        return Elasticsearch(
            request_timeout=self.request_timeout,
            basic_auth=self._basic_auth(),
            # 8.x and 9.x servers alike, whichever client major is installed (see the module).
            transport_class=RestCompatibleTransport,
            **options,
        )

    def _tls_options(self) -> dict[str, Any]:
        """The host and the certificate checks, spelled the same by both clients."""
        options: dict[str, Any] = {
            "hosts": [self.resolved_url],
            "verify_certs": self.verify_certs,
            "ssl_show_warn": self.verify_certs,
        }
        if self.ca_certs:
            options["ca_certs"] = self.ca_certs
        return options

    def _basic_auth(self) -> tuple[str, str] | None:
        if self.username is None:
            return None
        return (self.username, self.password.get_secret_value() if self.password else "")


# The credential and TLS fields a settings model repeats for each engine it talks to (the rerank log's
# `log_*`, the explorer's `explore_*`), with their help text: derived from EngineConnection's own fields,
# so every engine-facing setting means the same thing.
_CREDENTIAL_HELP = {
    "username": "Basic-auth user for {what}.",
    "password": "Basic-auth password for {what}.",
    "api_key": "API key for {what}.",
    "ca_certs": "CA bundle to verify {what}'s https.",
    "verify_certs": "Verify {what}'s https certificate (off only for test clusters).",
}


def credential_fields(prefix: str, what: str) -> type[BaseModel]:
    """A model with `<prefix>_username`, `_password`, `_api_key`, `_ca_certs` and `_verify_certs` (typed and
    defaulted as in EngineConnection), for a flat settings model to inherit; `what` names the engine in
    the help text ("the log engine")."""
    fields: dict[str, Any] = {
        f"{prefix}_{name}": (
            EngineConnection.model_fields[name].annotation,
            Field(
                default=EngineConnection.model_fields[name].default, description=help_text.format(what=what)
            ),
        )
        for name, help_text in _CREDENTIAL_HELP.items()
    }
    return create_model(f"{prefix.title()}CredentialFields", **fields)


def prefixed_connection(settings: BaseModel, prefix: str, **connection: Any) -> EngineConnection:
    """The EngineConnection of `credential_fields(prefix, ...)` in `settings`, with `connection`'s other
    fields (engine, url, request_timeout)."""
    credentials = {name: getattr(settings, f"{prefix}_{name}") for name in _CREDENTIAL_HELP}
    return EngineConnection(**credentials, **connection)
