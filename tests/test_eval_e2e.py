"""`retrosearch eval` end to end on the real OpenSearch node, reranking through the scripted SGLang server.

The tiny collections in tests/data/eval are built so that BM25 gets the order wrong: keyword-stuffed
documents outrank the relevant ones, and each document carries the score the scripted server gives it
(`[[retrostar:N]]`), high for relevant documents. Reranking must therefore reach a perfect nDCG@10.
"""

from __future__ import annotations

import csv
import json
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from retrostar_search.cli import app
from retrostar_search.engines.connection import Engine
from retrostar_search.errors import ExitCode
from tests.conftest import EngineNode
from tests.scripted_sglang import Failure, ScriptedSGLangServer
from tests.search_corpus import index_documents

DATA = Path(__file__).parent / "data" / "eval"
TINY_BEIR = DATA / "tiny-beir"
TINY_BRIGHT = DATA / "tiny-bright"


@pytest.fixture
def index_name(opensearch_client: Any) -> Iterator[str]:
    name = f"eval-e2e-{uuid.uuid4().hex[:8]}"
    yield name
    opensearch_client.indices.delete(index=name, ignore_unavailable=True)


@pytest.fixture
def run_eval(opensearch_url: str, connector_settings: Any) -> Callable[..., dict[str, Any]]:
    """`run_eval(*args)`: the CLI against the test node; returns the `--json` summary. Requesting
    `connector_settings` clears RETROSEARCH_* variables, which would otherwise configure the reranker."""

    def run(*args: str, expect_exit: int = 0) -> dict[str, Any]:
        result = CliRunner().invoke(app, ["eval", *args, "--url", opensearch_url, "--json"])
        assert result.exit_code == expect_exit, result.stderr or result.output
        return json.loads(result.stdout) if expect_exit == 0 else {}

    return run


