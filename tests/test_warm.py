"""`retrosearch warm`: the searches of a query list scored into the connector's cache beforehand, so that the
same searches through the OpenSearch pipeline call no model. Against the real local OpenSearch node, a
connector on a real uvicorn (wired in by `setup opensearch`) and the scripted SGLang server; warming in
this process shares the connector's sqlite cache file."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from opensearchpy import OpenSearch
from typer.testing import CliRunner

from connector.settings import ENV_PREFIX, ConnectorSettings
from index_tools.readers import QueryFormat, read_queries
from retrostar_search.cli import app
from retrostar_search.engines.connector_client import ConnectorClient
from retrostar_search.engines.search import rerank_client_side, search_first_stage, search_through_pipeline
from retrostar_search.errors import ExitCode, InvalidInput
from tests.conftest import RestartableConnector
from tests.scripted_sglang import Failure, Pair, ScriptedSGLangServer
from tests.search_corpus import expected_order, index_documents, run_cli, scripted_score

RUN = uuid.uuid4().hex[:8]
NAME = f"rswarm-{RUN}"
INDEX = f"rswarm-docs-{RUN}"
CANDIDATES = 4


def warm(*args: str) -> Result:
    return CliRunner().invoke(app, ["warm", *args], env={"COLUMNS": "400"})


def said(result: Result) -> str:
    """The output as one line, without rich's box around an error."""
    return " ".join(result.output.replace("│", " ").split())


def write_queries(path: Path, queries: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"_id": qid, "text": text}) + "\n" for qid, text in queries.items()))
    return path


# ------------------------------------------------------------------------------------------------
# Query lists
# ------------------------------------------------------------------------------------------------


def test_query_lists_read_as_jsonl_beir_folder_and_tsv(tmp_path: Path) -> None:
    expected = {"q1": "why do leaves change colour", "q2": "lava and ash"}
    jsonl = write_queries(tmp_path / "queries.jsonl", expected)
    folder = tmp_path / "beir"
    folder.mkdir()
    write_queries(folder / "queries.jsonl", expected)
    tsv = tmp_path / "queries.dev.tsv"
    tsv.write_text("q1\twhy do leaves change colour\n\nq2\tlava and ash\r\n")

    assert read_queries(jsonl) == expected
    assert read_queries(folder) == expected
    assert read_queries(tsv) == expected
    assert read_queries(tsv, QueryFormat.TSV) == expected


