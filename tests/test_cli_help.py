"""What `retrosearch` says about itself: --version, help that reads the same for every command (no `<bool>`
beside a flag, one `[env var: ...]` style), the start-up banner of `serve`, and the dashboards export
following the connector's log index."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from connector.settings import ENV_PREFIX
from retrostar_search import __version__
from retrostar_search.cli import app
from retrostar_search.tasks import PRESETS


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})


def command_paths() -> list[list[str]]:
    """Every command and group of the app, as the arguments that reach it."""
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output == f"retrosearch {__version__}\n"


@pytest.mark.parametrize("path", command_paths(), ids=lambda path: " ".join(path) or "retrosearch")
def test_help_shows_no_type_beside_a_flag_and_one_env_var_style(path: list[str]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "[env: " not in result.output


def test_serve_names_its_variables_as_the_other_commands_do() -> None:
    assert "[env var: RETROSEARCH_BACKEND_URL]" in " ".join(invoke("serve", "--help").output.split())
    assert "[env var: RETROSEARCH_CONNECTOR_URL]" in " ".join(invoke("search", "--help").output.split())


def test_serve_prints_who_scores_and_where_everything_is_before_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    result = invoke(
        "serve", "--port", "8123", "--backend-url", "http://user:backend-pass@gpu-host:30000",
        "--api-key", "serve-secret", "--task", "biology", "--cascade", "10@1,3@4",
        "--cache-path", "/tmp/scores.sqlite", "--cache-url", "redis://:cache-pass@cache-host:6379/0",
        "--explore", "--explore-url", "http://127.0.0.1:9200",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    banner = dict(
        re.match(r"\s+(\S+(?: log)?)\s{2,}(.*)", line).groups()  # type: ignore[union-attr]
        for line in result.stderr.splitlines()[1:]
        if line.startswith("  ")
    )
    assert result.stderr.splitlines()[0] == "Retro* rerank connector on http://127.0.0.1:8123"
    assert banner["backend"] == "sglang at http://***@gpu-host:30000"
    assert banner["model"] == "ljw13/retro-star-qwen3-14b-0928"
    assert banner["task"] == f"biology: {PRESETS['biology'].relevance_definition}"
    assert banner["scoring"].startswith("cascade 10@1,3@4")
    assert banner["auth"] == "API key required"
    assert (
        banner["cache"] == "memory 64.0MiB + sqlite /tmp/scores.sqlite + shared redis://***@cache-host:6379/0"
    )
    assert banner["explorer"] == "http://127.0.0.1:8123/explore (searches opensearch http://127.0.0.1:9200)"
    assert banner["docs"] == "http://127.0.0.1:8123/docs"
    assert "backend-pass" not in result.output + result.stderr
    assert "serve-secret" not in result.output + result.stderr
    assert "cache-pass" not in result.output + result.stderr


def test_the_cpu_fallback_is_named_as_not_retrostar_in_the_banner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    result = invoke("serve", "--backend", "cpu", "--no-explore")
    assert "backend     cpu: a lexical fallback, NOT Retro*" in result.stderr
    assert "explorer    off" in result.stderr and "auth        off: no API key" in result.stderr


def pattern_of(output: str) -> str:
    (index_pattern,) = [
        json.loads(line) for line in output.splitlines() if json.loads(line)["type"] == "index-pattern"
    ]
    return index_pattern["attributes"]["title"]


def test_dashboards_export_follows_the_connectors_log_index(tmp_path: Path) -> None:
    assert pattern_of(invoke("dashboards", "export").output) == "retrostar-log*"
    assert pattern_of(invoke("dashboards", "export", "--log-index", "team-a").output) == "team-a*"
    # The connector's own variable and config file, as `retrosearch serve` reads them.
    assert (
        pattern_of(invoke("dashboards", "export", env={"RETROSEARCH_LOG_INDEX": "team-b"}).output)
        == "team-b*"
    )
    config = tmp_path / "serve.toml"
    config.write_text('log_url = "http://127.0.0.1:9200"\nlog_index = "team-c"\n')
    assert pattern_of(invoke("dashboards", "export", "--config", str(config)).output) == "team-c*"
    # An explicit pattern still wins.
    exported = invoke("dashboards", "export", "--log-index", "team-a", "--index-pattern", "logs-*").output
    assert pattern_of(exported) == "logs-*"
