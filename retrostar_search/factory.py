"""Turning `RerankerSettings` into the long-lived parts a Reranker owns: the backend, the score cache and the
truncation. `Reranker.from_settings` is the one caller; the parts are built once and requests only use them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from retrostar_search.backends.base import DEFAULT_MODEL, Backend
from retrostar_search.cache import MemoryCache, RedisStore, ScoreCache, ScoreStore, SqliteStore
from retrostar_search.extras import require_extra
from retrostar_search.prompts import TOKEN_TRUNCATION, Truncation, load_tokenizer
from retrostar_search.settings import BackendKind, RerankerSettings

logger = logging.getLogger(__name__)


def build_backend(settings: RerankerSettings) -> Backend:
    """The backend the settings name. HTTP backends ask their server what it serves when started
    (`Backend.start`, awaited by the Reranker's `async with`)."""
    backend_api_key = settings.backend_api_key.get_secret_value() if settings.backend_api_key else None
    # A context length given explicitly wins over the server's; the default only stands in for a server
    # that reports none (the truncation falls back to it).
    given_context = settings.context_length if "context_length" in settings.model_fields_set else None
    http_options: dict[str, Any] = {
        "model": settings.model,
        "api_key": backend_api_key,
        "max_concurrency": settings.max_concurrency,
        "context_length": given_context,
    }
    match settings.backend:
        case BackendKind.SGLANG:
            from retrostar_search.backends.sglang_http import SGLangGenerateBackend

            return SGLangGenerateBackend(
                settings.backend_url, chat_format=settings.chat_format, **http_options
            )
        case BackendKind.OPENAI:
            from retrostar_search.backends.sglang_http import OpenAIChatBackend

            return OpenAIChatBackend(settings.backend_url, **http_options)
        case BackendKind.ENGINE:
            from retrostar_search.backends.sglang_engine import SGLangEngineBackend

            return SGLangEngineBackend(
                settings.model or DEFAULT_MODEL,
                chat_format=settings.chat_format,
                tp_size=settings.tp_size,
                context_length=settings.context_length,
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


def preflight(settings: RerankerSettings) -> None:
    """What a server checks before it starts listening, where a failure still ends the command with one
    line and its exit code (in the server's start-up it would end in uvicorn's traceback and exit code 3):
    the extras the settings need (`MissingExtra`), and a configured model against what the backend's
    server serves (`ModelNotServed`). A server that does not answer yet is left to the start-up, which
    logs it and asks again."""
    check_extras(settings)
    if settings.model is not None and settings.backend in (BackendKind.SGLANG, BackendKind.OPENAI):
        asyncio.run(_ask_served_model(settings))


async def _ask_served_model(settings: RerankerSettings) -> None:
    backend = build_backend(settings)
    try:
        await backend.ask_served_model()
    finally:
        await backend.aclose()


def check_extras(settings: RerankerSettings) -> None:
    """`MissingExtra` now when the settings need an extra that is not installed: a command checks before
    it starts work it could not finish (`preflight` for a server)."""
    if settings.backend is BackendKind.ENGINE:
        from retrostar_search.backends.sglang_engine import IN_PROCESS_ENGINE

        require_extra("sglang", IN_PROCESS_ENGINE)
    if settings.tokenizer is not None:  # the fit to the context counts tokens with it too
        require_extra("tokenizer", TOKEN_TRUNCATION)
