"""`retrosearch index` against the real local OpenSearch (2.19, 3.5) and Elasticsearch (8.19, 9.2) nodes
(tests/conftest.py).

Each test writes into an index of its own, deleted afterwards. The Elasticsearch test node is built
without the analysis-common module, so it has no `english` analyzer: its tests use `standard`.
"""

from __future__ import annotations

import gzip
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from index_tools.bulk import BulkOptions
from index_tools.engine import EngineOps
from index_tools.mapping import IncompatibleIndexError, index_body, mapping_problems
from index_tools.readers import open_corpus
from index_tools.run import IndexSettings, index_corpus
from retrostar_search.cli import app
from retrostar_search.engines.connection import Engine
from retrostar_search.errors import ExitCode
from tests.conftest import EngineNode

DATA = Path(__file__).parent / "data" / "indexing"
SMALL = DATA / "small.jsonl"
WITH_BAD_LINES = DATA / "with-bad-lines.jsonl"
CRANFIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "cranfield"


def new_index_name() -> str:
    return f"test-indexing-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def os_index(os_node: EngineNode) -> Iterator[str]:
    name = new_index_name()
    yield name
    os_node.client.indices.delete(index=name, ignore=404)


@pytest.fixture
def es_index(es_node: EngineNode) -> Iterator[str]:
    name = new_index_name()
    yield name
    es_node.client.options(ignore_status=404).indices.delete(index=name)


@pytest.fixture
def os_ops(os_node: EngineNode) -> EngineOps:
    return EngineOps(os_node.client, Engine.OPENSEARCH)


@pytest.fixture
def es_ops(es_node: EngineNode) -> EngineOps:
    return EngineOps(es_node.client, Engine.ELASTICSEARCH)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """Runs `retrosearch index ...` with a rejects file in tmp_path and a wide console (no wrapping)."""

    def invoke(*args: str) -> Result:
        argv = ["index", *args]
        if "--rejects" not in args:
            argv += ["--rejects", str(tmp_path / "rejects.jsonl")]
        return CliRunner().invoke(app, argv, env={"COLUMNS": "250"})

    return invoke


