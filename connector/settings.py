"""Everything `retrosearch serve` can be told, from CLI options, `RETROSEARCH_*` environment variables or a
TOML config file (in that order of precedence, then the defaults below).

The config file holds the same names as flat keys (`backend_url = "http://gpu-host:30000"`); it is named by
`--config PATH` or `RETROSEARCH_CONFIG`.
"""

from __future__ import annotations

import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from connector.explorer.settings import ExplorerSettings
from connector.rerank_log.settings import RerankLogSettings
from retrostar_search.backends.base import SamplingParams
from retrostar_search.engines.connection import EngineConnection
from retrostar_search.prompts import ChatFormat
from retrostar_search.scoring import Cascade, UnparsedPolicy
from retrostar_search.tasks import TaskDefinition, load_task_file, resolve_task

ENV_PREFIX = "RETROSEARCH_"
CONFIG_ENV_VAR = f"{ENV_PREFIX}CONFIG"
DEFAULT_MODEL = "ljw13/retro-star-qwen3-14b-0928"


class BackendKind(StrEnum):
    SGLANG = "sglang"  # SGLang's native /generate
    OPENAI = "openai"  # the OpenAI-compatible chat API (SGLang, vLLM)
    ENGINE = "engine"  # sglang.Engine in this process
    CPU = "cpu"  # the lexical fallback: NOT Retro*