def test_a_malformed_tsv_line_is_named(tmp_path: Path) -> None:
    tsv = tmp_path / "queries.tsv"
    tsv.write_text("q1\tfine\nno tab on this line\n")
    with pytest.raises(InvalidInput, match=r"queries\.tsv:2: expected id<TAB>text"):
        read_queries(tsv)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("q1\tfine\nbroken\n", "queries.tsv", "queries.tsv:2: expected id<TAB>text"),
        ('{"_id": "q1", "text": "fine"}\n{"_id": \n', "queries.jsonl", "queries.jsonl:2: invalid JSON"),
        ('{"_id": "q1", "text": "  "}\n', "queries.jsonl", "1 queries have no text: 'q1'"),
        ("q1 fine\n", "queries.txt", "cannot tell the query format"),
    ],
)
def test_bad_query_files_exit_2_naming_the_line_before_anything_runs(
    tmp_path: Path, content: str, name: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    # Nothing listens at this engine URL or backend: the file is refused before either is contacted.
    result = warm(
        str(path), "--index", "x", "--url", "http://127.0.0.1:9", "--cache-path", str(tmp_path / "c")
    )
    assert result.exit_code == ExitCode.USAGE
    assert message in said(result)


def test_in_process_warming_needs_the_connectors_persistent_cache(
    tmp_path: Path, connector_settings: Any
) -> None:
    queries = write_queries(tmp_path / "q.jsonl", {"q1": "text"})
    for extra in ([], ["--cache-path", str(tmp_path / "c.sqlite"), "--cache-size", "0"]):
        result = warm(str(queries), "--index", "x", "--url", "http://127.0.0.1:9", *extra)
        assert result.exit_code == ExitCode.USAGE
        assert "needs the connector's persistent cache" in said(result)


def test_connector_url_refuses_in_process_reranker_options(tmp_path: Path, connector_settings: Any) -> None:
    queries = write_queries(tmp_path / "q.jsonl", {"q1": "text"})
    result = warm(
        str(queries), "--index", "x", "--connector-url", "http://127.0.0.1:9", "--backend-url", "http://b:1"
    )
    assert result.exit_code == ExitCode.USAGE
    assert "(--backend-url) are for warming in this process" in said(result)


# ------------------------------------------------------------------------------------------------
# Warm, then search through the pipeline: no model call
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("warm") / "scores.sqlite"


@pytest.fixture(scope="module")
def connector(
    scripted_sglang_session: ScriptedSGLangServer, cache_file: Path
) -> Iterator[RestartableConnector]:
    """A connector whose cache is `cache_file`, as `retrosearch serve --cache-path` would run."""
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith(ENV_PREFIX):
                env.delenv(name)
        settings = ConnectorSettings(
            backend="sglang", backend_url=scripted_sglang_session.url, cache_path=cache_file
        )
    served = RestartableConnector(settings)
    served.start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def pipeline(
    opensearch_url: str, opensearch_client: OpenSearch, connector: RestartableConnector
) -> Iterator[str]:
    index_documents(opensearch_client, INDEX)
    code, output = run_cli(
        "setup", "opensearch", "--url", opensearch_url, "--connector-url", connector.url,
        "--name", NAME, "--pipeline", NAME, "--no-smoke-test",
    )  # fmt: skip
    assert code == 0, output
    yield NAME
    run_cli("teardown", "opensearch", "--url", opensearch_url, "--name", NAME, "--pipeline", NAME)
    opensearch_client.indices.delete(index=INDEX, ignore_unavailable=True)


@pytest.fixture
def warm_json(opensearch_url: str, connector_settings: Any) -> Callable[..., tuple[int, dict[str, Any]]]:
    """`warm_json(queries, *args)`: the CLI against the test node's INDEX with `--json`; the exit code and
    the summary. Requesting `connector_settings` clears RETROSEARCH_* variables."""

    def run(queries: Path, *args: str) -> tuple[int, dict[str, Any]]:
        result = warm(
            str(queries), "--index", INDEX, "--url", opensearch_url, "--candidates", str(CANDIDATES),
            "--json", *args,
        )  # fmt: skip
        assert result.exit_code in (ExitCode.OK, ExitCode.INCOMPLETE), result.output
        return result.exit_code, json.loads(result.stdout)

    return run


def hits_per_query(client: OpenSearch, queries: dict[str, str]) -> int:
    return sum(len(search_first_stage(client, INDEX, text, CANDIDATES)) for text in set(queries.values()))


def assert_pipeline_costs_no_model_call(
    client: OpenSearch, pipeline: str, scripted: ScriptedSGLangServer, queries: dict[str, str]
) -> None:
    scripted.stats.reset()
    for text in queries.values():
        reranked = search_through_pipeline(client, INDEX, text, CANDIDATES, pipeline=pipeline)
        first_stage = [hit.id for hit in search_first_stage(client, INDEX, text, CANDIDATES)]
        assert [hit.id for hit in reranked] == expected_order(first_stage, first_stage)
        assert [hit.retrostar_score for hit in reranked] == pytest.approx(
            [scripted_score(hit.id) for hit in reranked], abs=1e-3
        )
    assert scripted.stats.calls["POST /generate"] == 0
    assert scripted.stats.pairs == 0


@pytest.mark.parametrize(
    ("leg", "queries"),
    [
        ("in-process", {"a": "why do autumn leaves change colour", "b": "trees shed leaves", "c": "lava"}),
        ("connector", {"d": "yellow and orange pigments", "e": "shorter days and the tree"}),
    ],
)
def test_after_warming_the_pipeline_searches_call_no_model(
    leg: str,
    queries: dict[str, str],
    warm_json: Callable[..., tuple[int, dict[str, Any]]],
    opensearch_client: OpenSearch,
    pipeline: str,
    connector: RestartableConnector,
    scripted_sglang: ScriptedSGLangServer,
    cache_file: Path,
    tmp_path: Path,
) -> None:
    repeated = next(iter(queries.values()))
    path = write_queries(tmp_path / "queries.jsonl", {**queries, "again": repeated})
    pairs = hits_per_query(opensearch_client, queries)
    assert pairs > len(queries)
    if leg == "in-process":  # the connector's sqlite file, written by this process
        args = ["--backend-url", scripted_sglang.url, "--cache-path", str(cache_file)]
    else:
        args = ["--connector-url", connector.url]

    code, first = warm_json(path, *args)

    assert code == ExitCode.OK
    assert (first["queries"], first["duplicates"]) == (len(queries), 1)
    assert (first["pairs_scored"], first["pairs_cached"], first["pairs_failed"]) == (pairs, 0, 0)
    assert scripted_sglang.stats.pairs == pairs
    assert first["rerank"]["path"] == leg

    # Resumable: a second run finds every pair cached and scores none.
    scripted_sglang.stats.reset()
    code, second = warm_json(path, *args)
    assert code == ExitCode.OK
    assert (second["pairs_scored"], second["pairs_cached"]) == (0, pairs)
    assert scripted_sglang.stats.pairs == 0

    assert_pipeline_costs_no_model_call(opensearch_client, pipeline, scripted_sglang, queries)


def test_failed_pairs_exit_3_and_the_next_run_scores_only_them(
    warm_json: Callable[..., tuple[int, dict[str, Any]]],
    opensearch_client: OpenSearch,
    scripted_sglang: ScriptedSGLangServer,
    cache_file: Path,
    tmp_path: Path,
) -> None:
    queries = {"f": "red sugars trapped in the leaf", "g": "water over winter"}
    path = write_queries(tmp_path / "queries.tsv", queries)
    path.write_text("".join(f"{qid}\t{text}\n" for qid, text in queries.items()))
    pairs = hits_per_query(opensearch_client, queries)
    broken = {"sugars"}  # every attempt at the document holding it fails while it is broken

    def answers(pair: Pair) -> Failure | None:
        return Failure(status=500) if any(word in pair.document.lower() for word in broken) else None

    scripted_sglang.script(answers=answers)
    in_process = ["--backend-url", scripted_sglang.url, "--cache-path", str(cache_file)]
    failing = sum(
        1
        for text in queries.values()
        for hit in search_first_stage(opensearch_client, INDEX, text, CANDIDATES)
        if "sugars" in (hit.title + hit.text).lower()
    )
    assert failing > 0

    code, first = warm_json(path, *in_process)

    assert code == ExitCode.INCOMPLETE
    assert (first["pairs_scored"], first["pairs_failed"]) == (pairs - failing, failing)
    assert first["queries_incomplete"] >= 1 and first["errors"] == []

    broken.clear()
    scripted_sglang.stats.reset()
    code, second = warm_json(path, *in_process)
    assert code == ExitCode.OK
    assert (second["pairs_scored"], second["pairs_cached"], second["pairs_failed"]) == (
        failing,
        pairs - failing,
        0,
    )
    assert scripted_sglang.stats.pairs == failing


def test_progress_comes_as_plain_lines_without_a_terminal(
    opensearch_url: str,
    opensearch_client: OpenSearch,
    pipeline: str,
    scripted_sglang: ScriptedSGLangServer,
    cache_file: Path,
    connector_settings: Any,
    tmp_path: Path,
) -> None:
    path = write_queries(tmp_path / "queries.jsonl", {"h": "deciduous trees"})
    result = warm(
        str(path), "--index", INDEX, "--url", opensearch_url, "--backend-url", scripted_sglang.url,
        "--cache-path", str(cache_file), "--candidates", str(CANDIDATES),
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "warming: 0/1 queries (0%)"
    assert lines[-1].startswith("warming: 1/1 queries (100%), ")
    assert "━" not in result.output
    assert "warmed 1 queries in " in result.stdout and "pairs scored" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--index", "rswarm-no-such-index"], "no such index"),
        (["--backend-url", "http://127.0.0.1:9"], "backend at http://127.0.0.1:9 is unreachable"),
        (["--connector-url", "http://127.0.0.1:9"], "does not answer"),
    ],
)
def test_what_cannot_be_reached_fails_with_exit_1(
    opensearch_url: str,
    pipeline: str,
    scripted_sglang: ScriptedSGLangServer,
    cache_file: Path,
    connector_settings: Any,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    path = write_queries(tmp_path / "queries.jsonl", {"i": "autumn"})
    defaults = {"--index": INDEX, "--backend-url": scripted_sglang.url, "--cache-path": str(cache_file)}
    given = dict(zip(args[::2], args[1::2], strict=True))
    if "--connector-url" in given:
        del defaults["--backend-url"], defaults["--cache-path"]
    options = [item for pair in {**defaults, **given}.items() for item in pair]
    result = warm(str(path), "--url", opensearch_url, *options)
    assert result.exit_code == ExitCode.FAILED, result.output
    assert message in said(result)
    assert scripted_sglang.stats.pairs == 0


def test_warming_into_the_shared_cache_makes_every_replica_free(
    request: pytest.FixtureRequest,
    warm_json: Callable[..., tuple[int, dict[str, Any]]],
    opensearch_client: OpenSearch,
    pipeline: str,
    connector_server: Callable[..., Any],
    scripted_sglang: ScriptedSGLangServer,
    tmp_path: Path,
) -> None:
    redis_url = request.getfixturevalue("redis_url")
    queries = {"k": f"autumn leaves {uuid.uuid4().hex}", "l": f"shorter days {uuid.uuid4().hex}"}
    path = write_queries(tmp_path / "queries.jsonl", queries)
    pairs = hits_per_query(opensearch_client, queries)

    code, summary = warm_json(path, "--backend-url", scripted_sglang.url, "--cache-url", redis_url)
    assert code == ExitCode.OK and summary["pairs_scored"] == pairs

    scripted_sglang.stats.reset()
    for replica in (connector_server(cache_url=redis_url), connector_server(cache_url=redis_url)):
        with ConnectorClient(replica.url) as client:
            for text in queries.values():
                hits = search_first_stage(opensearch_client, INDEX, text, CANDIDATES)
                reranked = rerank_client_side(hits, text, client)
                assert all(hit.retrostar_score is not None for hit in reranked)
    assert scripted_sglang.stats.pairs == 0
