"""What the rerank log needs to know, as flat `log_*` fields the connector's settings can inherit.

`ConnectorSettings` mixes this model in, so every field is also a `RETROSEARCH_LOG_*` environment variable,
a `--log-*` option and a config-file key. The log is off unless `log_url` is set. It lives in the core
because the dashboards generated for the log need its default index too.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from retrostar_search.engines.connection import (
    Engine,
    EngineConnection,
    credential_fields,
    prefixed_connection,
)

DEFAULT_LOG_INDEX = "retrostar-log"

# The prefix becomes part of index names and of an index pattern: lower case, no wildcards or separators.
_INDEX_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class _LogTarget(BaseModel):
    """Where the log goes and how it is written."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    log_url: str | None = None
    """OpenSearch or Elasticsearch URL to write the rerank log to (unset: no log)."""

    log_engine: Engine = Engine.OPENSEARCH
    """Engine behind --log-url."""

    log_index: str = DEFAULT_LOG_INDEX
    """Index name prefix: events go to daily indices <prefix>-YYYY.MM.DD (UTC)."""

    log_queries: bool = False
    """Store the query text in the log (off: only a hash of it)."""

    log_reasoning: bool = True
    """Store an excerpt (up to 500 characters) of the model's reasoning per document; it can paraphrase the
    query and the document."""

    log_batch_size: int = Field(default=50, ge=1)
    """Rerank events written per bulk batch (each with its documents)."""

    log_flush_interval: float = Field(default=2.0, gt=0)
    """Seconds an event may wait for its batch to fill before it is written."""

    log_queue_size: int = Field(default=1000, ge=1)
    """Rerank events waiting to be written; beyond that new events are dropped and counted."""

    log_retention_days: int = Field(default=30, ge=1)
    """Days a daily log index is kept (ISM on OpenSearch, ILM on Elasticsearch)."""


# Base order = field order (the target, then the credentials, then the timeout), as `serve --help` lists them.
class RerankLogSettings(credential_fields("log", "the log engine"), _LogTarget):  # type: ignore[misc]
    log_timeout: float = Field(default=10.0, gt=0)
    """Seconds one bulk request to the log engine may take."""

    @field_validator("log_index")
    @classmethod
    def _index_prefix(cls, value: str) -> str:
        if not _INDEX_PREFIX.match(value):
            raise ValueError(
                "log_index must be lower case letters, digits, '-', '_' or '.', starting with a letter or digit"
            )
        return value

    @property
    def log_enabled(self) -> bool:
        return bool(self.log_url)

    def log_connection(self) -> EngineConnection:
        """How to reach the log engine; the same connection rules as every other engine-facing command."""
        return prefixed_connection(
            self, "log", engine=self.log_engine, url=self.log_url, request_timeout=self.log_timeout
        )
