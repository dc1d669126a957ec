"""The `retrosearch` command tree as click sees it, for tests that must cover every command: walked through
click's own lookup (`get_command`), which imports a command's module on first use as the CLI does."""

from __future__ import annotations

from typing import Any

import typer

from retrostar_search.cli import app


def _subcommand(group: Any, name: str) -> Any:
    return group.get_command(group.context_class(group), name)


def command_paths() -> list[list[str]]:
    """Every command and command group, as the words that name it: [[], ["index"], ["node"], ["node",
    "start"], ...] (the empty path is `retrosearch` itself)."""
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        if hasattr(command, "list_commands"):
            for name in command.list_commands(command.context_class(command)):
                walk(_subcommand(command, name), [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def find_command(args: list[str]) -> tuple[Any, list[str]]:
    """The (click) command `retrosearch <args>` runs, and the arguments left for it."""
    command = typer.main.get_command(app)
    remaining = list(args)
    while hasattr(command, "list_commands"):  # a command group: descend by name
        subcommand = _subcommand(command, remaining[0]) if remaining else None
        assert subcommand is not None, f"no command {remaining[:1]}"
        command, remaining = subcommand, remaining[1:]
    return command, remaining
