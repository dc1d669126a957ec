"""How to reach a search engine: one typed description, turned into the official client.

Every command that talks to an engine (index, setup, search, eval, the rerank log) builds its client here,
so https, basic auth, API keys, CA bundles and the explicit no-verify switch behave the same everywhere.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

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


class EngineConnection(BaseModel):
    """Where an engine is and how to authenticate; secrets stay `SecretStr` so they never print."""

    model_config = ConfigDict(frozen=True)

    engine: Engine = Engine.OPENSEARCH
    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = 60.0

    @model_validator(mode="after")
    def _one_kind_of_auth(self) -> EngineConnection:
        if self.api_key is not None and self.username is not None:
            raise ValueError("give either a username/password or an API key, not both")
        return self

    @property
    def resolved_url(self) -> str:
        return self.url or DEFAULT_URLS[self.engine]

    def client(self) -> OpenSearch | Elasticsearch:
        if self.engine is Engine.OPENSEARCH:
            return self.opensearch_client()
        return self.elasticsearch_client()

    def opensearch_client(self) -> OpenSearch:
        from opensearchpy import OpenSearch

        kwargs: dict[str, object] = {
            "hosts": [self.resolved_url],
            "timeout": self.request_timeout,
            # urllib3 keeps one connection per host by default; parallel bulk threads need more.
            "pool_maxsize": 16,
            "verify_certs": self.verify_certs,
            "ssl_show_warn": self.verify_certs,
        }
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        if self.username is not None:
            kwargs["http_auth"] = (self.username, self.password.get_secret_value() if self.password else "")
        if self.api_key is not None:
            kwargs["headers"] = {"Authorization": f"ApiKey {self.api_key.get_secret_value()}"}
        return OpenSearch(**kwargs)

    def elasticsearch_client(self) -> Elasticsearch:
        from elasticsearch import Elasticsearch

        from retrostar_search.engines.elasticsearch_compat import RestCompatibleTransport

        kwargs: dict[str, object] = {
            "hosts": [self.resolved_url],
            # 8.x and 9.x servers alike, whichever client major is installed (see the module).
            "transport_class": RestCompatibleTransport,
            "request_timeout": self.request_timeout,
            "verify_certs": self.verify_certs,
            "ssl_show_warn": self.verify_certs,
        }
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        if self.username is not None:
            kwargs["basic_auth"] = (self.username, self.password.get_secret_value() if self.password else "")
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key.get_secret_value()
        return Elasticsearch(**kwargs)
