"""What a Reranker is built from: the backend, the task, sampling, truncation and the score cache.

`RerankerSettings` is the engine-args model of the core (the habit of infinity_emb's `EngineArgs`):
`Reranker.from_settings(settings)` turns it into a running reranker. It is grouped by concern (backend,
task, scoring) so that the connector's settings, which compose it, document each group together. The
connector's settings add the HTTP service; their flat field names are the `RETROSEARCH_*` environment
variables, the `retrosearch serve` options and the config-file keys.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ByteSize, ConfigDict, Field, SecretStr, field_validator, model_validator

from retrostar_search.backends.base import SamplingParams
from retrostar_search.prompts import DEFAULT_CONTEXT_LENGTH, ChatFormat
from retrostar_search.scoring import Cascade, UnparsedPolicy
from retrostar_search.tasks import TaskDefinition, load_task_file, resolve_task

DEFAULT_MODEL = "ljw13/retro-star-qwen3-14b-0928"
CACHE_URL_SCHEMES = ("redis", "rediss", "unix")  # what redis-py connects to; Valkey speaks the same


class BackendKind(StrEnum):
    SGLANG = "sglang"  # SGLang's native /generate
    OPENAI = "openai"  # the OpenAI-compatible chat API (SGLang, vLLM)
    ENGINE = "engine"  # sglang.Engine in this process
    CPU = "cpu"  # the lexical fallback: NOT Retro*


class OnDeadline(StrEnum):
    """What happens to the pairs still being generated when a rerank's deadline passes."""

    ABORT = "abort"  # the backend aborts them: the GPU is free for the next request at once
    FINISH = "finish"  # they finish in the background (bounded) into the score cache


