"""Optional extras: each is described once (retrostar_search/extras.py, agreeing with pyproject.toml), and a
command or option that needs a missing one names the extra to install and exits 4 ("unavailable"), with no
traceback and before any work. The extras are installed here; a test hides one by putting None in
sys.modules, which is how Python marks a module that cannot be imported."""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from retrostar_search.cli import app
from retrostar_search.errors import ExitCode, MissingExtra
from retrostar_search.evaluation.metrics import parse_metrics, score_run
from retrostar_search.extras import EXTRAS, import_extra, require_extra

ROOT = Path(__file__).resolve().parents[1]
TINY_BEIR = ROOT / "tests" / "data" / "eval" / "tiny-beir"
# Optional dependencies for developers, not features of the package.
DEVELOPER_EXTRAS = {"test", "bench", "all"}
# A port nothing listens on: a command that got as far as the engine would fail with exit 1, not 4.
UNREACHABLE = "http://127.0.0.1:9"


def optional_dependencies() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def hide(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    """Make every module of `extra` unimportable for this test."""
    for module in EXTRAS[extra]:
        for name in [name for name in sys.modules if name.startswith(f"{module}.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, module, None)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def assert_names_the_extra(result: Any, extra: str) -> None:
    assert result.exit_code == ExitCode.UNAVAILABLE, result.output
    assert f"pip install 'retrostar-search[{extra}]'" in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, MissingExtra)  # handled, not raised out of the command


# --- One description of the extras ---------------------------------------------------------------------


def test_every_feature_extra_in_pyproject_is_described() -> None:
    assert set(EXTRAS) == set(optional_dependencies()) - DEVELOPER_EXTRAS


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_each_extra_installs_the_modules_it_is_checked_by(extra: str) -> None:
    """Where the extra is installed: its distributions provide exactly the modules listed for it."""
    provided: set[str] = set()
    for requirement in optional_dependencies()[extra]:
        name = requirement.split(">")[0].split("=")[0].split("[")[0].strip()
        try:
            files = distribution(name).files or []
        except PackageNotFoundError:
            pytest.skip(f"the {extra!r} extra is not installed here ({name})")
        provided.update(Path(file).parts[0].removesuffix(".py") for file in files)
    assert set(EXTRAS[extra]) <= provided


def test_import_extra_names_what_needs_it_and_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    hide(monkeypatch, "parquet")
    with pytest.raises(MissingExtra) as caught:
        import_extra("pyarrow.parquet", "parquet", "reading parquet")
    assert (
        str(caught.value)
        == "reading parquet needs the 'parquet' extra: pip install 'retrostar-search[parquet]'"
    )
    with pytest.raises(MissingExtra, match=r"retrostar-search\[parquet\]"):
        require_extra("parquet", "reading parquet")


def test_metrics_are_named_without_the_extra_and_computed_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = parse_metrics("ndcg@10,recall@100")
    scores = score_run({"q": ["d1"]}, {"q": {"d1": 1}}, metrics, ["q"])
    assert scores == {"q": {"ndcg@10": 1.0, "recall@100": 1.0}}

    hide(monkeypatch, "eval")
    assert [metric.name for metric in parse_metrics("ndcg@10,recall@100")] == ["ndcg@10", "recall@100"]
    with pytest.raises(MissingExtra, match=r"retrostar-search\[eval\]"):
        score_run({"q": ["d1"]}, {"q": {"d1": 1}}, metrics, ["q"])


# --- Commands without the extra they need ----------------------------------------------------------------


def test_eval_without_the_extra_exits_unavailable_before_reading_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hide(monkeypatch, "eval")
    # A collection that does not exist: the extra is checked first, so this is never reached.
    result = invoke("eval", str(tmp_path / "absent"), "--index", "x", "--url", UNREACHABLE)
    assert_names_the_extra(result, "eval")
    assert "`retrosearch eval` needs the 'eval' extra" in result.output
    assert invoke("eval", "--help").exit_code == 0


def test_index_of_a_parquet_export_without_the_extra_exits_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "biology-00000-of-00001.parquet").write_bytes(b"")
    hide(monkeypatch, "parquet")
    result = invoke("index", str(tmp_path), "--index", "x", "--url", UNREACHABLE)
    assert_names_the_extra(result, "parquet")
    assert "reading parquet" in result.output


@pytest.fixture
def uvicorn_not_started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **settings: started.append(app))
    return started


@pytest.mark.parametrize(
    ("extra", "options", "needed_for"),
    [
        ("sglang", ["--backend", "engine"], "the in-process engine"),
        ("tokenizer", ["--tokenizer", "/models/qwen3"], "counting tokens with the model's tokenizer"),
    ],
)
def test_serve_with_an_option_whose_extra_is_missing_exits_before_listening(
    monkeypatch: pytest.MonkeyPatch,
    uvicorn_not_started: list[Any],
    extra: str,
    options: list[str],
    needed_for: str,
) -> None:
    hide(monkeypatch, extra)
    result = invoke("serve", *options)
    assert_names_the_extra(result, extra)
    assert needed_for in result.output
    assert uvicorn_not_started == []  # the server's start-up would have swallowed the error into a log


def test_eval_reranking_in_process_with_a_missing_extra_exits_before_the_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide(monkeypatch, "sglang")
    result = invoke(
        "eval", str(TINY_BEIR), "--index", "x", "--url", UNREACHABLE, "--rerank", "--backend", "engine"
    )
    assert_names_the_extra(result, "sglang")
