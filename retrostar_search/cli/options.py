"""Small helpers for declaring typer options: one help panel per group, and signatures built in code."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import typer


def in_panel(panel: str | None) -> Callable[..., Any]:
    """`typer.Option` in one help panel: ``_run = in_panel("Run")``, then ``_run("Help text.", min=1)``."""

    def option(help: str, *declarations: str, **settings: Any) -> Any:
        return typer.Option(*declarations, help=help, rich_help_panel=panel, **settings)

    return option


def set_signature(function: Callable[..., Any], parameters: list[inspect.Parameter]) -> None:
    """Give `function` the signature typer reads its options from (and the annotations it resolves)."""
    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    function.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
