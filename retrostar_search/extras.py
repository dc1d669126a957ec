"""The optional extras (``pip install 'retrostar-search[eval]'``): which modules each brings, and the one
way code that needs one asks for it.

A plain ``pip install .`` gives every command that needs no extra; a command or option that needs one
fails with `MissingExtra` (exit code 4, "unavailable"), whose message names the extra and the command
that installs it, instead of an ImportError's traceback. Code imports an extra's module through
`import_extra` where it is used (never at module import, so the rest of the package works without it),
and a command checks `require_extra` before it starts work it could not finish.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from retrostar_search.errors import MissingExtra

# Extra (as named in pyproject.toml's optional-dependencies) → the top-level modules it installs.
EXTRAS: dict[str, tuple[str, ...]] = {
    # `retrosearch eval`: pytrec_eval through ir-measures, and the PNG plot.
    "eval": ("ir_measures", "pytrec_eval", "matplotlib"),
    # BRIGHT exports stored as parquet.
    "parquet": ("pyarrow",),
    # Token-based document truncation with the model's own tokenizer.
    "tokenizer": ("transformers",),
    # The in-process sglang.Engine backend (GPU hosts).
    "sglang": ("sglang",),
}


def install_hint(extra: str) -> str:
    return f"pip install 'retrostar-search[{extra}]'"


def missing_extra(extra: str, needed_for: str) -> MissingExtra:
    """The error for `needed_for` (what the user asked for: a command, an option) without `extra`."""
    return MissingExtra(f"{needed_for} needs the '{extra}' extra: {install_hint(extra)}")


def extra_installed(extra: str) -> bool:
    """Whether every module of `extra` can be imported (looked up, not imported: this stays cheap)."""
    return all(importlib.util.find_spec(module) is not None for module in EXTRAS[extra])


def require_extra(extra: str, needed_for: str) -> None:
    """Fail now, before any work, when `extra` is not installed."""
    if not extra_installed(extra):
        raise missing_extra(extra, needed_for)


def import_extra(module: str, extra: str, needed_for: str) -> ModuleType:
    """``import module``, which `extra` installs; without it, `MissingExtra` saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise missing_extra(extra, needed_for) from error
