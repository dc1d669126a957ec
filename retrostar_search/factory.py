"""Turning `RerankerSettings` into the long-lived parts a Reranker owns: the backend, the score cache and the
truncation. `Reranker.from_settings` is the one caller; the parts are built once and requests only use them.
"""

from __future__ import annotations

import logging

from retrostar_search.backends.base import Backend
from retrostar_search.cache import MemoryCache, RedisStore, ScoreCache, ScoreStore, SqliteStore
from retrostar_search.prompts import Truncation, load_tokenizer
from retrostar_search.settings import BackendKind, RerankerSettings

logger = logging.getLogger(__name__)


def build_backend(settings: RerankerSettings) -> Backend:
    backend_api_key = settings.backend_api_key.get_secret_value() if settings.backend_api_key else None
    match settings.backend:
        case BackendKind.SGLANG:
            from retrostar_search.backends.sglang_http import SGLangGenerateBackend

            return SGLangGenerateBackend(
                settings.backend_url,
                chat_format=settings.chat_format,
                model=settings.model,
                api_key=backend_api_key,
                max_concurrency=settings.max_concurrency,
            )
        case BackendKind.OPENAI:
            from retrostar_search.backends.sglang_http import OpenAIChatBackend

            return OpenAIChatBackend(
                settings.backend_url,
                model=settings.model,
                api_key=backend_api_key,
                max_concurrency=settings.max_concurrency,
            )
        case BackendKind.ENGINE:
            from retrostar_search.backends.sglang_engine import SGLangEngineBackend

            return SGLangEngineBackend(
                settings.model, chat_format=settings.chat_format, tp_size=settings.tp_size
            )
        case BackendKind.CPU:
            from retrostar_search.backends.cpu_fallback import CPUFallbackBackend

            logger.warning("backend 'cpu' is a lexical fallback scorer, NOT Retro*: use it for plumbing only")
            return CPUFallbackBackend()


def build_cache(settings: RerankerSettings) -> ScoreCache | None:
    if settings.cache_size == 0:
        return None
    memory = MemoryCache(
        settings.cache_bytes, reasoning_bytes=settings.cache_reasoning_bytes, max_entries=settings.cache_size
    )
    stores: list[ScoreStore] = []
    if settings.cache_path is not None:
        stores.append(SqliteStore(settings.cache_path))
    if settings.cache_url is not None:
        stores.append(RedisStore(settings.cache_url.get_secret_value(), ttl_seconds=settings.cache_ttl))
    return ScoreCache(memory, stores)


def build_truncation(settings: RerankerSettings) -> Truncation:
    tokenizer = load_tokenizer(settings.tokenizer) if settings.tokenizer is not None else None
    return Truncation(
        max_tokens=settings.truncate_tokens,
        max_chars=settings.truncate_chars,
        tokenizer=tokenizer,
        context_length=settings.context_length,
    )