def rejects_in(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "rejects.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def source(client: Any, index: str, doc_id: str) -> dict[str, Any]:
    response = client.get(index=index, id=doc_id)
    return dict(response["_source"])


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# --- Mapping (no engine) ---------------------------------------------------------------------------------


def test_our_own_mapping_is_compatible_and_analyzer_changes_are_not() -> None:
    assert mapping_problems(index_body("english")["mappings"], "english") == []
    assert mapping_problems(index_body("standard")["mappings"], "english") == [
        "field 'title' has analyzer 'standard', this run uses 'english'",
        "field 'text' has analyzer 'standard', this run uses 'english'",
    ]
    searched_differently = index_body("english")["mappings"]
    searched_differently["properties"]["text"]["search_analyzer"] = "standard"
    assert mapping_problems(searched_differently, "english") == [
        "field 'text' has search_analyzer 'standard', this run uses 'english'"
    ]
    dynamic_text = {
        "properties": {"id": {"type": "text"}, "title": {"type": "keyword"}, "text": {"type": "text"}}
    }
    assert mapping_problems(dynamic_text, "standard") == [
        "field 'id' is 'text', expected 'keyword'",
        "field 'title' is 'keyword', expected an analysed 'text' field",
    ]


# --- OpenSearch ------------------------------------------------------------------------------------------


def test_jsonl_is_indexed_with_the_bm25_mapping_and_counted(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    result = cli(str(SMALL), "--index", os_index, "--url", os_node.url)
    assert result.exit_code == ExitCode.OK, result.output
    assert "count check: the index holds 10 documents (0 before + 10 created) OK" in result.output
    assert not (tmp_path / "rejects.jsonl").exists()
    assert os_node.client.count(index=os_index)["count"] == 10
    assert source(os_node.client, os_index, "doc-06") == {
        "id": "doc-06",
        "title": "Binary search",
        "text": "Halve a sorted array at each step to find a value in logarithmic time.",
        "metadata": {"topic": "algorithms"},
    }
    properties = os_node.client.indices.get_mapping(index=os_index)[os_index]["mappings"]["properties"]
    assert properties["text"] == {"type": "text", "analyzer": "english"}
    assert properties["id"] == {"type": "keyword"}
    # English analysis: "computes" finds "computed" through stemming.
    hits = os_node.client.search(index=os_index, body={"query": {"match": {"text": "computes"}}})["hits"][
        "hits"
    ]
    assert [hit["_id"] for hit in hits] == ["doc-05"]


def test_a_rerun_creates_nothing_new(os_ops: EngineOps, os_index: str, tmp_path: Path) -> None:
    settings = IndexSettings(index=os_index, rejects_path=tmp_path / "rejects.jsonl")
    first = index_corpus(os_ops, open_corpus(SMALL), settings)
    second = index_corpus(os_ops, open_corpus(SMALL), settings)
    assert (first.created, first.updated, first.count_after) == (10, 0, 10)
    assert (second.created, second.updated, second.count_before, second.count_after) == (0, 10, 10, 10)
    assert second.count_ok and second.exit_code == ExitCode.OK


@pytest.mark.skipif(not CRANFIELD.is_dir(), reason="shared/data is not beside the repository")
def test_beir_cranfield_folder_indexes_all_1400_documents_its_two_empty_ones_with_a_warning(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    # Issue 12: the two empty documents (ids 471 and 995) belong to the standard collection; a run over
    # it ends with exit 0, counting and naming them, not with a rejection.
    result = cli(
        str(CRANFIELD), "--format", "beir", "--index", os_index, "--url", os_node.url, "--threads", "2"
    )
    assert result.exit_code == ExitCode.OK, result.output
    assert os_node.client.count(index=os_index)["count"] == 1400
    assert rejects_in(tmp_path) == []
    assert "2 document(s) with an id but no title or text, indexed (found by id only)" in result.output
    assert "corpus.jsonl:471, " in result.output and "corpus.jsonl:995" in result.output
    assert source(os_node.client, os_index, "471")["text"] == ""
    title = "experimental investigation of the aerodynamics of a wing in a slipstream"
    query = {"query": {"multi_match": {"query": title, "fields": ["title", "text"]}}}
    hits = os_node.client.search(index=os_index, body=query)["hits"]["hits"]
    assert hits[0]["_id"] == "1"


@pytest.mark.skipif(not CRANFIELD.is_dir(), reason="shared/data is not beside the repository")
def test_a_beir_folder_given_format_jsonl_is_refused_and_nothing_is_written(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str
) -> None:
    # Issue 12: this used to index queries.jsonl too, its 225 ids overwriting documents, with exit 0.
    result = cli(str(CRANFIELD), "--format", "jsonl", "--index", os_index, "--url", os_node.url)
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.replace("│", " ").split())
    assert "is a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)" in flat
    assert "Use --format beir, or leave --format out to detect it." in flat
    assert not os_node.client.indices.exists(index=os_index)


def test_bad_records_are_rejected_with_their_lines_and_the_rest_indexed(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    result = cli(str(WITH_BAD_LINES), "--index", os_index, "--url", os_node.url)
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert os_node.client.count(index=os_index)["count"] == 10
    rejects = rejects_in(tmp_path)
    assert [(Path(r["file"]).name, r["line"]) for r in rejects] == [
        ("with-bad-lines.jsonl", n) for n in (3, 5, 7)
    ]
    assert rejects[0]["reason"].startswith("invalid JSON")
    assert rejects[1]["reason"].startswith("invalid UTF-8")
    assert rejects[2]["reason"] == "empty document: no id, no title and no text"
    assert "3 record(s) rejected" in result.output


def test_max_errors_stops_the_run_early(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    result = cli(str(WITH_BAD_LINES), "--index", os_index, "--url", os_node.url, "--max-errors", "0")
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert "stopped early" in result.output
    # Lines 1-2 were read before the bad line 3; nothing after it.
    assert os_node.client.count(index=os_index)["count"] == 2
    assert [r["line"] for r in rejects_in(tmp_path)] == [3]


def test_duplicate_ids_keep_the_last_version_across_parallel_chunks(
    os_ops: EngineOps, os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    rows = [{"id": f"d{n}", "text": f"version one of {n}"} for n in range(40)]
    rows += [{"id": "d3", "text": "the last d3"}, {"id": "d39", "text": "the last d39"}]
    corpus = open_corpus(write_jsonl(tmp_path / "dups.jsonl", rows))
    settings = IndexSettings(
        index=os_index, rejects_path=tmp_path / "r.jsonl", bulk=BulkOptions(chunk_size=3, threads=4)
    )
    report = index_corpus(os_ops, corpus, settings)
    assert (report.created, report.updated, report.duplicates, report.count_after) == (40, 2, 2, 40)
    assert report.exit_code == ExitCode.OK
    assert source(os_node.client, os_index, "d3")["text"] == "the last d3"
    assert source(os_node.client, os_index, "d39")["text"] == "the last d39"


def test_documents_without_ids_get_stable_content_ids(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "no-ids.jsonl", [{"text": "alpha"}, {"text": "beta"}, {"text": "alpha"}])
    first = cli(str(corpus), "--index", os_index, "--url", os_node.url)
    again = cli(str(corpus), "--index", os_index, "--url", os_node.url)
    assert first.exit_code == again.exit_code == ExitCode.OK, first.output + again.output
    assert "(0 before + 2 created) OK" in first.output  # identical content: one document
    assert "(2 before + 0 created) OK" in again.output
    assert os_node.client.count(index=os_index)["count"] == 2


def test_huge_documents_are_rejected_or_truncated(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    corpus = write_jsonl(
        tmp_path / "huge.jsonl", [{"id": "small", "text": "tiny"}, {"id": "big", "text": "word " * 1000}]
    )
    rejected = cli(str(corpus), "--index", os_index, "--url", os_node.url, "--max-doc-bytes", "1000")
    assert rejected.exit_code == ExitCode.INCOMPLETE
    assert rejects_in(tmp_path)[0]["reason"] == "document is 5000 bytes, over --max-doc-bytes 1000"
    assert os_node.client.count(index=os_index)["count"] == 1
    truncated = cli(
        str(corpus),
        "--index",
        os_index,
        "--url",
        os_node.url,
        "--max-doc-bytes",
        "1000",
        "--truncate-huge",
    )
    assert truncated.exit_code == ExitCode.OK, truncated.output
    assert len(source(os_node.client, os_index, "big")["text"]) == 1000


def test_an_incompatible_existing_index_is_refused_unless_forced_or_recreated(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str
) -> None:
    os_node.client.indices.create(index=os_index, body=index_body(analyzer="standard"))
    refused = cli(str(SMALL), "--index", os_index, "--url", os_node.url)
    assert refused.exit_code == ExitCode.FAILED
    assert "exists with an incompatible mapping" in refused.output
    assert "field 'text' has analyzer 'standard', this run uses 'english'" in refused.output
    assert os_node.client.count(index=os_index)["count"] == 0

    forced = cli(str(SMALL), "--index", os_index, "--url", os_node.url, "--force")
    assert forced.exit_code == ExitCode.OK, forced.output
    assert "mapping problem ignored (--force)" in forced.output

    recreated = cli(str(SMALL), "--index", os_index, "--url", os_node.url, "--recreate")
    assert recreated.exit_code == ExitCode.OK, recreated.output
    assert "(0 before + 10 created) OK" in recreated.output
    mapping = os_node.client.indices.get_mapping(index=os_index)[os_index]["mappings"]
    assert mapping["properties"]["text"]["analyzer"] == "english"


def test_engine_side_rejections_go_to_the_rejects_file(
    os_ops: EngineOps, os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    body = index_body()
    body["mappings"]["properties"]["metadata"]["properties"] = {"year": {"type": "integer"}}
    os_node.client.indices.create(index=os_index, body=body)
    corpus = write_jsonl(
        tmp_path / "years.jsonl",
        [
            {"id": "a", "text": "x", "year": 2001},
            {"id": "b", "text": "y", "year": "last spring"},
            {"id": "c", "text": "z"},
        ],
    )
    settings = IndexSettings(index=os_index, rejects_path=tmp_path / "rejects.jsonl")
    report = index_corpus(os_ops, open_corpus(corpus), settings)
    assert (report.created, report.rejected, report.count_after) == (2, 1, 2)
    assert report.exit_code == ExitCode.INCOMPLETE
    [rejected] = rejects_in(tmp_path)
    assert (rejected["file"], rejected["line"]) == (str(corpus), 2)
    assert rejected["reason"].startswith("engine refused the document (status 400): mapper_parsing_exception")
    assert rejected["raw"] == corpus.read_text().splitlines()[1]  # the line as written


def test_429_answers_are_retried_with_backoff_until_accepted(
    os_ops: EngineOps, os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    os_node.client.indices.create(index=os_index, body=index_body())
    # The flood-stage block makes every write answer 429, the engine's own "too many requests".
    os_node.client.indices.put_settings(index=os_index, body={"index.blocks.read_only_allow_delete": True})
    unblock = threading.Timer(
        1.5,
        lambda: os_node.client.indices.put_settings(
            index=os_index, body={"index.blocks.read_only_allow_delete": None}
        ),
    )
    settings = IndexSettings(
        index=os_index,
        rejects_path=tmp_path / "rejects.jsonl",
        bulk=BulkOptions(chunk_size=4, threads=2, initial_backoff=0.2, max_backoff=1.0, max_retries=20),
    )
    started = time.monotonic()
    unblock.start()
    try:
        report = index_corpus(os_ops, open_corpus(SMALL), settings)
    finally:
        unblock.cancel()
    assert time.monotonic() - started >= 1.5
    assert report.retries > 0
    assert (report.created, report.rejected, report.count_after) == (10, 0, 10)


def test_an_unknown_analyzer_fails_with_a_clear_message(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str
) -> None:
    result = cli(str(SMALL), "--index", os_index, "--url", os_node.url, "--analyzer", "no_such_analyzer")
    assert result.exit_code == ExitCode.FAILED
    assert "analyzer [no_such_analyzer]" in result.output
    assert "choose another with --analyzer" in result.output


def test_secrets_never_reach_the_output(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str
) -> None:
    # The local node runs without security: basic auth is sent and ignored.
    ok = cli(
        str(SMALL), "--index", os_index, "--url", os_node.url, "--username", "u", "--password", "pw-7f3a9c"
    )
    assert ok.exit_code == ExitCode.OK, ok.output
    assert "pw-7f3a9c" not in ok.output
    unreachable = cli(
        str(SMALL), "--index", os_index, "--url", "http://u:pw-7f3a9c@127.0.0.1:9", "--max-retries", "0"
    )
    assert unreachable.exit_code == ExitCode.FAILED
    assert "error:" in unreachable.output
    assert "pw-7f3a9c" not in unreachable.output


def test_files_folder_and_python_api_on_opensearch(
    os_ops: EngineOps, os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "a.md").write_text("# Alpha notes\n\nretrieval with BM25\n")
    (notes / "sub" / "b.html").write_text("<h2>Beta</h2><p>reranking with Retro*</p>")
    report = index_corpus(
        os_ops, open_corpus(notes), IndexSettings(index=os_index, rejects_path=tmp_path / "r.jsonl")
    )
    assert (report.created, report.exit_code) == (2, ExitCode.OK)
    assert source(os_node.client, os_index, "sub/b.html")["title"] == "Beta"


# --- Elasticsearch ---------------------------------------------------------------------------------------


@pytest.fixture
def es_args(es_node: EngineNode, es_index: str) -> list[str]:
    """`retrosearch index` options for the Elasticsearch test node, `--analyzer standard` last."""
    return [
        "--index",
        es_index,
        "--engine",
        "elasticsearch",
        "--url",
        es_node.url,
        "--analyzer",
        "standard",
    ]


def test_elasticsearch_indexes_counts_and_reruns_through_the_same_cli(
    cli: Callable[..., Result], es_args: list[str], es_node: EngineNode, es_index: str
) -> None:
    first = cli(str(SMALL), *es_args)
    assert first.exit_code == ExitCode.OK, first.output
    assert "(0 before + 10 created) OK" in first.output
    again = cli(str(SMALL), *es_args)
    assert again.exit_code == ExitCode.OK, again.output
    assert "(10 before + 0 created) OK" in again.output
    assert es_node.client.count(index=es_index)["count"] == 10
    assert source(es_node.client, es_index, "doc-01")["metadata"] == {"topic": "biology"}
    properties = es_node.client.indices.get_mapping(index=es_index)[es_index]["mappings"]["properties"]
    assert properties["title"] == {"type": "text", "analyzer": "standard"}


def test_elasticsearch_bad_records_and_incompatible_mapping(
    cli: Callable[..., Result], es_args: list[str], es_node: EngineNode, es_index: str, tmp_path: Path
) -> None:
    result = cli(str(WITH_BAD_LINES), *es_args)
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert [r["line"] for r in rejects_in(tmp_path)] == [3, 5, 7]
    assert es_node.client.count(index=es_index)["count"] == 10
    refused = cli(str(SMALL), *es_args[:-1], "simple")
    assert refused.exit_code == ExitCode.FAILED
    assert "field 'text' has analyzer 'standard', this run uses 'simple'" in refused.output


def test_elasticsearch_duplicates_retries_and_engine_rejections(
    es_ops: EngineOps, es_node: EngineNode, es_index: str, tmp_path: Path
) -> None:
    body = index_body(analyzer="standard")
    body["mappings"]["properties"]["metadata"]["properties"] = {"year": {"type": "integer"}}
    es_node.client.indices.create(index=es_index, settings=body["settings"], mappings=body["mappings"])
    es_node.client.indices.put_settings(
        index=es_index, settings={"index.blocks.read_only_allow_delete": True}
    )
    unblock = threading.Timer(
        1.0,
        lambda: es_node.client.indices.put_settings(
            index=es_index, settings={"index.blocks.read_only_allow_delete": None}
        ),
    )
    rows = [{"id": f"d{n}", "text": f"first {n}", "year": 2000 + n} for n in range(12)]
    rows += [{"id": "d0", "text": "last d0"}, {"id": "bad", "text": "x", "year": "not a year"}]
    settings = IndexSettings(
        index=es_index,
        analyzer="standard",
        rejects_path=tmp_path / "rejects.jsonl",
        bulk=BulkOptions(chunk_size=5, threads=2, initial_backoff=0.2, max_backoff=1.0, max_retries=20),
    )
    unblock.start()
    try:
        report = index_corpus(es_ops, open_corpus(write_jsonl(tmp_path / "c.jsonl", rows)), settings)
    finally:
        unblock.cancel()
    assert report.retries > 0
    assert (report.created, report.updated, report.duplicates, report.rejected) == (12, 1, 1, 1)
    assert report.count_after == 12 and report.count_ok
    assert source(es_node.client, es_index, "d0")["text"] == "last d0"
    [rejected] = rejects_in(tmp_path)
    assert rejected["line"] == 14
    assert rejected["reason"].startswith(
        "engine refused the document (status 400): document_parsing_exception"
    )


def test_elasticsearch_refuses_to_write_into_an_incompatible_index_via_the_api(
    es_ops: EngineOps, es_node: EngineNode, es_index: str, tmp_path: Path
) -> None:
    es_node.client.indices.create(index=es_index, mappings={"properties": {"text": {"type": "keyword"}}})
    with pytest.raises(IncompatibleIndexError) as refused:
        index_corpus(es_ops, open_corpus(SMALL), IndexSettings(index=es_index, analyzer="standard"))
    assert "field 'text' is 'keyword', expected an analysed 'text' field" in refused.value.problems
    assert not (tmp_path / "rejects.jsonl").exists()


def test_copy_of_a_beir_folder_indexes_on_elasticsearch(
    cli: Callable[..., Result], es_args: list[str], es_node: EngineNode, es_index: str, tmp_path: Path
) -> None:
    if not CRANFIELD.is_dir():
        pytest.skip("shared/data is not beside the repository")
    subset = tmp_path / "cranfield-200"
    (subset / "qrels").mkdir(parents=True)
    lines = (CRANFIELD / "corpus.jsonl").read_text().splitlines(keepends=True)[:200]
    (subset / "corpus.jsonl").write_text("".join(lines))
    shutil.copy(CRANFIELD / "queries.jsonl", subset / "queries.jsonl")
    shutil.copy(CRANFIELD / "qrels" / "test.tsv", subset / "qrels" / "test.tsv")
    result = cli(str(subset), *es_args)
    assert result.exit_code == ExitCode.OK, result.output
    assert "beir corpus" in result.output
    assert es_node.client.count(index=es_index)["count"] == 200


def test_default_analyzer_is_english_where_the_engine_has_it_else_standard(
    cli: Callable[..., Result],
    os_node: EngineNode,
    os_index: str,
    es_node: EngineNode,
    es_index: str,
) -> None:
    on_opensearch = cli(str(SMALL), "--index", os_index, "--url", os_node.url)
    assert on_opensearch.exit_code == 0, on_opensearch.output
    assert "note:" not in on_opensearch.output
    mapping = os_node.client.indices.get_mapping(index=os_index)[os_index]["mappings"]["properties"]
    assert mapping["text"]["analyzer"] == "english"

    # The local Elasticsearch node has no analysis-common module, hence no `english`: a note, not a failure.
    on_es = cli(str(SMALL), "--index", es_index, "--engine", "elasticsearch", "--url", es_node.url)
    assert on_es.exit_code == 0, on_es.output
    assert "no 'english' analyzer" in on_es.output
    mapping = es_node.client.indices.get_mapping(index=es_index)[es_index]["mappings"]["properties"]
    assert mapping["text"]["analyzer"] == "standard"


# --- Records that used to stop a run, and progress in logs (issues 10 and 12) ------------------------------


def surrogate_corpus(path: Path, lines: int = 3000, bad_line: int = 1501) -> str:
    """``lines`` JSONL records, the one at ``bad_line`` holding a lone surrogate escape; returns that line."""
    bad = r'{"id": "bad", "text": "valid JSON, but \ud800 alone is no character"}'
    rows = [
        bad if n == bad_line else json.dumps({"id": f"d{n}", "text": f"doc {n}"}) for n in range(1, lines + 1)
    ]
    path.write_text("\n".join(rows) + "\n")
    return bad


@pytest.mark.hostile
def test_a_lone_surrogate_rejects_its_record_and_every_other_record_is_indexed(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    # Issue 10: this stopped the whole run (exit 3, no file or line) and lost the 500 records after it.
    corpus = tmp_path / "surrogate.jsonl"
    bad = surrogate_corpus(corpus)
    result = cli(str(corpus), "--index", os_index, "--url", os_node.url)
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert os_node.client.count(index=os_index)["count"] == 2999
    assert "surrogate.jsonl:1501: text holds a lone surrogate \\ud800 at character 16" in result.output
    assert "1 record(s) rejected" in result.output
    [rejected] = rejects_in(tmp_path)
    assert (rejected["file"], rejected["line"], rejected["raw"]) == (str(corpus), 1501, bad)


@pytest.mark.hostile
def test_a_lone_surrogate_is_rejected_on_elasticsearch_too_not_stored_as_replacement_characters(
    cli: Callable[..., Result], es_args: list[str], es_node: EngineNode, es_index: str, tmp_path: Path
) -> None:
    # The Elasticsearch client sends a lone surrogate as invalid UTF-8, which the engine stored as U+FFFD.
    corpus = tmp_path / "surrogate.jsonl"
    surrogate_corpus(corpus, lines=30, bad_line=12)
    result = cli(str(corpus), *es_args)
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert es_node.client.count(index=es_index)["count"] == 29
    assert not es_node.client.exists(index=es_index, id="bad")
    assert [r["line"] for r in rejects_in(tmp_path)] == [12]


def bright_export_with_bytes(folder: Path, rows: int, bytes_row: int) -> None:
    """A flat BRIGHT export whose `thumbnail` column is binary: bytes in one row, null elsewhere."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    thumbnails = pa.array(
        [b"\x89PNG\x00" if n == bytes_row else None for n in range(1, rows + 1)], pa.binary()
    )
    ids = [f"d{n}" for n in range(1, rows + 1)]
    table = pa.table(
        {"id": ids, "content": [f"passage {n}" for n in range(1, rows + 1)], "thumbnail": thumbnails}
    )
    pq.write_table(table, folder / "documents.parquet")


def test_a_value_json_cannot_hold_rejects_its_row_alone_and_the_chunk_is_sent(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    # Issue 10, the same class of defect in the parquet reader: bytes in a metadata column made the client's
    # serialiser fail, which ended the run (exit 3) and lost the chunk around that row and those after it.
    folder = tmp_path / "bright"
    bright_export_with_bytes(folder, rows=1200, bytes_row=700)
    result = cli(str(folder), "--index", os_index, "--url", os_node.url, "--chunk-size", "500")
    assert result.exit_code == ExitCode.INCOMPLETE, result.output
    assert os_node.client.count(index=os_index)["count"] == 1199
    [rejected] = rejects_in(tmp_path)
    assert rejected["line"] == 700
    assert rejected["reason"].startswith("cannot be written as JSON: Unable to serialize b'\\x89PNG\\x00'")
    assert json.loads(rejected["raw"])["id"] == "d700"


def test_a_value_json_cannot_hold_is_rejected_alone_on_elasticsearch(
    es_ops: EngineOps, es_index: str, tmp_path: Path
) -> None:
    folder = tmp_path / "bright"
    bright_export_with_bytes(folder, rows=40, bytes_row=3)
    settings = IndexSettings(
        index=es_index,
        analyzer="standard",
        rejects_path=tmp_path / "rejects.jsonl",
        bulk=BulkOptions(chunk_size=7),
    )
    report = index_corpus(es_ops, open_corpus(folder), settings)
    assert (report.created, report.rejected, report.count_after, report.retries) == (39, 1, 39, 0)
    assert [r["line"] for r in rejects_in(tmp_path)] == [3]


def test_without_a_terminal_progress_comes_as_plain_lines_with_an_estimate_for_gzip(
    cli: Callable[..., Result], os_node: EngineNode, os_index: str, tmp_path: Path
) -> None:
    # Issue 12: a run into a pipe or a log was silent until its end, and gzip showed "0/?".
    corpus = tmp_path / "small.jsonl.gz"
    corpus.write_bytes(gzip.compress(SMALL.read_bytes()))
    result = cli(str(corpus), "--index", os_index, "--url", os_node.url)
    assert result.exit_code == ExitCode.OK, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("indexing: ")]
    assert lines[0] == "indexing: 0 records"  # nothing read yet: no estimate
    assert lines[-1].startswith("indexing: 10/≈10 records (100%), ")
    assert "━" not in result.output  # no live bar drawn into a log
