"""How every command reports a failure: one red line, its exit code from the one table
(`retrostar_search.errors.ExitCode`, documented in README.md), and no secret of the connection in it."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from retrostar_search.engines.connection import ServiceConnection
from retrostar_search.engines.errors import engine_errors, explain_engine_error
from retrostar_search.errors import ExitCode, RetrostarError, exit_code_for
from retrostar_search.redaction import redact


def command_errors() -> tuple[type[Exception], ...]:
    """What a command reports as a message instead of a traceback: the project's own errors and the
    engine clients'."""
    return (RetrostarError, *engine_errors())


def scrub(message: str, connection: ServiceConnection) -> str:
    """``message`` without the connection's secrets, nor credentials written into a URL."""
    return redact(message, (connection.password, connection.api_key))


def fail(
    console: Console,
    error: BaseException,
    *,
    label: str = "error:",
    connection: ServiceConnection | None = None,
    hint: str | None = None,
    code: ExitCode | None = None,
) -> NoReturn:
    """Print `error` as one line after `label` (an engine error as the engine's reason), then `hint` on a
    line of its own, and exit with `code`, by default the error's code in the table."""
    message = explain_engine_error(error) if isinstance(error, engine_errors()) else str(error)
    if connection is not None:
        message = scrub(message, connection)
    console.print(f"[bold red]{label}[/] {escape(message)}", highlight=False)
    if hint:
        console.print(f"hint: {escape(hint)}", highlight=False)
    raise typer.Exit(code if code is not None else exit_code_for(error)) from None
