"""The import graph: the core (`retrostar_search/` less its `cli/`) and `index_tools/` sit below the
adapters. Only the application layer (`retrostar_search/cli/`) may import the connector, and nothing below
it imports the application layer, so the arrows never point back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "retrostar_search" / "cli"


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, at any depth (lazy imports inside functions included)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def below_the_adapters() -> list[Path]:
    files = [
        *sorted((ROOT / "retrostar_search").rglob("*.py")),
        *sorted((ROOT / "index_tools").rglob("*.py")),
    ]
    return [path for path in files if CLI not in path.parents]


def reaches(modules: set[str], package: str) -> set[str]:
    return {module for module in modules if module == package or module.startswith(f"{package}.")}


@pytest.mark.parametrize("path", below_the_adapters(), ids=lambda path: str(path.relative_to(ROOT)))
def test_the_core_imports_neither_the_connector_nor_the_command_line(path: Path) -> None:
    modules = imported_modules(path)
    assert reaches(modules, "connector") | reaches(modules, "retrostar_search.cli") == set()


def test_the_connector_does_not_import_the_command_line() -> None:
    offending = {
        str(path.relative_to(ROOT)): reaches(imported_modules(path), "retrostar_search.cli")
        for path in sorted((ROOT / "connector").rglob("*.py"))
    }
    assert {path: modules for path, modules in offending.items() if modules} == {}


def test_the_check_sees_the_application_layers_own_imports_of_the_connector() -> None:
    # Guards the check itself: the CLI does import the connector (serve), so a parser that missed
    # imports would make the tests above pass vacuously.
    assert reaches(imported_modules(CLI / "serve.py"), "connector")
