"""Everything `retrosearch serve` can be told, from CLI options, `RETROSEARCH_*` environment variables or a
TOML config file (in that order of precedence, then the defaults below).

The config file holds the same names as flat keys (`backend_url = "http://gpu-host:30000"`); it is named by
`--config PATH` or `RETROSEARCH_CONFIG`.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from connector.explorer.settings import ExplorerSettings
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.rerank_log.settings import RerankLogSettings
from retrostar_search.settings import RerankerSettings

ENV_PREFIX = "RETROSEARCH_"
CONFIG_ENV_VAR = f"{ENV_PREFIX}CONFIG"


class LogLevel(StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


class ServerSettings(BaseModel):
    """The HTTP service: where it listens, who may call it, how long a rerank may take."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    config: Path | None = None
    """TOML file with any of these settings as flat keys; CLI options and environment variables win over
    it."""

    host: str = "127.0.0.1"
    """Interface to listen on."""

    port: int = Field(default=8000, ge=0, le=65535)
    """Port to listen on."""

    workers: int = Field(default=1, ge=1)
    """Processes serving the port (uvicorn workers); give them one score cache with --cache-url."""

    api_key: SecretStr | None = None
    """Bearer key clients must send (none: no authentication, allowed on loopback only unless
    --allow-unauthenticated)."""

    allow_unauthenticated: bool = False
    """Listen beyond loopback without --api-key (behind an authenticating proxy or on an isolated network);
    the explorer still needs a key there."""

    deadline: float = Field(default=25.0, ge=0)
    """Seconds a rerank may take before it answers with what is known (0: no deadline). Under Elasticsearch's
    30 s limit; a request may ask for a shorter one."""

    strict: bool = False
    """Answer 502/504 instead of a degraded 200 when the backend fails or the deadline passes."""

    keep_alive: int = Field(default=75, ge=1)
    """Seconds an idle client connection stays open. Longer than the engines' HTTP clients keep an idle
    connection for reuse (60 s in OpenSearch ML Commons and Elasticsearch), so the connector never closes
    a connection just as an engine sends a request on it."""

    log_level: LogLevel = LogLevel.INFO
    """Log level; the HTTP and engine clients' per-request lines show at debug only."""

    def deadline_seconds(self, requested: float | None = None) -> float | None:
        """The deadline for one request: the server's, or a shorter one the request asks for."""
        server = self.deadline or None
        if requested is None:
            return server
        return requested if server is None else min(requested, server)


class LimitSettings(BaseModel):
    """What one request may hold: refused with 413, 408 when its body is too slow, or 429 when too many are
    in flight."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    max_documents: int = Field(default=1000, ge=1)
    """Most documents in one request (else 413)."""

    max_document_chars: int = Field(default=100_000, ge=1)
    """Most characters in one document (else 413)."""

    max_query_chars: int = Field(default=32_768, ge=1)
    """Most characters in the query (else 413): about 8,000 tokens, a quarter of the 32k context Retro* is
    evaluated with."""

    max_definition_chars: int = Field(default=4096, ge=1)
    """Most characters in each part of a request's task (query_type, doc_type, relevance_definition;
    else 413)."""

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    """Largest request body in bytes (else 413)."""

    body_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client may take to send its request body (else 408); a request holds no rerank slot
    while its body arrives."""

    max_concurrent_requests: int = Field(default=64, ge=1)
    """Rerank requests served at once, counted once their body is read; more get 429 with Retry-After."""


class ConnectorSettings(
    BaseSettings, ServerSettings, RerankerSettings, LimitSettings, RerankLogSettings, ExplorerSettings
):
    """The reranker's settings (the core's `RerankerSettings`), the HTTP service's, and the rerank log's
    `log_*` and the explorer's `explore_*` fields, all flat."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The config file's path is itself a setting, so it is looked up before the file is read.
        init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        config_path = init_kwargs.get("config") or os.environ.get(CONFIG_ENV_VAR)
        if not config_path:
            return init_settings, env_settings
        return init_settings, env_settings, _toml_source(settings_cls, Path(config_path))

    @model_validator(mode="after")
    def _check_exposure(self) -> ConnectorSettings:
        if self.api_key is not None or is_loopback(self.host):
            return self
        if self.explore:
            raise ValueError(
                f"the explorer on {self.host} needs --api-key: it searches the engine with the connector's "
                "credentials for whoever reaches it (set --api-key, listen on 127.0.0.1, or drop --explore)"
            )
        if not self.allow_unauthenticated:
            raise ValueError(
                f"listening on {self.host} needs --api-key: without one anyone who reaches the port can use "
                "the GPU (set --api-key or RETROSEARCH_API_KEY, listen on 127.0.0.1, or pass "
                "--allow-unauthenticated behind an authenticating proxy)"
            )
        return self

    @model_validator(mode="after")
    def _check_connections(self) -> ConnectorSettings:
        # RerankerSettings has checked its own combinations by now; these are the engines'.
        try:
            # Builds the explorer's engine connection and, when the log is on, the log's.
            self.explorer_connection()
        except ValidationError as exc:
            reason = exc.errors(include_input=False)[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"log or explore engine connection: {reason}") from None
        return self

    def explorer_connection(self) -> EngineConnection:
        """The engine the explorer searches: see `ExplorerSettings.explore_connection`."""
        return self.explore_connection(self.log_connection() if self.log_enabled else None)

    def explorer_connections(self) -> dict[Engine, EngineConnection]:
        """Every engine the explorer can search, its default first: the explore engine and, when the rerank
        log writes to the other engine, the log's."""
        explore = self.explorer_connection()
        connections = {explore.engine: explore}
        if self.log_enabled:
            log = self.log_connection()
            connections.setdefault(log.engine, log)
        return connections


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (a name other than localhost may resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _toml_source(settings_cls: type[BaseSettings], path: Path) -> TomlConfigSettingsSource:
    # pydantic-settings silently skips a missing file; a file the user named must exist and parse.
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from exc
    return TomlConfigSettingsSource(settings_cls, toml_file=path)
