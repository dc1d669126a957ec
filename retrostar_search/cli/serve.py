"""`retrosearch serve`: run the rerank connector.

One option per connector setting, generated from the settings model itself (its groups are the help
panels, its descriptions the help), so the command line, the environment and the config file cannot
drift apart. An option left out falls back to its `RETROSEARCH_*` environment variable, then to the
config file, then to the default, so only the options actually given are passed on.
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
import shutil
import tempfile
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

import typer
from pydantic import BaseModel, ByteSize, SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape

from connector.explorer.settings import ExplorerSettings
from connector.settings import ENV_PREFIX, ConnectorSettings, LimitSettings, ServerSettings, is_loopback
from retrostar_search.cli.options import set_signature
from retrostar_search.factory import preflight
from retrostar_search.redaction import redact
from retrostar_search.rerank_log.settings import RerankLogSettings
from retrostar_search.scoring import Cascade, UnparsedPolicy
from retrostar_search.settings import BackendKind, BackendSettings, ScoringSettings, TaskSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's multiprocess mode

# The reranker's groups of settings and their help panels (what `warm` builds an in-process reranker from).
RERANKER_PANELS: dict[str, type[BaseModel]] = {
    "Backend": BackendSettings,
    "Task": TaskSettings,
    "Scoring": ScoringSettings,
}
# Each group of settings and its help panel, in the order `serve --help` shows them.
PANELS: dict[str, type[BaseModel]] = {
    "Server": ServerSettings,
    **RERANKER_PANELS,
    "Limits": LimitSettings,
    "Rerank log": RerankLogSettings,
    "Explorer": ExplorerSettings,
}


def serve(**given: Any) -> None:
    """Serve the Retro* rerank connector (Cohere- and TEI-compatible) over HTTP."""
    # Every option is a setting; None means "not given here", which lets env and config file speak.
    given = {name: value for name, value in given.items() if value is not None}
    settings = load_settings(given)
    preflight(settings)

    import uvicorn

    from connector.app import create_app
    from connector.logs import configure_logging

    configure_logging(settings)
    # What is about to run, before uvicorn's own lines: the settings that decide what a score means.
    Console(stderr=True, highlight=False, soft_wrap=True).print(escape(startup_banner(settings)))
    if settings.api_key is None and not is_loopback(settings.host):  # --allow-unauthenticated
        logger.warning(
            "serving on %s without an API key: anyone who reaches it can use the GPU", settings.host
        )
    server_options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.value,
        "log_config": None,  # uvicorn's own lines go through the handlers configure_logging set up
        "access_log": False,  # the connector logs one line per rerank itself, without client addresses
        "timeout_keep_alive": settings.keep_alive,
    }
    if settings.workers == 1:
        app = create_app(settings)
        tune_garbage_collector()
        uvicorn.run(app, **server_options)
        return
    if settings.cache_url is None:
        logger.warning(
            "%d workers without --cache-url: each process keeps a score cache of its own, and scores again "
            "what another one has cached",
            settings.workers,
        )
    # Each worker is a fresh interpreter that builds its app from `worker_app`: it reads its settings as
    # this process did, with the options given here passed on as their environment variables.
    os.environ.update(_as_environment(given))
    with _worker_metrics_folder():
        uvicorn.run(WORKER_APP, factory=True, workers=settings.workers, **server_options)


def worker_app() -> FastAPI:
    """The app of one `serve --workers N` process (uvicorn calls it in each)."""
    from connector.app import create_app
    from connector.logs import configure_logging

    settings = load_settings({})
    configure_logging(settings)
    app = create_app(settings)
    tune_garbage_collector()
    return app


def tune_garbage_collector() -> None:
    """The objects a server holds for good (the web stack, the schemas, the settings), left out of the
    collector's full passes, and a first generation of 10,000 allocations rather than 700: a rerank
    allocates tasks, futures and answers by the thousand, and with the defaults the collections it set
    off cost about a fifth of the connector's CPU (docs/connector.md, "Overhead")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


WORKER_APP = f"{__name__}:{worker_app.__name__}"


def _as_environment(given: dict[str, Any]) -> dict[str, str]:
    """The `RETROSEARCH_*` variables that say what these options say (they win over the config file, as
    the options do)."""
    environment = {}
    for name, value in given.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, Enum):
            text = str(value.value)
        else:
            text = str(value)
        environment[f"{ENV_PREFIX}{name.upper()}"] = text
    return environment


