"""How every command reports a failure: one red line, its exit code from the one table
(`retrostar_search.errors.ExitCode`, documented in README.md), and no secret of the connection in it."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from retrostar_search.engines.connection import EngineConnection, ServiceConnection
from retrostar_search.engines.errors import Service, describe_failure, engine_errors, explain_engine_error
from retrostar_search.errors import ExitCode, RetrostarError, exit_code_for
from retrostar_search.redaction import redact


def command_errors() -> tuple[type[Exception], ...]:
    """What a command reports as a message instead of a traceback: the project's own errors and the
    engine clients'."""
    return (RetrostarError, *engine_errors())


def scrub(message: str, connection: ServiceConnection) -> str:
    """``message`` without the connection's secrets, nor credentials written into a URL."""
    return redact(message, (connection.password, connection.api_key))


def display_url(connection: ServiceConnection) -> str:
    """The connection's URL as messages show it: without credentials written into it."""
    url = connection.resolved_url if isinstance(connection, EngineConnection) else connection.url or ""
    return scrub(url, connection)


def fail(
    console: Console,
    error: BaseException,
    *,
    label: str = "error:",
    connection: ServiceConnection | None = None,
    hint: str | None = None,
    code: ExitCode | None = None,
    service: Service = Service.ENGINE,
) -> NoReturn:
    """Print `error` as one line after `label`, then what to try on a line of its own (`hint`, else the
    error's own), and exit with `code`, by default the error's code in the table.

    An engine error reads as `describe_failure` puts it: with `connection`, a call that got no answer or a
    refused login names the URL and what to try; otherwise it is the engine's reason."""
    hint = hint or getattr(error, "hint", None)
    if isinstance(error, engine_errors()):
        if connection is not None:
            failure = describe_failure(error, display_url(connection), service)
            message, hint = failure.message, hint or failure.hint
        else:
            message = explain_engine_error(error)
    else:
        message = str(error)
    if connection is not None:
        message = scrub(message, connection)
    console.print(f"[bold red]{label}[/] {escape(message)}", highlight=False)
    if hint:
        console.print(f"hint: {escape(hint)}", highlight=False)
    raise typer.Exit(code if code is not None else exit_code_for(error)) from None
