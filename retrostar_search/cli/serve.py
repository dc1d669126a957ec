"""`retrosearch serve`: run the rerank connector.

One option per connector setting. An option left out falls back to its `RETROSEARCH_*` environment variable,
then to the config file, then to the default, so only the options actually given are passed on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from connector.settings import ENV_PREFIX, ConnectorSettings, LogLevel
from retrostar_search.engines.connection import Engine
from retrostar_search.prompts import ChatFormat
from retrostar_search.scoring import UnparsedPolicy
from retrostar_search.settings import BackendKind

logger = logging.getLogger(__name__)


def _help(setting: str) -> str:
    # The description lives on the setting, so the CLI, the env and the config file document it once.
    field = ConnectorSettings.model_fields[setting]
    default = "" if field.default is None else f" [default: {field.default}]"
    return escape(f"{field.description}{default} [env: {ENV_PREFIX}{setting.upper()}]")  # rich markup


def _option(setting: str, panel: str) -> Any:
    return typer.Option(help=_help(setting), rich_help_panel=panel, show_default=False)


_BACKEND, _TASK, _SCORING, _SERVER, _LIMITS = "Backend", "Task", "Scoring", "Server", "Limits"
_LOG, _EXPLORE = "Rerank log", "Explorer"


def serve(
    config: Annotated[Path | None, _option("config", _SERVER)] = None,
    backend: Annotated[BackendKind | None, _option("backend", _BACKEND)] = None,
    backend_url: Annotated[str | None, _option("backend_url", _BACKEND)] = None,
    backend_api_key: Annotated[str | None, _option("backend_api_key", _BACKEND)] = None,
    model: Annotated[str | None, _option("model", _BACKEND)] = None,
    chat_format: Annotated[ChatFormat | None, _option("chat_format", _BACKEND)] = None,
    max_concurrency: Annotated[int | None, _option("max_concurrency", _BACKEND)] = None,
    tp_size: Annotated[int | None, _option("tp_size", _BACKEND)] = None,
    task: Annotated[str | None, _option("task", _TASK)] = None,
    query_type: Annotated[str | None, _option("query_type", _TASK)] = None,
    doc_type: Annotated[str | None, _option("doc_type", _TASK)] = None,
    relevance_definition: Annotated[str | None, _option("relevance_definition", _TASK)] = None,
    task_file: Annotated[Path | None, _option("task_file", _TASK)] = None,
    samples: Annotated[int | None, _option("samples", _SCORING)] = None,
    cascade: Annotated[str | None, _option("cascade", _SCORING)] = None,
    unparsed: Annotated[UnparsedPolicy | None, _option("unparsed", _SCORING)] = None,
    temperature: Annotated[float | None, _option("temperature", _SCORING)] = None,
    top_k: Annotated[int | None, _option("top_k", _SCORING)] = None,
    max_new_tokens: Annotated[int | None, _option("max_new_tokens", _SCORING)] = None,
    truncate_tokens: Annotated[int | None, _option("truncate_tokens", _SCORING)] = None,
    tokenizer: Annotated[str | None, _option("tokenizer", _SCORING)] = None,
    truncate_chars: Annotated[int | None, _option("truncate_chars", _SCORING)] = None,
    cache_size: Annotated[int | None, _option("cache_size", _SCORING)] = None,
    cache_path: Annotated[Path | None, _option("cache_path", _SCORING)] = None,
    host: Annotated[str | None, _option("host", _SERVER)] = None,
    port: Annotated[int | None, _option("port", _SERVER)] = None,
    api_key: Annotated[str | None, _option("api_key", _SERVER)] = None,
    deadline: Annotated[float | None, _option("deadline", _SERVER)] = None,
    strict: Annotated[bool | None, _option("strict", _SERVER)] = None,
    log_level: Annotated[LogLevel | None, _option("log_level", _SERVER)] = None,
    max_documents: Annotated[int | None, _option("max_documents", _LIMITS)] = None,
    max_document_chars: Annotated[int | None, _option("max_document_chars", _LIMITS)] = None,
    max_body_bytes: Annotated[int | None, _option("max_body_bytes", _LIMITS)] = None,
    max_concurrent_requests: Annotated[int | None, _option("max_concurrent_requests", _LIMITS)] = None,
    log_url: Annotated[str | None, _option("log_url", _LOG)] = None,
    log_engine: Annotated[Engine | None, _option("log_engine", _LOG)] = None,
    log_index: Annotated[str | None, _option("log_index", _LOG)] = None,
    log_queries: Annotated[bool | None, _option("log_queries", _LOG)] = None,
    log_reasoning: Annotated[bool | None, _option("log_reasoning", _LOG)] = None,
    log_batch_size: Annotated[int | None, _option("log_batch_size", _LOG)] = None,
    log_flush_interval: Annotated[float | None, _option("log_flush_interval", _LOG)] = None,
    log_queue_size: Annotated[int | None, _option("log_queue_size", _LOG)] = None,
    log_retention_days: Annotated[int | None, _option("log_retention_days", _LOG)] = None,
    log_username: Annotated[str | None, _option("log_username", _LOG)] = None,
    log_password: Annotated[str | None, _option("log_password", _LOG)] = None,
    log_api_key: Annotated[str | None, _option("log_api_key", _LOG)] = None,
    log_ca_certs: Annotated[str | None, _option("log_ca_certs", _LOG)] = None,
    log_verify_certs: Annotated[bool | None, _option("log_verify_certs", _LOG)] = None,
    log_timeout: Annotated[float | None, _option("log_timeout", _LOG)] = None,
    explore: Annotated[bool | None, _option("explore", _EXPLORE)] = None,
    explore_engine: Annotated[Engine | None, _option("explore_engine", _EXPLORE)] = None,
    explore_url: Annotated[str | None, _option("explore_url", _EXPLORE)] = None,
    explore_username: Annotated[str | None, _option("explore_username", _EXPLORE)] = None,
    explore_password: Annotated[str | None, _option("explore_password", _EXPLORE)] = None,
    explore_api_key: Annotated[str | None, _option("explore_api_key", _EXPLORE)] = None,
    explore_ca_certs: Annotated[str | None, _option("explore_ca_certs", _EXPLORE)] = None,
    explore_verify_certs: Annotated[bool | None, _option("explore_verify_certs", _EXPLORE)] = None,
) -> None:
    """Serve the Retro* rerank connector (Cohere- and TEI-compatible) over HTTP."""
    # Every parameter is a setting; None means "not given here", which lets env and config file speak.
    overrides = {name: value for name, value in locals().items() if value is not None}
    settings = load_settings(overrides)

    import uvicorn

    from connector.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.api_key is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "serving on %s without an API key: anyone who reaches it can use the GPU", settings.host
        )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.value,
        access_log=False,  # the connector logs one line per rerank itself, without client addresses
    )


def load_settings(overrides: dict[str, Any]) -> ConnectorSettings:
    """Settings from the given options over env, config file and defaults; a bad value exits with its
    reason instead of a traceback."""
    try:
        return ConnectorSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise typer.BadParameter(problems) from None
    except ValueError as exc:  # the config file itself: missing or not TOML
        raise typer.BadParameter(str(exc)) from None


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