def test_reranking_fixes_what_bm25_got_wrong_and_a_second_run_calls_no_model(
    run_eval: Callable[..., dict[str, Any]],
    scripted_sglang: ScriptedSGLangServer,
    index_name: str,
    tmp_path: Path,
) -> None:
    out = tmp_path / "results"
    args = [
        str(TINY_BEIR),
        "--index", index_name,
        "--index-if-missing",
        "--rerank",
        "--backend-url", scripted_sglang.url,
        "--cache", str(tmp_path / "scores.sqlite"),
        "--out", str(out),
    ]  # fmt: skip
    first = run_eval(*args)

    # The unjudged query is not run; the two judged ones are.
    assert first["queries"] == 2
    assert first["first_stage"]["ndcg@10"] < 0.8
    assert first["reranked"]["ndcg@10"] == pytest.approx(1.0)
    assert first["reranked"]["mrr@10"] == pytest.approx(1.0)
    assert first["delta"]["ndcg@10"] > 0.2
    prompts = len(scripted_sglang.stats.prompts)
    assert prompts > 0
    whole = {"degraded_queries": 0, "unreranked_queries": 0, "degradation": None}
    assert first["rerank"] == {"pairs_scored": prompts, "cache_hits": 0, **whole}

    summary = json.loads((out / "summary.json").read_text())
    assert summary["reranked"] == first["reranked"]
    per_query = {row["query_id"]: row for row in json.loads((out / "per_query.json").read_text())}
    assert set(per_query) == {"q-solar", "q-flood"}
    # Graded: the grade-2 document first, then the grade-1 one.
    assert per_query["q-solar"]["reranked_top"][:2] == ["pv-field-study", "pv-degradation"]
    with (out / "per_query.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert {row["query_id"] for row in rows} == {"q-solar", "q-flood"}
    assert all(float(row["ndcg@10:reranked"]) == pytest.approx(1.0) for row in rows)
    plot = imread(out / "eval.png")
    assert plot.shape[0] > 100 and plot.shape[1] > 100
    trec = (out / "run.reranked.trec").read_text().splitlines()
    assert trec[0].split()[:4] == ["q-solar", "Q0", "pv-field-study", "1"]

    scripted_sglang.stats.reset()
    second = run_eval(*args)
    assert scripted_sglang.stats.prompts == []
    assert second["rerank"] == {"pairs_scored": 0, "cache_hits": prompts, **whole}
    assert second["reranked"] == first["reranked"]


def test_through_a_running_connector_with_its_cache(
    run_eval: Callable[..., dict[str, Any]],
    scripted_sglang: ScriptedSGLangServer,
    connector_server: Callable[..., Any],
    index_name: str,
    tmp_path: Path,
) -> None:
    connector = connector_server()
    args = [
        str(TINY_BEIR),
        "--index", index_name,
        "--index-if-missing",
        "--rerank",
        "--connector-url", connector.url,
        "--out", str(tmp_path / "results"),
    ]  # fmt: skip
    first = run_eval(*args)
    assert first["reranked"]["ndcg@10"] == pytest.approx(1.0)
    assert first["settings"]["rerank"]["path"] == "connector"
    prompts = len(scripted_sglang.stats.prompts)
    assert prompts > 0
    # The connector's own counts of what the model and its cache did.
    whole = {"degraded_queries": 0, "unreranked_queries": 0, "degradation": None}
    assert first["rerank"] == {"pairs_scored": prompts, "cache_hits": 0, **whole}

    scripted_sglang.stats.reset()
    second = run_eval(*args)
    assert scripted_sglang.stats.prompts == []
    assert second["reranked"] == first["reranked"]
    assert second["rerank"] == {"pairs_scored": 0, "cache_hits": prompts, **whole}


def test_bright_excluded_ids_task_and_cascade(
    run_eval: Callable[..., dict[str, Any]],
    scripted_sglang: ScriptedSGLangServer,
    index_name: str,
    tmp_path: Path,
) -> None:
    out = tmp_path / "results"
    summary = run_eval(
        str(TINY_BRIGHT),
        "--format", "bright",
        "--task", "biology",
        "--index", index_name,
        "--index-if-missing",
        "--rerank",
        "--cascade", "3@1,1@4",
        "--backend-url", scripted_sglang.url,
        "--cache", str(tmp_path / "scores.sqlite"),
        "--out", str(out),
    )  # fmt: skip

    # Query 0 excludes the keyword-stuffed document BM25 ranks first: it is in neither run, and the
    # model never saw it. Query 1 excludes nothing ("N/A"), so there it stays.
    runs = (out / "run.first_stage.trec").read_text() + (out / "run.reranked.trec").read_text()
    assert "0 Q0 leaf-stuffed" not in runs
    assert "1 Q0 leaf-stuffed" in runs
    assert summary["first_stage"]["mrr@10"] == pytest.approx(1.0)
    assert summary["reranked"]["ndcg@10"] == pytest.approx(1.0)
    # The biology preset's wording reached the model, and the cascade ran as asked: per query, three
    # candidates with one sample, then the best one again with four.
    assert all("biology post" in prompt for prompt in scripted_sglang.stats.prompts)
    samples = Counter(int(sampling.get("n", 1)) for sampling in scripted_sglang.stats.sampling)
    assert samples == {1: 6, 4: 2}
    assert summary["settings"]["rerank"]["cascade"] == "3@1,1@4"


def test_backend_failures_are_reported_not_hidden(
    run_eval: Callable[..., dict[str, Any]],
    scripted_sglang: ScriptedSGLangServer,
    index_name: str,
    tmp_path: Path,
) -> None:
    # The tiny collection plus a document the scripted backend answers with HTTP 500.
    collection = tmp_path / "failing"
    shutil.copytree(TINY_BEIR, collection)
    with (collection / "corpus.jsonl").open("a") as corpus:
        corpus.write(json.dumps({"_id": "broken", "title": "solar", "text": "solar [[error:500]]"}) + "\n")
    out = tmp_path / "results"
    args = [str(collection), "--index", index_name, "--index-if-missing", "--rerank", "--out", str(out)]
    args += ["--cache", str(tmp_path / "scores.sqlite")]

    # A backend that does not answer stops the run before any query (exit 1).
    run_eval(*args, "--backend-url", "http://127.0.0.1:9", expect_exit=ExitCode.FAILED)
    assert not out.exists()

    # A pair the backend fails on leaves its query degraded: the figures are still written, exit 3.
    run_eval(*args, "--backend-url", scripted_sglang.url, expect_exit=ExitCode.INCOMPLETE)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rerank"]["degraded_queries"] == 1


def test_first_stage_and_rerank_on_every_test_node(
    engine_node: EngineNode,
    connector_settings: Any,
    scripted_sglang: ScriptedSGLangServer,
    tmp_path: Path,
) -> None:
    index = f"eval-e2e-{uuid.uuid4().hex[:8]}"
    # The Elasticsearch test nodes are integ-test builds, which have no `english` analyzer.
    analyzer = ["--analyzer", "standard"] if engine_node.engine is Engine.ELASTICSEARCH else []
    try:
        result = CliRunner().invoke(
            app,
            [
                "eval", str(TINY_BEIR),
                "--index", index,
                "--index-if-missing",
                *analyzer,
                "--engine", engine_node.engine.value,
                "--url", engine_node.url,
                "--rerank",
                "--backend-url", scripted_sglang.url,
                "--cache", str(tmp_path / "scores.sqlite"),
                "--out", str(tmp_path / "results"),
                "--json",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["engine"] == engine_node.engine.value
        assert summary["first_stage"]["ndcg@10"] < 0.8
        assert summary["reranked"]["ndcg@10"] == pytest.approx(1.0)
    finally:
        engine_node.client.indices.delete(index=index, ignore_unavailable=True)


def test_a_missing_index_is_refused_with_the_command_to_build_it(
    opensearch_url: str, index_name: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app,
        ["eval", str(TINY_BEIR), "--index", index_name, "--url", opensearch_url, "--out", str(tmp_path)],
    )
    assert result.exit_code == ExitCode.FAILED
    assert f"  retrosearch index {TINY_BEIR} --format beir --index {index_name}\n" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metrics", "bleu@10"], "unknown metric"),
        (["--cascade", "100@1"], "only with --rerank"),
        (["--rerank", "--connector-url", "http://127.0.0.1:9", "--cascade", "10@1"], "connector's own"),
        (["--rerank", "--task", "no-such-task"], "unknown task"),
    ],
)
def test_usage_errors_exit_2_before_touching_the_engine(extra: list[str], message: str) -> None:
    # Port 9 (discard) has no engine: a usage error must be found before any connection is tried.
    result = CliRunner().invoke(
        app, ["eval", str(TINY_BEIR), "--index", "x", "--url", "http://127.0.0.1:9", *extra]
    )
    assert result.exit_code == 2
    # Rich wraps the message inside a box: compare without the borders and line breaks.
    assert message in " ".join(result.output.replace("│", " ").split())


def test_an_index_holding_none_of_the_judged_documents_is_refused_not_scored_zero(
    opensearch_url: str, opensearch_client: Any, index_name: str, tmp_path: Path
) -> None:
    index_documents(opensearch_client, index_name)  # another corpus: leaves and volcanoes
    result = CliRunner().invoke(
        app, ["eval", str(TINY_BEIR), "--index", index_name, "--url", opensearch_url, "--out", str(tmp_path)]
    )
    assert result.exit_code == ExitCode.FAILED
    flat = " ".join(result.output.split())
    assert f"index '{index_name}' holds none of the 3 relevant judged documents looked up" in flat
    assert "every figure would be 0" in flat
    assert f"retrosearch index {TINY_BEIR} --format beir --index {index_name}" in flat
    assert not (tmp_path / "summary.json").exists()


def test_without_a_terminal_progress_comes_as_plain_lines_and_the_footer_names_the_task(
    opensearch_url: str,
    scripted_sglang: ScriptedSGLangServer,
    connector_settings: Any,
    index_name: str,
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "eval", str(TINY_BEIR), "--index", index_name, "--index-if-missing", "--url", opensearch_url,
            "--rerank", "--task", "biology", "--backend-url", scripted_sglang.url,
            "--cache", str(tmp_path / "scores.sqlite"), "--out", str(tmp_path / "out"),
        ],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # CliRunner's output is not a terminal: the progress is plain lines on stderr, first and last.
    progress = [line for line in result.stderr.splitlines() if line.startswith("eval: ")]
    assert progress[0] == "eval: 0/2 queries (0%)"
    assert progress[-1].startswith("eval: 2/2 queries (100%)")
    assert "task biology: Given a query (biology post) and a document (passage)" in " ".join(
        result.output.split()
    )


def test_a_rerank_that_scored_nothing_says_so_and_why(
    opensearch_url: str,
    connector_settings: Any,
    scripted_sglang: ScriptedSGLangServer,
    index_name: str,
    tmp_path: Path,
) -> None:
    # The model server is up (its health answers) but fails every generation.
    scripted_sglang.script(answers=lambda pair: Failure(503))
    out = tmp_path / "results"
    result = CliRunner().invoke(
        app,
        [
            "eval", str(TINY_BEIR), "--index", index_name, "--index-if-missing", "--rerank",
            "--backend-url", scripted_sglang.url, "--cache", str(tmp_path / "scores.sqlite"),
            "--out", str(out), "--url", opensearch_url,
        ],
        env={"COLUMNS": "300"},
    )  # fmt: skip
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    flat = " ".join(result.output.split())
    assert "nothing was reranked: no query got a single Retro* score" in flat
    assert "the model backend failed" in flat and "HTTP 503" in flat
    assert "only in part" not in flat
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rerank"]["unreranked_queries"] == summary["rerank"]["degraded_queries"] == 2
