"""`retrosearch serve`: run the rerank connector.

One option per connector setting, generated from the settings model itself (its groups are the help
panels, its descriptions the help), so the command line, the environment and the config file cannot
drift apart. An option left out falls back to its `RETROSEARCH_*` environment variable, then to the
config file, then to the default, so only the options actually given are passed on.
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

import typer
from pydantic import BaseModel, SecretStr, ValidationError
from rich.markup import escape

from connector.explorer.settings import ExplorerSettings
from connector.settings import ENV_PREFIX, ConnectorSettings, LimitSettings, ServerSettings
from retrostar_search.cli.options import set_signature
from retrostar_search.rerank_log.settings import RerankLogSettings
from retrostar_search.settings import BackendSettings, ScoringSettings, TaskSettings

logger = logging.getLogger(__name__)

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
    settings = load_settings({name: value for name, value in given.items() if value is not None})

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
    return escape(f"{field.description}{default} [env: {ENV_PREFIX}{setting.upper()}]")  # rich markup


def _given_or_none(annotation: Any) -> Any:
    """The option's type: the setting's, None meaning "not given", and secrets typed as plain text."""
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = [member for member in get_args(annotation) if member is not type(None)]
    return (str if annotation is SecretStr else annotation) | None


set_signature(serve, _serve_options())
