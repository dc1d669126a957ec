"""The one error policy and the options every engine-facing command shares: each kind of error gets one
HTTP status and one exit code, and the connection options read the same everywhere."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from connector.errors import http_status
from retrostar_search.cli import app
from retrostar_search.engines.elasticsearch_setup import LicenceError, NoInferenceApiError
from retrostar_search.engines.opensearch_ml import MLCommonsError
from retrostar_search.errors import (
    BackendError,
    DeadlineExceeded,
    EngineError,
    ExitCode,
    InputTooLarge,
    InvalidInput,
    MissingExtra,
    Overloaded,
    RetrostarError,
    exit_code_for,
)
from retrostar_search.nodes import NodeError
from retrostar_search.tasks import UnknownTaskError

ENGINE_COMMANDS = [["index"], ["search"], ["eval"]]
ONE_ENGINE_COMMANDS = [["setup", "opensearch"], ["teardown", "opensearch"], ["setup", "elasticsearch"]]
SHARED_OPTIONS = ["--url", "--username", "--password", "--api-key", "--ca-certs", "--insecure"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput("bad"), 422),
        (UnknownTaskError("unknown task"), 422),
        (InputTooLarge("too big"), 413),
        (Overloaded("busy", retry_after=1), 429),
        (BackendError("backend failed"), 502),
        (MLCommonsError("predict", "no model"), 502),
        (DeadlineExceeded("too late"), 504),
        (NodeError("not an API error"), None),
    ],
)
def test_each_kind_of_error_has_one_http_status(error: RetrostarError, status: int | None) -> None:
    assert http_status(error) == status


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("bad"), ExitCode.USAGE),
        (LicenceError("basic licence"), ExitCode.UNAVAILABLE),
        (NoInferenceApiError("no inference API"), ExitCode.UNAVAILABLE),
        (MissingExtra("pip install ..."), ExitCode.UNAVAILABLE),
        (EngineError("refused"), ExitCode.FAILED),
        (NodeError("no java"), ExitCode.FAILED),
        (ConnectionError("an engine client's own error"), ExitCode.FAILED),
    ],
)
def test_each_kind_of_error_has_one_exit_code(error: BaseException, code: ExitCode) -> None:
    assert exit_code_for(error) == code


@pytest.mark.parametrize("command", ENGINE_COMMANDS + ONE_ENGINE_COMMANDS, ids=" ".join)
def test_every_engine_command_offers_the_same_connection_options(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "Engine connection" in result.output
    for option in SHARED_OPTIONS:
        assert f"│ {option} " in result.output, option
    for variable in ("URL", "USERNAME", "PASSWORD", "API_KEY"):
        assert f"RETROSEARCH_ENGINE_{variable}" in result.output, variable
    # --engine where the command serves both engines; setup and teardown name theirs.
    assert ("│ --engine " in result.output) is (command in ENGINE_COMMANDS)


@pytest.mark.parametrize(
    "command",
    [["index", "corpus.jsonl", "--index", "x"], ["dashboards", "import", "--url", "http://127.0.0.1:9"]],
    ids=["index", "dashboards import"],
)
def test_two_kinds_of_credentials_are_one_usage_error_everywhere(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--username", "u", "--api-key", "k"], env={"COLUMNS": "250"})
    assert result.exit_code == ExitCode.USAGE
    assert "give either a username/password or an API key, not both" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "command",
    [
        ["setup", "elasticsearch", "--connector-url", "http://connector:8000"],
        ["setup", "opensearch", "--connector-url", "http://connector:8000"],
        ["search", "leaves", "--index", "x"],
    ],
    ids=["setup elasticsearch", "setup opensearch", "search"],
)
def test_an_unreachable_engine_is_one_line_and_exit_1_whichever_command_meets_it(command: list[str]) -> None:
    # Nothing listens on port 9. A command that does not catch the client's error itself is covered by
    # the command group (retrostar_search/cli/__init__.py), so none ends in a traceback.
    result = CliRunner().invoke(app, [*command, "--url", "http://127.0.0.1:9"], env={"COLUMNS": "250"})
    assert result.exit_code == ExitCode.FAILED, result.output
    assert isinstance(result.exception, SystemExit)
    assert "connection refused" in result.output and "Traceback" not in result.output
