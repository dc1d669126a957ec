"""Options every engine-facing command shares (index, setup, search, eval), and the client they build.

Use the aliases as parameter annotations and pass the values to ``engine_connection``::

    def search(engine: EngineOpt = Engine.OPENSEARCH, url: UrlOpt = None, username: UsernameOpt = None,
               password: PasswordOpt = None, api_key: ApiKeyOpt = None, ca_certs: CaCertsOpt = None,
               insecure: InsecureOpt = False) -> None:
        connection = engine_connection(engine, url, username, password, api_key, ca_certs, insecure)

Secrets can come from the environment (RETROSEARCH_ENGINE_PASSWORD, RETROSEARCH_ENGINE_API_KEY) so they stay out of
shell history and process listings; they are held as SecretStr and ``scrub`` removes them from any
message before it is printed (``print_error`` prints an error that way).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape

from retrostar_search.engines.connection import DEFAULT_URLS, Engine, EngineConnection

CONNECTION_PANEL = "Engine connection"

EngineOpt = Annotated[
    Engine,
    typer.Option(
        "--engine", envvar="RETROSEARCH_ENGINE", help="Search engine.", rich_help_panel=CONNECTION_PANEL
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="RETROSEARCH_ENGINE_URL",
        help="Engine URL (default: "
        + ", ".join(f"{engine.value} {url}" for engine, url in DEFAULT_URLS.items())
        + ").",
        show_default=False,
        rich_help_panel=CONNECTION_PANEL,
    ),
]
UsernameOpt = Annotated[
    str | None,
    typer.Option(
        "--username",
        envvar="RETROSEARCH_ENGINE_USERNAME",
        help="Basic-auth user.",
        rich_help_panel=CONNECTION_PANEL,
    ),
]
PasswordOpt = Annotated[
    str | None,
    typer.Option(
        "--password",
        envvar="RETROSEARCH_ENGINE_PASSWORD",
        help="Basic-auth password (prefer the environment variable).",
        show_default=False,
        rich_help_panel=CONNECTION_PANEL,
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="RETROSEARCH_ENGINE_API_KEY",
        help="API key, sent as 'Authorization: ApiKey ...' (prefer the environment variable).",
        show_default=False,
        rich_help_panel=CONNECTION_PANEL,
    ),
]
CaCertsOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-certs",
        exists=True,
        dir_okay=False,
        help="CA bundle to verify https.",
        rich_help_panel=CONNECTION_PANEL,
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option("--insecure", help="Do not verify https certificates.", rich_help_panel=CONNECTION_PANEL),
]


def engine_connection(
    engine: Engine = Engine.OPENSEARCH,
    url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    api_key: str | None = None,
    ca_certs: Path | None = None,
    insecure: bool = False,
) -> EngineConnection:
    """The connection the options describe; a bad combination is a usage error (exit code 2)."""
    try:
        return EngineConnection(
            engine=engine,
            url=url,
            username=username,
            password=SecretStr(password) if password is not None else None,
            api_key=SecretStr(api_key) if api_key is not None else None,
            ca_certs=str(ca_certs) if ca_certs else None,
            verify_certs=not insecure,
        )
    except ValidationError as error:
        # Only the validators' own messages: pydantic's full text would echo the input values.
        messages = "; ".join(detail["msg"].removeprefix("Value error, ") for detail in error.errors())
        raise typer.BadParameter(messages) from None


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def scrub(message: str, connection: EngineConnection) -> str:
    """``message`` without the connection's secrets, nor credentials written into a URL."""
    for secret in (connection.password, connection.api_key):
        if secret is not None and secret.get_secret_value():
            message = message.replace(secret.get_secret_value(), "***")
    return _URL_CREDENTIALS.sub("***@", message)


def print_error(console: Console, error: BaseException, connection: EngineConnection) -> None:
    """``error`` as one red line, scrubbed of the connection's secrets."""
    console.print(f"[bold red]error:[/] {escape(scrub(str(error), connection))}", highlight=False)