@contextmanager
def _worker_metrics_folder() -> Iterator[None]:
    """PROMETHEUS_MULTIPROC_DIR for the workers' metrics: a fresh folder, removed afterwards, unless the
    environment names one already (then it is the caller's, and stays)."""
    if os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="retrosearch-metrics-")
    os.environ[MULTIPROCESS_ENV] = folder
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(folder, ignore_errors=True)


def startup_banner(settings: ConnectorSettings) -> str:
    """Who scores, under which task, and where everything is: the lines `serve` prints on start-up. No
    secret is in them, nor the credentials of a URL."""
    base = f"http://{_url_host(settings.host)}:{settings.port}"
    if settings.backend is BackendKind.CPU:
        backend = "cpu: a lexical fallback, NOT Retro* (for plumbing only)"
    elif settings.backend is BackendKind.ENGINE:
        backend = f"engine: sglang.Engine in this process, tp {settings.tp_size}"
    else:
        backend = f"{settings.backend.value} at {redact(settings.backend_url)}"
    task = settings.task_definition()
    cache = "off"
    if settings.cache_size != 0:
        layers = [f"memory {settings.cache_bytes.human_readable()}"]
        if settings.cache_path is not None:
            layers.append(f"sqlite {settings.cache_path}")
        if settings.cache_url is not None:
            layers.append(f"shared {redact(settings.cache_url.get_secret_value())}")
        cache = " + ".join(layers)
    explorer = "off"
    if settings.explore:
        searched = settings.explorer_connection()
        explorer = f"{base}/explore (searches {searched.engine.value} {redact(searched.resolved_url)})"
    log = "off"
    if settings.log_enabled:
        log = f"{settings.log_engine.value} {redact(settings.log_url or '')}, indices {settings.log_index}-*"
    deadline = f"{settings.deadline:g} s" if settings.deadline else "none"
    lines = [
        ("backend", backend),
        ("model", settings.model or "what the server serves (asked at start-up)"),
        ("task", f"{task.name}: {task.relevance_definition}"),
        (
            "scoring",
            f"{_scoring(settings.cascade_plan())}; a sample without a score counts as "
            f"{'0' if settings.unparsed is UnparsedPolicy.ZERO else 'nothing (skip)'}",
        ),
        ("deadline", f"{deadline}{', strict' if settings.strict else ''}"),
        ("auth", "API key required" if settings.api_key is not None else "off: no API key"),
        ("cache", cache),
        ("explorer", explorer),
        ("rerank log", log),
        ("docs", f"{base}/docs"),
    ]
    width = max(len(name) for name, _ in lines)
    body = "\n".join(f"  {name.ljust(width)}  {value}" for name, value in lines)
    return f"Retro* rerank connector on {base}\n{body}"


def _scoring(cascade: Cascade) -> str:
    (first, *later) = cascade.stages
    if not later and first.candidates is None:
        return f"{first.samples} sample{'s' if first.samples != 1 else ''} per document (mean score)"
    return f"cascade {cascade} (candidates@samples per stage)"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def setting_options(panels: Mapping[str, type[BaseModel]] = PANELS) -> list[inspect.Parameter]:
    """One `--option` per field of each panel's settings, typed like it, documented by its description;
    by default every ConnectorSettings field (`retrosearch warm` takes the reranker's only)."""
    return [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                _given_or_none(field.annotation),
                typer.Option(help=_help(name), rich_help_panel=panel, show_default=False),
            ],
        )
        for panel, group in panels.items()
        for name, field in group.model_fields.items()
    ]


def _serve_options() -> list[inspect.Parameter]:
    options = setting_options()
    missing = set(ConnectorSettings.model_fields) - {option.name for option in options}
    if missing:
        raise TypeError(f"settings without a help panel in `serve`: {sorted(missing)}")
    return options


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


def _help(setting: str) -> str:
    # The description lives on the setting, so the CLI, the env and the config file document it once.
    field = ConnectorSettings.model_fields[setting]
    default = "" if field.default is None else f" [default: {field.default}]"
    # typer's own style for an option's variable (serve reads the variables through the settings, not typer)
    return escape(f"{field.description}{default} [env var: {ENV_PREFIX}{setting.upper()}]")  # rich markup


def _given_or_none(annotation: Any) -> Any:
    """The option's type: the setting's, None meaning "not given"; secrets and sizes ("64MiB") are typed as
    plain text, which the settings parse."""
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = [member for member in get_args(annotation) if member is not type(None)]
    return (str if annotation in (SecretStr, ByteSize) else annotation) | None


set_signature(serve, _serve_options())