class BackendSettings(BaseModel):
    """Which model server scores the pairs, and how to reach it."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    backend: BackendKind = BackendKind.SGLANG
    """sglang: SGLang's native /generate; openai: the OpenAI-compatible chat API (SGLang, vLLM); engine:
    sglang.Engine in this process (GPU host, 'sglang' extra); cpu: a lexical fallback that is NOT Retro*, for
    plumbing only."""

    backend_url: str = "http://127.0.0.1:30000"
    """Base URL of the SGLang (or vLLM) server."""

    backend_api_key: SecretStr | None = None
    """Bearer key the backend expects (SGLang's --api-key)."""

    model: str = DEFAULT_MODEL
    """Model name sent to the chat API and part of every cache key; the model path for the engine backend."""

    chat_format: ChatFormat = ChatFormat.QWEN3
    """Chat template applied for /generate and the engine: qwen3 (Retro* *-0928) or qwen2.5 (Retro*
    *-0923)."""

    max_concurrency: int = Field(default=256, ge=1)
    """Most (query, document) pairs in flight to the backend at once."""

    tp_size: int = Field(default=1, ge=1)
    """Tensor-parallel GPUs for the engine backend."""


class TaskSettings(BaseModel):
    """What "relevant" means: a preset, its parts overridden, or a task file."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    task: str | None = None
    """Task preset (one of BRIGHT's 12, e.g. biology); default: generic."""

    query_type: str | None = None
    """Override the task's query type."""

    doc_type: str | None = None
    """Override the task's document type."""

    relevance_definition: str | None = None
    """Override the task's relevance definition."""

    task_file: Path | None = None
    """JSON or TOML file with task / query_type / doc_type / relevance_definition (instead of the four
    settings above)."""

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


class ScoringSettings(BaseModel):
    """How a pair becomes a score: samples, the cascade, sampling, truncation and the score cache."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    samples: int = Field(default=1, ge=1)
    """Samples K per pair; the score is their mean."""

    cascade: str | None = None
    """Cascade plan replacing --samples, e.g. '100@1,30@16' (the reference: all top-100 with 1 sample, then
    the best 30 again with 16)."""

    unparsed: UnparsedPolicy = UnparsedPolicy.ZERO
    """A sample without <score>: zero (counts 0, like the reference) or skip (left out of the mean)."""

    temperature: float = Field(default=0.6, ge=0)
    """Sampling temperature."""

    top_k: int = 40
    """Sampling top-k (-1: off)."""

    max_new_tokens: int = Field(default=1024, ge=1)
    """Most generated tokens per sample."""

    # Document truncation: always to fit the served context; to a fixed budget when asked.
    context_length: int = Field(default=DEFAULT_CONTEXT_LENGTH, ge=1)
    """Context length (tokens) prompts are fitted to when the server does not report its own (the
    reference's 32768). Documents are cut so that the prompt plus max_new_tokens always fits."""

    tokenizer: str | None = None
    """Local folder of the model's tokenizer ('tokenizer' extra): exact token counts for fitting the context
    and for --truncate-tokens; without it a safe upper bound (one token per UTF-8 byte) cuts long documents
    shorter than needed."""

    truncate_tokens: int | None = Field(default=None, ge=1)
    """Also cut each document to this many tokens (needs --tokenizer)."""

    truncate_chars: int | None = Field(default=None, ge=1)
    """Also cut each document to this many characters (no tokenizer needed)."""

    # The deadline.
    on_deadline: OnDeadline = OnDeadline.ABORT
    """Pairs still being generated when a rerank's deadline passes: abort (free the GPU at once) or finish
    (complete in the background into the score cache, so the same search answers in full next time)."""

    max_background_pairs: int = Field(default=256, ge=0)
    """With --on-deadline finish: most pairs finishing in the background at once; the others are aborted."""

    # Score cache.
    cache_bytes: ByteSize = Field(default=ByteSize(64 * 2**20), ge=1024)
    """Memory for cached scores, e.g. 64MiB (a few hundred bytes per pair)."""

    cache_reasoning_bytes: ByteSize = Field(default=ByteSize(32 * 2**20), ge=0)
    """Memory for the reasoning text of the most recently used cached pairs, which explanations show (about
    3 KB per sample); 0: none in memory, only in --cache-path / --cache-url."""

    cache_size: int | None = Field(default=None, ge=0)
    """Most pairs kept in memory, besides --cache-bytes (default: no count limit; 0: no score cache at
    all)."""

    cache_path: Path | None = None
    """sqlite file that keeps scores, reasoning included, across restarts."""

    cache_url: SecretStr | None = None
    """Shared score cache for replicas and workers: redis://[user:password@]host:6379/0 (Redis or Valkey;
    rediss:// for TLS, unix:///path.sock), behind the memory cache."""

    cache_ttl: int = Field(default=7 * 24 * 3600, ge=1)
    """Seconds a score stays in the shared cache (--cache-url); the server's maxmemory policy may evict it
    sooner."""

    @field_validator("cache_url")
    @classmethod
    def _check_cache_url(cls, url: SecretStr | None) -> SecretStr | None:
        # Nothing of the URL is quoted: it may hold a password.
        if url is not None and urlsplit(url.get_secret_value()).scheme not in CACHE_URL_SCHEMES:
            expected = ", ".join(f"{scheme}://" for scheme in CACHE_URL_SCHEMES)
            raise ValueError(f"cache_url: expected a URL starting with {expected}")
        return url

    def cascade_plan(self) -> Cascade:
        return Cascade.parse(self.cascade) if self.cascade else Cascade.single(self.samples)

    def sampling_params(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature, top_k=self.top_k, max_new_tokens=self.max_new_tokens
        )


class RerankerSettings(BackendSettings, TaskSettings, ScoringSettings):
    """Everything `Reranker.from_settings` needs; bad combinations fail here, at startup, not on a request."""

    @model_validator(mode="after")
    def _check_reranker_combinations(self) -> RerankerSettings:
        # Build the derived objects once so that a bad value fails at startup, not on a request.
        try:
            self.task_definition()
        except OSError as exc:
            raise ValueError(f"task_file: {exc}") from exc
        self.cascade_plan()
        if self.truncate_tokens is not None and self.tokenizer is None:
            raise ValueError("truncate_tokens needs tokenizer (a local tokenizer folder)")
        return self
