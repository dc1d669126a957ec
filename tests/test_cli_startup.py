"""`retrosearch` starts without importing what it does not use: `--help` lists the commands without importing
any of them, each command's help imports neither the engine clients, the HTTP clients, the connector's web
stack nor an optional extra, and `index` into OpenSearch does not load Elasticsearch's client. What a
process imported is read from its sys.modules, in a fresh interpreter. (How long it takes is
bench/startup.py's business: timings belong in benchmarks, not tests.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from retrostar_search.cli import COMMANDS, app
from retrostar_search.extras import EXTRAS

ROOT = Path(__file__).resolve().parents[1]
# The console script's body, then the modules it imported on stderr when the interpreter exits (sys.modules,
# not -X importtime, which does not see modules imported through importlib.import_module).
RETROSEARCH = """
import atexit, sys
atexit.register(lambda: sys.__stderr__.write("\\nimported: " + " ".join(sorted(sys.modules)) + "\\n"))
from retrostar_search.cli import main
sys.argv[0] = "retrosearch"
main()
"""
# Needed by a command when it runs, never to show help.
ENGINE_CLIENTS = {"opensearchpy", "elasticsearch", "elastic_transport"}
HTTP_CLIENTS = {"httpx", "aiohttp", "requests", "urllib3"}
WEB_STACK = {"fastapi", "starlette", "uvicorn", "prometheus_client"}
OPTIONAL = {module for modules in EXTRAS.values() for module in modules}
NEVER_FOR_HELP = ENGINE_CLIENTS | HTTP_CLIENTS | WEB_STACK | OPTIONAL
COMMAND_MODULES = {f"retrostar_search.cli.{command.module}" for command in COMMANDS.values()}


def imported_by(*args: str) -> set[str]:
    """Every module `retrosearch <args>` imported, top-level packages and submodules alike."""
    completed = subprocess.run(
        [sys.executable, "-c", RETROSEARCH, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "120"},
        timeout=60,
    )
    listed = [line for line in completed.stderr.splitlines() if line.startswith("imported: ")]
    assert listed, completed.stderr[-2000:]
    return set(listed[-1].removeprefix("imported: ").split())


def top_level(modules: set[str]) -> set[str]:
    return {module.split(".")[0] for module in modules}


def test_help_lists_the_commands_without_importing_any() -> None:
    modules = imported_by("--help")
    assert not modules & COMMAND_MODULES
    assert not top_level(modules) & (NEVER_FOR_HELP | {"pydantic_settings", "connector", "index_tools"})


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_commands_help_imports_no_client_server_or_extra(command: str) -> None:
    modules = imported_by(command, "--help")
    assert f"retrostar_search.cli.{COMMANDS[command].module}" in modules
    assert not top_level(modules) & NEVER_FOR_HELP


def test_index_help_does_not_load_the_connector_settings() -> None:
    assert "pydantic_settings" not in top_level(imported_by("index", "--help"))


def test_index_into_opensearch_loads_neither_elasticsearch_nor_the_connector(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "1", "text": "leaves"}\n')
    # Nothing listens on port 9: the command fails at the engine, after importing what indexing needs.
    modules = top_level(imported_by("index", str(corpus), "--index", "x", "--url", "http://127.0.0.1:9"))
    assert "opensearchpy" in modules
    assert not modules & (
        {"elasticsearch", "elastic_transport", "pydantic_settings", "connector"} | WEB_STACK
    )
    assert not modules & OPTIONAL


def test_each_summary_is_the_first_paragraph_of_the_commands_own_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`retrosearch --help` shows the summaries from COMMANDS; with every command loaded it must read the
    same, so a command's docstring and its summary cannot drift apart."""
    group = typer.main.get_command(app)
    context = group.context_class(group, info_name="retrosearch", terminal_width=120)

    group.format_help(context, context.make_formatter())
    listed = capsys.readouterr().out
    for name in COMMANDS:
        assert group.get_command(context, name).name == name  # imports and registers the real command
    group.format_help(context, context.make_formatter())
    loaded = capsys.readouterr().out

    assert "Commands" in listed and all(f" {name} " in listed for name in COMMANDS)
    assert listed == loaded