class LogLevel(StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


class ConnectorSettings(BaseSettings, RerankLogSettings, ExplorerSettings):
    """The connector's own settings here; the rerank log's `log_*` and the explorer's `explore_*` fields
    come from their mixins."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    config: Path | None = Field(
        default=None,
        description="TOML file with any of these settings as flat keys; CLI options and environment "
        "variables win over it.",
    )

    # The model backend.
    backend: BackendKind = Field(
        default=BackendKind.SGLANG,
        description="sglang: SGLang's native /generate; openai: the OpenAI-compatible chat API (SGLang, "
        "vLLM); engine: sglang.Engine in this process (GPU host, 'sglang' extra); cpu: a lexical fallback "
        "that is NOT Retro*, for plumbing only.",
    )
    backend_url: str = Field(
        default="http://127.0.0.1:30000", description="Base URL of the SGLang (or vLLM) server."
    )
    backend_api_key: SecretStr | None = Field(
        default=None, description="Bearer key the backend expects (SGLang's --api-key)."
    )
    model: str = Field(
        default=DEFAULT_MODEL,
        description="Model name sent to the chat API and part of every cache key; the model path for the "
        "engine backend.",
    )
    chat_format: ChatFormat = Field(
        default=ChatFormat.QWEN3,
        description="Chat template applied for /generate and the engine: qwen3 (Retro* *-0928) or qwen2.5 "
        "(Retro* *-0923).",
    )
    max_concurrency: int = Field(
        default=256, ge=1, description="Most (query, document) pairs in flight to the backend at once."
    )
    tp_size: int = Field(default=1, ge=1, description="Tensor-parallel GPUs for the engine backend.")

    # What "relevant" means.
    task: str | None = Field(
        default=None, description="Task preset (one of BRIGHT's 12, e.g. biology); default: generic."
    )
    query_type: str | None = Field(default=None, description="Override the task's query type.")
    doc_type: str | None = Field(default=None, description="Override the task's document type.")
    relevance_definition: str | None = Field(
        default=None, description="Override the task's relevance definition."
    )
    task_file: Path | None = Field(
        default=None,
        description="JSON or TOML file with task / query_type / doc_type / relevance_definition "
        "(instead of the four settings above).",
    )

    # Sampling and scoring.
    samples: int = Field(default=1, ge=1, description="Samples K per pair; the score is their mean.")
    cascade: str | None = Field(
        default=None,
        description="Cascade plan replacing --samples, e.g. '100@1,30@16' (the reference: all top-100 "
        "with 1 sample, then the best 30 again with 16).",
    )
    unparsed: UnparsedPolicy = Field(
        default=UnparsedPolicy.ZERO,
        description="A sample without <score>: zero (counts 0, like the reference) or skip (left out of "
        "the mean).",
    )
    temperature: float = Field(default=0.6, ge=0, description="Sampling temperature.")
    top_k: int = Field(default=40, description="Sampling top-k (-1: off).")
    max_new_tokens: int = Field(default=1024, ge=1, description="Most generated tokens per sample.")

    # Document truncation (off by default, like the reference).
    truncate_tokens: int | None = Field(
        default=None, ge=1, description="Cut each document to this many tokens (needs --tokenizer)."
    )
    tokenizer: str | None = Field(
        default=None, description="Local folder of the model's tokenizer, for --truncate-tokens."
    )
    truncate_chars: int | None = Field(
        default=None, ge=1, description="Cut each document to this many characters (no tokenizer needed)."
    )

    # Score cache.
    cache_size: int = Field(default=100_000, ge=0, description="Scores kept in memory (0: no cache).")
    cache_path: Path | None = Field(
        default=None, description="sqlite file that keeps scores across restarts."
    )

    # The HTTP service.
    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    api_key: SecretStr | None = Field(
        default=None, description="Bearer key clients must send (none: no authentication)."
    )
    deadline: float = Field(
        default=25.0,
        ge=0,
        description="Seconds a rerank may take before it answers with what is known (0: no deadline). "
        "Under Elasticsearch's 30 s limit; a request may ask for a shorter one.",
    )
    strict: bool = Field(
        default=False,
        description="Answer 502/504 instead of a degraded 200 when the backend fails or the deadline passes.",
    )
    max_documents: int = Field(default=1000, ge=1, description="Most documents in one request (else 413).")
    max_document_chars: int = Field(
        default=100_000, ge=1, description="Most characters in one document (else 413)."
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1, description="Largest request body in bytes (else 413)."
    )
    max_concurrent_requests: int = Field(
        default=64, ge=1, description="Rerank requests served at once; more get 429 with Retry-After."
    )
    log_level: LogLevel = Field(default=LogLevel.INFO, description="Log level.")

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
    def _check_combinations(self) -> ConnectorSettings:
        # Build the derived objects once here so that a bad value fails at startup, not on a request.
        try:
            self.task_definition()
        except OSError as exc:
            raise ValueError(f"task_file: {exc}") from exc
        self.cascade_plan()
        if self.truncate_tokens is not None and self.tokenizer is None:
            raise ValueError("truncate_tokens needs tokenizer (a local tokenizer folder)")
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

    def task_definition(self) -> TaskDefinition:
        overrides = (self.task, self.query_type, self.doc_type, self.relevance_definition)
        if self.task_file is not None:
            if any(value is not None for value in overrides):
                raise ValueError(
                    "task_file replaces task, query_type, doc_type and relevance_definition: give one or "
                    "the other"
                )
            return load_task_file(self.task_file)
        return resolve_task(
            self.task,
            query_type=self.query_type,
            doc_type=self.doc_type,
            relevance_definition=self.relevance_definition,
        )

    def cascade_plan(self) -> Cascade:
        return Cascade.parse(self.cascade) if self.cascade else Cascade.single(self.samples)

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature, top_k=self.top_k, max_new_tokens=self.max_new_tokens
        )

    def deadline_seconds(self, requested: float | None = None) -> float | None:
        """The deadline for one request: the server's, or a shorter one the request asks for."""
        server = self.deadline or None
        if requested is None:
            return server
        return requested if server is None else min(requested, server)


def _toml_source(settings_cls: type[BaseSettings], path: Path) -> TomlConfigSettingsSource:
    # pydantic-settings silently skips a missing file; a file the user named must exist and parse.
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from exc
    return TomlConfigSettingsSource(settings_cls, toml_file=path)
