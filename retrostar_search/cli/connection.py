"""The connection options (`--engine --url --username --password --api-key --ca-certs --insecure`),
declared once and shared by every command that talks to an engine or a dashboards app.

A command asks for them by taking one parameter named ``connection`` and decorating itself::

    @connection_options(ENGINE)
    def search(query: ..., connection: EngineConnection, ...) -> None: ...

Typer sees the options in that parameter's place (the decorator rewrites the command's signature, the
way FastAPI expands a dependency into its parameters); the command receives the `EngineConnection` (or
another `ServiceConnection`, as `dashboards import` declares) they describe. A bad combination is a usage
error (exit code 2).

Secrets can come from the environment (RETROSEARCH_ENGINE_PASSWORD, RETROSEARCH_ENGINE_API_KEY) so they
stay out of shell history and process listings; they are held as SecretStr, and `cli.errors.fail` scrubs
them from any message it prints.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console

from retrostar_search.cli.errors import fail
from retrostar_search.cli.options import set_signature
from retrostar_search.engines.connection import DEFAULT_URLS, Engine, EngineConnection, ServiceConnection
from retrostar_search.engines.errors import engine_errors, http_status

R = TypeVar("R")

CONNECTION_PARAMETER = "connection"
_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_PASSWORD_HELP = "Basic-auth password (prefer the environment variable)."
_CA_HELP = "CA bundle to verify https."


@dataclass(frozen=True)
class ConnectionOptions:
    """How one kind of connection is spelled on the command line."""

    model: type[ServiceConnection]
    env_prefix: str  # RETROSEARCH_ENGINE: --url reads RETROSEARCH_ENGINE_URL, and so on
    panel: str
    # The engine when the command is for one only; None: an --engine option (for an EngineConnection).
    engine: Engine | None = None
    url_help: str = (
        "Engine URL (default: "
        + ", ".join(f"{engine.value} {url}" for engine, url in DEFAULT_URLS.items())
        + ")."
    )
    url_required: bool = False
    url_in_panel: bool = True
    api_key_help: str = "API key, sent as 'Authorization: ApiKey ...' (prefer the environment variable)."

    def for_engine(self, engine: Engine) -> ConnectionOptions:
        """The same options for a command that talks to `engine` only."""
        return replace(self, engine=engine)

    @property
    def with_engine_option(self) -> bool:
        return self.engine is None and issubclass(self.model, EngineConnection)

    def parameters(self) -> list[inspect.Parameter]:
        """The options as keyword parameters, named `connection_<field>` so they never clash with the
        command's own."""
        env = self.env_prefix
        secret = {"show_default": False}  # their environment variables keep them off the command line
        url_default = ... if self.url_required else None
        url_type = str if self.url_required else str | None
        url = {"envvar": f"{env}_URL", "help": self.url_help, "show_default": self.url_required}
        options: list[tuple[str, Any, Any, dict[str, Any]]] = [
            ("url", url_type, url_default, url),
            ("username", str | None, None, {"envvar": f"{env}_USERNAME", "help": "Basic-auth user."}),
            ("password", str | None, None, {"envvar": f"{env}_PASSWORD", "help": _PASSWORD_HELP, **secret}),
            ("api_key", str | None, None, {"envvar": f"{env}_API_KEY", "help": self.api_key_help, **secret}),
            ("ca_certs", Path | None, None, {"exists": True, "dir_okay": False, "help": _CA_HELP}),
            ("insecure", bool, False, {"help": "Do not verify https certificates."}),
        ]
        if self.with_engine_option:
            options.insert(
                0, ("engine", Engine, Engine.OPENSEARCH, {"envvar": env, "help": "Search engine."})
            )
        return [self._parameter(*option) for option in options]

    def _parameter(
        self, name: str, annotation: Any, default: Any, option: dict[str, Any]
    ) -> inspect.Parameter:
        in_panel = name != "url" or self.url_in_panel
        declaration = typer.Option(
            f"--{name.replace('_', '-')}", rich_help_panel=self.panel if in_panel else None, **option
        )
        return inspect.Parameter(
            f"{CONNECTION_PARAMETER}_{name}",
            _KEYWORD,
            annotation=Annotated[annotation, declaration],
            default=inspect.Parameter.empty if default is ... else default,
        )

    def connection(
        self,
        *,
        engine: Engine | None = None,
        url: str | None = None,
        username: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
        ca_certs: Path | None = None,
        insecure: bool = False,
    ) -> ServiceConnection:
        """The connection the option values describe (a bad combination: typer.BadParameter)."""
        fields: dict[str, Any] = {
            "url": url,
            "username": username,
            "password": SecretStr(password) if password is not None else None,
            "api_key": SecretStr(api_key) if api_key is not None else None,
            "ca_certs": str(ca_certs) if ca_certs else None,
            "verify_certs": not insecure,
        }
        if engine or self.engine:
            fields["engine"] = engine or self.engine
        try:
            return self.model(**fields)
        except ValidationError as error:
            # Only the validators' own messages: pydantic's full text would echo the input values.
            messages = "; ".join(detail["msg"].removeprefix("Value error, ") for detail in error.errors())
            raise typer.BadParameter(messages) from None


ENGINE = ConnectionOptions(model=EngineConnection, env_prefix="RETROSEARCH_ENGINE", panel="Engine connection")
OPENSEARCH = ENGINE.for_engine(Engine.OPENSEARCH)
ELASTICSEARCH = ENGINE.for_engine(Engine.ELASTICSEARCH)


def connection_options(options: ConnectionOptions) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Replace the command's `connection` parameter by `options`, and hand the command the connection
    they describe."""

    def decorate(command: Callable[..., R]) -> Callable[..., R]:
        own = inspect.signature(command, eval_str=True).parameters
        if CONNECTION_PARAMETER not in own:
            raise TypeError(f"{command.__name__} needs a parameter named {CONNECTION_PARAMETER!r}")
        expanded = options.parameters()
        names = [parameter.name for parameter in expanded]

        @functools.wraps(command)
        def run(**values: Any) -> R:
            given = {name.removeprefix(f"{CONNECTION_PARAMETER}_"): values.pop(name) for name in names}
            values[CONNECTION_PARAMETER] = options.connection(**given)
            return command(**values)

        parameters: list[inspect.Parameter] = []
        for parameter in own.values():
            if parameter.name == CONNECTION_PARAMETER:
                parameters.extend(expanded)
            else:
                parameters.append(parameter.replace(kind=_KEYWORD))
        set_signature(run, parameters)
        return run

    return decorate


def open_engine(console: Console, connection: EngineConnection) -> Any:
    """The engine's client, once the engine has answered: a command finds out that the engine cannot be
    reached (or refuses the credentials) before it prints a note, starts a progress bar or changes a thing,
    and says so the one way `fail` says it."""
    client = connection.client()
    try:
        # Elasticsearch's integration-test distribution has no `GET /` (its rest-root module is left out).
        client.info() if connection.engine is Engine.OPENSEARCH else client.cluster.health()
    except engine_errors() as error:
        # Any answer but a refused login means the engine is there (a user without the right to this one
        # call gets 403): the command's own calls say what else is wrong.
        if http_status(error) in (None, 401):
            fail(console, error, connection=connection)
    return client
