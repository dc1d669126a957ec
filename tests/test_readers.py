"""Corpus readers, the indexing policy and the rejects file: every format, every bad-input outcome.

No engine is needed here; tests/test_indexing.py covers what the engines do with the documents.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from index_tools.policy import MAX_ID_BYTES, DocumentPolicy, content_id
from index_tools.progress import PlainProgress, RecordTotal
from index_tools.readers import (
    BrightExport,
    BrightLayoutError,
    CorpusFormat,
    DataFileError,
    FieldNames,
    FormatError,
    detect_format,
    html_to_text,
    open_corpus,
    read_beir_queries,
    read_jsonl,
    read_qrels,
)
from index_tools.records import Document, Rejected
from index_tools.rejects import RejectsFile

DATA = Path(__file__).parent / "data" / "indexing"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data is not beside the repository")


def write_lines(path: Path, *lines: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def split(results: list) -> tuple[list[Document], list[Rejected]]:
    return [r for r in results if isinstance(r, Document)], [r for r in results if isinstance(r, Rejected)]


# --- JSONL -----------------------------------------------------------------------------------------------


def test_jsonl_reads_ids_titles_texts_and_keeps_the_rest_as_metadata(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "c.jsonl",
        json.dumps({"id": "a", "title": "T", "text": "body", "year": 2020}),
        json.dumps({"_id": 7, "contents": "from contents"}),
        json.dumps({"_id": "c", "content": "from content", "metadata": {"url": "u"}, "lang": "en"}),
    )
    docs, rejected = split(list(read_jsonl(path)))
    assert rejected == []
    assert [(d.id, d.title, d.text, d.line) for d in docs] == [
        ("a", "T", "body", 1),
        ("7", "", "from contents", 2),
        ("c", "", "from content", 3),
    ]
    assert docs[0].metadata == {"year": 2020}
    assert docs[2].metadata == {"url": "u", "lang": "en"}  # BEIR's metadata object merged, not nested
    assert docs[0].source == str(path)


def test_jsonl_field_overrides_replace_the_usual_names(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "c.jsonl", json.dumps({"pid": "p1", "headline": "H", "body": "B", "text": "t"})
    )
    [doc] = read_jsonl(path, FieldNames(id="pid", title="headline", text="body"))
    assert (doc.id, doc.title, doc.text) == ("p1", "H", "B")
    assert doc.metadata == {"text": "t"}  # not the text field any more: kept as metadata


def test_jsonl_gz_is_read_like_plain_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt") as stream:
        stream.write(json.dumps({"id": "g", "text": "zipped"}) + "\n")
    assert detect_format(path) is CorpusFormat.JSONL
    [doc] = open_corpus(path).documents()
    assert (doc.id, doc.text, doc.line) == ("g", "zipped", 1)


def test_jsonl_bad_lines_are_rejected_with_their_line_numbers_and_the_rest_is_read() -> None:
    docs, rejected = split(list(read_jsonl(DATA / "with-bad-lines.jsonl")))
    # The empty document (no id either) reads fine: the indexing policy, not the reader, rejects it.
    ids = [f"doc-{n:02d}" for n in range(1, 11)]
    assert [d.id for d in docs] == [*ids[:4], None, *ids[4:]]
    assert [(r.line, r.reason.split(":")[0]) for r in rejected] == [
        (3, "invalid JSON"),
        (5, "invalid UTF-8 at byte 29 of the line"),
    ]
    # The whole line, its undecodable byte kept losslessly as a surrogateescape character.
    assert rejected[1].raw == '{"id": "latin1", "text": "caf\udce9 au lait"}'
    assert (
        rejected[1].raw.encode("utf-8", "surrogateescape") == b'{"id": "latin1", "text": "caf\xe9 au lait"}'
    )
    assert all(r.source.endswith("with-bad-lines.jsonl") for r in rejected)


def test_jsonl_rejects_values_that_cannot_be_documents(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "c.jsonl",
        '["a", "list"]',
        json.dumps({"id": True, "text": "x"}),
        json.dumps({"id": "ok", "text": ["not", "a", "string"]}),
        json.dumps({"id": {"nested": 1}, "text": "x"}),
        json.dumps({"id": "fine", "text": 42}),
    )
    docs, rejected = split(list(read_jsonl(path)))
    assert [(r.line, r.reason) for r in rejected] == [
        (1, "expected a JSON object, got list"),
        (2, "id is a boolean (True), not a string or integer"),
        (3, "text is a list, not a string"),
        (4, "id is a dict, not a string or integer"),
    ]
    assert [(d.id, d.text) for d in docs] == [("fine", "42")]


def test_jsonl_skips_blank_lines_and_a_byte_order_mark_but_keeps_line_numbers(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "c.jsonl",
        b"\xef\xbb\xbf" + b'{"id": "a", "text": "x"}',
        "",
        "   ",
        '{"id": "b", "text": "y"}',
    )
    assert [(d.id, d.line) for d in read_jsonl(path)] == [("a", 1), ("b", 4)]


def test_truncated_gzip_is_reported_after_the_lines_it_could_read(tmp_path: Path) -> None:
    whole = gzip.compress(
        b"".join(json.dumps({"id": str(n), "text": "x" * 50}).encode() + b"\n" for n in range(200))
    )
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    docs, rejected = split(list(read_jsonl(path)))
    assert docs, "the lines before the break are still read"
    assert len(rejected) == 1
    assert rejected[0].line == len(docs) + 1
    assert rejected[0].reason.startswith("cannot read the rest of the file")


def test_jsonl_reading_streams_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w") as stream:
        for n in range(20_000):
            stream.write(json.dumps({"id": str(n), "title": f"t{n}", "text": "word " * 200}) + "\n")
    assert path.stat().st_size > 19_000_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_jsonl(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < 1_000_000, f"peak {peak} bytes while reading a {path.stat().st_size}-byte file"


def test_a_folder_of_jsonl_files_is_read_in_name_order(tmp_path: Path) -> None:
    write_lines(tmp_path / "b.jsonl", json.dumps({"id": "2", "text": "x"}))
    write_lines(tmp_path / "a.jsonl", json.dumps({"id": "1", "text": "x"}))
    corpus = open_corpus(tmp_path, CorpusFormat.JSONL)
    assert [d.id for d in corpus.documents()] == ["1", "2"]
    assert corpus.size_hint() == 2


# --- BEIR ------------------------------------------------------------------------------------------------


@needs_shared
def test_beir_cranfield_corpus_queries_and_qrels() -> None:
    folder = SHARED / "cranfield"
    corpus = open_corpus(folder)
    assert corpus.format_name == "beir"
    docs, rejected = split(list(corpus.documents()))
    assert (len(docs), rejected) == (1400, [])
    assert docs[0].id == "1" and docs[0].title.startswith("experimental investigation")
    assert corpus.size_hint() == 1400
    queries = read_beir_queries(folder)
    assert len(queries) == 225 and queries["1"].startswith("what similarity laws")
    qrels = read_qrels(folder)
    assert sum(len(judged) for judged in qrels.values()) == 1612
    assert qrels["1"]["184"] == 3
    assert {grade for judged in qrels.values() for grade in judged.values()} <= {1, 2, 3, 4}


@needs_shared
def test_beir_scifact_reads_its_gzipped_corpus() -> None:
    corpus = open_corpus(SHARED / "scifact", CorpusFormat.BEIR)
    assert sum(1 for r in corpus.documents() if isinstance(r, Document)) == 5183
    assert corpus.size_hint() is None  # counting a gzip's lines would cost a full decompression


def test_qrels_reads_trec_layout_and_rejects_malformed_lines(tmp_path: Path) -> None:
    trec = write_lines(tmp_path / "qrels.txt", "q1 0 d1 1", "q1 0 d2 0", "q2 0 d1 2")
    assert read_qrels(trec) == {"q1": {"d1": 1, "d2": 0}, "q2": {"d1": 2}}
    bad = write_lines(tmp_path / "bad.tsv", "query-id\tcorpus-id\tscore", "q1\td1\t1", "q1\td2\tyes")
    with pytest.raises(DataFileError, match=r"bad.tsv:3: relevance 'yes' is not an integer"):
        read_qrels(bad)
    wide = write_lines(tmp_path / "wide.tsv", "q1 d1 1 extra columns")
    with pytest.raises(DataFileError, match=r"wide.tsv:1: expected 3 or 4 columns"):
        read_qrels(wide)


def test_beir_queries_with_a_bad_line_raise_with_the_line(tmp_path: Path) -> None:
    write_lines(tmp_path / "queries.jsonl", json.dumps({"_id": "1", "text": "q"}), "{oops")
    with pytest.raises(DataFileError, match=r"queries.jsonl:2: invalid JSON"):
        read_beir_queries(tmp_path)


# --- BRIGHT ----------------------------------------------------------------------------------------------


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def bright_hf_layout(root: Path) -> Path:
    """The dataset repository's layout, two tasks side by side."""
    for task in ("biology", "pony"):
        write_parquet(
            root / "documents" / f"{task}-00000-of-00001.parquet",
            [{"id": f"{task}/{n}.txt", "content": f"{task} passage {n}"} for n in range(3)],
        )
        write_parquet(
            root / "long_documents" / f"{task}-00000-of-00001.parquet",
            [{"id": f"{task}/long{n}.txt", "content": f"{task} long page {n}"} for n in range(2)],
        )
        write_parquet(
            root / "examples" / f"{task}-00000-of-00001.parquet",
            [
                {
                    "id": "0",
                    "query": f"{task} q0",
                    "gold_ids": [f"{task}/0.txt"],
                    "gold_ids_long": [f"{task}/long0.txt"],
                    "excluded_ids": ["N/A"],
                },
                {
                    "id": "1",
                    "query": f"{task} q1",
                    "gold_ids": [f"{task}/1.txt", f"{task}/2.txt"],
                    "gold_ids_long": [f"{task}/long1.txt"],
                    "excluded_ids": [f"{task}/0.txt"],
                },
            ],
        )
    return root


def test_bright_hf_layout_needs_a_task_when_it_holds_several(tmp_path: Path) -> None:
    root = bright_hf_layout(tmp_path / "bright")
    assert detect_format(root) is CorpusFormat.BRIGHT
    with pytest.raises(BrightLayoutError, match=r"several BRIGHT tasks.*biology, pony"):
        open_corpus(root)
    with pytest.raises(BrightLayoutError, match="no task 'chemistry'"):
        open_corpus(root, bright_task="chemistry")


def test_bright_documents_queries_qrels_and_excluded_ids(tmp_path: Path) -> None:
    export = open_corpus(bright_hf_layout(tmp_path / "bright"), CorpusFormat.BRIGHT, bright_task="pony")
    assert isinstance(export, BrightExport)
    docs = list(export.documents())
    assert [(d.id, d.text, d.line) for d in docs] == [
        (f"pony/{n}.txt", f"pony passage {n}", n + 1) for n in range(3)
    ]
    assert export.size_hint() == 3
    assert export.queries() == {"0": "pony q0", "1": "pony q1"}
    assert export.qrels() == {"0": {"pony/0.txt": 1}, "1": {"pony/1.txt": 1, "pony/2.txt": 1}}
    assert export.excluded_ids() == {"0": set(), "1": {"pony/0.txt"}}  # the "N/A" placeholder is not an id


def test_bright_long_documents_use_gold_ids_long(tmp_path: Path) -> None:
    export = BrightExport(bright_hf_layout(tmp_path / "bright"), task="biology", long_documents=True)
    assert [d.id for d in export.documents()] == ["biology/long0.txt", "biology/long1.txt"]
    assert export.qrels() == {"0": {"biology/long0.txt": 1}, "1": {"biology/long1.txt": 1}}


def test_bright_flat_jsonl_export_of_one_task(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "documents.jsonl",
        json.dumps({"id": "d1", "content": "first"}),
        b'{"id": "d2", "content": "\xff"}',
        json.dumps({"id": "d3", "content": "third"}),
    )
    write_lines(
        tmp_path / "examples.jsonl",
        json.dumps({"id": "q", "query": "?", "gold_ids": ["d3"], "excluded_ids": []}),
    )
    export = open_corpus(tmp_path)
    docs, rejected = split(list(export.documents()))
    assert [d.id for d in docs] == ["d1", "d3"]
    assert [(r.line, r.reason.startswith("invalid UTF-8")) for r in rejected] == [(2, True)]
    assert export.qrels() == {"q": {"d3": 1}}


# --- Folder of files -------------------------------------------------------------------------------------


def test_files_folder_ids_titles_and_html_text(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "intro.md").write_text("Some preface\n\n## Getting started\n\nInstall it.\n")
    (tmp_path / "plain.txt").write_text("Just text.\n")
    (tmp_path / "page.html").write_text(
        "<html><head><title>Page title</title><style>p {color: red}</style></head>"
        "<body><h1>Main &amp; only</h1><p>First<br>line</p><script>var x = 1;</script><p>Second</p></body></html>"
    )
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.md").write_text("# secret")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.txt").write_text("ref")
    corpus = open_corpus(tmp_path)
    assert corpus.format_name == "files"
    assert corpus.size_hint() == 3
    docs = {d.id: d for d in corpus.documents()}
    assert sorted(docs) == ["notes/intro.md", "page.html", "plain.txt"]
    assert docs["notes/intro.md"].title == "Getting started"
    assert docs["plain.txt"].title == "plain"  # no heading: the file name
    assert docs["page.html"].title == "Main & only"
    assert docs["page.html"].text == "Main & only\nFirst\nline\nSecond"
    assert docs["plain.txt"].line is None and docs["plain.txt"].metadata == {"path": "plain.txt"}
    assert corpus.warnings == ["skipped 1 file(s) that are not .txt, .md or .html"]


def test_html_without_heading_falls_back_to_its_title_element() -> None:
    assert html_to_text("<title> A  page </title><div>text<div>more</div></div>") == ("A page", "text\nmore")


def test_files_folder_rejects_a_file_that_is_not_utf8_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "bad.txt").write_bytes(b"line one\nline two\nna\xefve\n")
    docs, rejected = split(list(open_corpus(tmp_path, CorpusFormat.FILES).documents()))
    assert [d.id for d in docs] == ["good.txt"]
    assert [(Path(r.source).name, r.line) for r in rejected] == [("bad.txt", 3)]
    assert rejected[0].raw == "na\udcefve"  # the line holding the bad byte, kept losslessly


def test_files_folder_rejects_a_file_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# Good")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    docs, rejected = split(list(open_corpus(tmp_path, CorpusFormat.FILES).documents()))
    assert [d.id for d in docs] == ["good.md"]
    assert [(Path(r.source).name, r.line, r.reason) for r in rejected] == [
        ("dangling.txt", None, "cannot read the file: No such file or directory")
    ]


# --- CSV / TSV -------------------------------------------------------------------------------------------


def test_csv_with_quoted_newlines_reports_the_line_each_record_starts_on(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        'id,title,text,source\n1,One,"first, with comma",web\n2,Two,"spans\ntwo lines",web\n3,Three,third,book\n'
    )
    docs = list(open_corpus(path).documents())
    assert [(d.id, d.text, d.line) for d in docs] == [
        ("1", "first, with comma", 2),
        ("2", "spans\ntwo lines", 3),
        ("3", "third", 5),
    ]
    assert docs[0].metadata == {"source": "web"}


def test_csv_bad_rows_are_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b'id,text\n1,ok\n2,too,many\n3,caf\xe9\n4,"bad"quote\n5,also ok\n')
    docs, rejected = split(list(open_corpus(path).documents()))
    assert [d.id for d in docs] == ["1", "5"]
    assert [(r.line, r.reason) for r in rejected] == [
        (3, "row has 3 fields, the header has 2"),
        (4, "invalid UTF-8 in the row"),
        (5, "malformed csv row: ',' expected after '\"'"),
    ]
    assert [r.raw for r in rejected] == ["2,too,many", "3,caf\udce9", '4,"bad"quote']


def test_tsv_takes_quotes_literally_and_honours_field_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.tsv"
    path.write_text('pid\tpassage\n7\t"Quoted" at the start\n8\tsecond\n')
    corpus = open_corpus(path, fields=FieldNames(id="pid", text="passage"))
    assert corpus.format_name == "tsv"
    assert [(d.id, d.text) for d in corpus.documents()] == [("7", '"Quoted" at the start'), ("8", "second")]
    assert corpus.size_hint() == 2


def test_csv_accepts_fields_past_the_csv_module_default_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("id,text\n1," + "x" * 300_000 + "\n")
    [doc] = open_corpus(path).documents()
    assert len(doc.text) == 300_000


# --- Format detection ------------------------------------------------------------------------------------


def test_format_detection_and_mismatches(tmp_path: Path) -> None:
    (tmp_path / "corpus.parquet").write_bytes(b"")
    with pytest.raises(FormatError, match="cannot tell the format"):
        open_corpus(tmp_path / "corpus.parquet")
    with pytest.raises(FormatError, match="does not exist"):
        open_corpus(tmp_path / "missing.jsonl")
    write_lines(tmp_path / "c.jsonl", "{}")
    with pytest.raises(FormatError, match="needs a folder"):
        open_corpus(tmp_path / "c.jsonl", CorpusFormat.BEIR)
    with pytest.raises(FormatError, match="not a BEIR folder"):
        open_corpus(tmp_path, CorpusFormat.BEIR)
    beir = tmp_path / "beir"
    beir.mkdir()
    write_lines(beir / "corpus.jsonl", json.dumps({"_id": "1", "text": "x"}))
    assert detect_format(beir) is CorpusFormat.BEIR
    assert detect_format(tmp_path / "c.jsonl") is CorpusFormat.JSONL


# --- Policy: empty, huge, missing and long ids -----------------------------------------------------------


def doc(id: str | None = "d", title: str = "", text: str = "") -> Document:
    return Document(id, title, text, "src.jsonl", 4)


def test_an_empty_document_with_an_id_is_kept_and_counted_one_without_is_rejected() -> None:
    # Issue 12: Cranfield's two empty documents are part of the collection; only "nothing at all" is refused.
    policy = DocumentPolicy()
    kept = policy(doc(title="  ", text="\n\t"))
    assert isinstance(kept, Document) and kept.id == "d"
    assert (policy.empty, policy.empty_locations) == (1, ["src.jsonl:4"])
    rejected = policy(doc(None, title=" ", text=""))
    assert isinstance(rejected, Rejected)
    assert (rejected.source, rejected.line, rejected.reason) == (
        "src.jsonl",
        4,
        "empty document: no id, no title and no text",
    )
    title_only = policy(doc(title="Only a title"))
    assert isinstance(title_only, Document) and title_only.title == "Only a title"
    assert policy.empty == 1


def test_missing_ids_are_derived_from_content_and_stable() -> None:
    policy = DocumentPolicy()
    first, again, other = (
        policy(doc(None, "T", "x")),
        policy(doc(None, "T", "x")),
        policy(doc(None, "T", "y")),
    )
    assert first.id == again.id == content_id("T", "x")
    assert other.id != first.id
    assert policy.derived_ids == 3


def test_ids_longer_than_the_engine_limit_are_rejected() -> None:
    result = DocumentPolicy()(doc("é" * (MAX_ID_BYTES // 2 + 1), text="x"))
    assert isinstance(result, Rejected) and result.reason == f"id is longer than {MAX_ID_BYTES} bytes"


def test_huge_documents_are_rejected_by_default() -> None:
    result = DocumentPolicy(max_doc_bytes=100)(doc(title="t", text="x" * 100))
    assert isinstance(result, Rejected)
    assert result.reason == "document is 101 bytes, over --max-doc-bytes 100"


def test_huge_documents_are_cut_at_a_character_boundary_with_truncate_huge() -> None:
    policy = DocumentPolicy(max_doc_bytes=10, truncate_huge=True)
    result = policy(doc(title="ab", text="€€€€"))  # 2 + 12 bytes; € is 3 bytes in UTF-8
    assert isinstance(result, Document)
    assert result.text == "€€"  # 8 bytes of room: two whole characters, no broken one
    assert policy.truncated == 1
    assert isinstance(policy(doc(title="x" * 11, text="y")), Rejected)  # the title alone is too big


def test_rejections_pass_through_the_policy_unchanged() -> None:
    rejected = Rejected("f", 1, "invalid JSON")
    assert DocumentPolicy()(rejected) is rejected


# --- Rejects file ----------------------------------------------------------------------------------------


def test_rejects_file_is_written_only_when_something_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "out" / "rejects.jsonl"
    with RejectsFile(path):
        pass
    assert not path.exists()
    with RejectsFile(path) as rejects:
        rejects.write(Rejected("a.jsonl", 3, "invalid JSON: Expecting value at column 1", "{oops"))
        rejects.write(Rejected("b.txt", None, "invalid UTF-8", "na\\xefve"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"file": "a.jsonl", "line": 3, "reason": "invalid JSON: Expecting value at column 1", "raw": "{oops"},
        {"file": "b.txt", "line": None, "reason": "invalid UTF-8", "raw": "na\\xefve"},
    ]
    assert rejects.count == 2


# --- Text no engine can store: lone surrogates, and other records that used to stop a run (issue 10) -----


def test_lone_surrogates_in_any_field_reject_their_record_only_with_line_and_reason(tmp_path: Path) -> None:
    lines = [
        r'{"id": "ok-1", "text": "fine"}',
        r'{"id": "bad-id-\udc00", "text": "x"}',
        r'{"id": "t", "title": "T \ud800", "text": "x"}',
        r'{"id": "x", "text": "lone \ud800 high"}',
        r'{"text": "no id and \udfff"}',
        r'{"id": "k", "text": "x", "tags": {"k\ud83d": 1}}',
        r'{"id": "n", "text": "x", "extra": {"list": ["fine", "bad \udc80"]}}',
        r'{"id": "pair", "text": "an emoji \ud83d\ude00 escaped as a pair"}',
        r'{"id": "ok-2", "text": "fine"}',
    ]
    policy = DocumentPolicy()
    docs, rejected = split(
        [policy(record) for record in read_jsonl(write_lines(tmp_path / "c.jsonl", *lines))]
    )
    assert [d.id for d in docs] == ["ok-1", "pair", "ok-2"]
    assert docs[1].text == "an emoji \U0001f600 escaped as a pair"  # a proper pair is one character
    tail = "which cannot be encoded as UTF-8"
    assert [(r.line, r.reason) for r in rejected] == [
        (2, f"id holds a lone surrogate \\udc00 at character 7, {tail}"),
        (3, f"title holds a lone surrogate \\ud800 at character 2, {tail}"),
        (4, f"text holds a lone surrogate \\ud800 at character 5, {tail}"),
        (5, f"text holds a lone surrogate \\udfff at character 10, {tail}"),
        (6, f"a key of metadata.tags holds a lone surrogate \\ud83d at character 1, {tail}"),
        (7, f"metadata.extra.list[1] holds a lone surrogate \\udc80 at character 4, {tail}"),
    ]
    assert [r.raw for r in rejected] == lines[1:7]  # each line exactly as in the file


def test_json_nested_beyond_the_parser_limit_rejects_that_line_only(tmp_path: Path) -> None:
    deep = '{"id": "deep", "text": "x", "m": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path = write_lines(tmp_path / "c.jsonl", '{"id": "a", "text": "x"}', deep, '{"id": "b", "text": "y"}')
    docs, rejected = split(list(read_jsonl(path)))
    assert [d.id for d in docs] == ["a", "b"]
    assert [(r.line, r.reason, r.raw == deep) for r in rejected] == [
        (2, "JSON nested too deeply to read", True)
    ]


def test_queries_with_a_lone_surrogate_raise_with_file_and_line(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "queries.jsonl", json.dumps({"_id": "1", "text": "q"}), r'{"_id": "2", "text": "\ud800"}'
    )
    with pytest.raises(DataFileError, match=r"queries.jsonl:2: the query holds a lone surrogate \\ud800"):
        read_beir_queries(tmp_path)
    bright = tmp_path / "bright"
    write_lines(bright / "documents.jsonl", json.dumps({"id": "d", "content": "x"}))
    write_lines(
        bright / "examples.jsonl", r'{"id": "q", "query": "\udc00", "gold_ids": ["d"], "excluded_ids": []}'
    )
    with pytest.raises(
        BrightLayoutError, match=r"examples.jsonl:1: the query holds a lone surrogate \\udc00"
    ):
        BrightExport(bright).queries()


def write_parquet_with_invalid_utf8(path: Path) -> None:
    """Three rows whose middle `content` is the bytes ff fe: parquet writers need not check UTF-8."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = b"first" + b"\xff\xfe" + b"third"
    offsets = pa.array([0, 5, 7, 12], pa.int32())
    content = pa.StringArray.from_buffers(3, offsets.buffers()[1], pa.py_buffer(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ["d1", "d2", "d3"], "content": content}), path)


def test_bright_parquet_row_that_is_not_utf8_is_rejected_and_the_others_read(tmp_path: Path) -> None:
    write_parquet_with_invalid_utf8(tmp_path / "documents" / "pony-00000-of-00001.parquet")
    docs, rejected = split(list(open_corpus(tmp_path).documents()))
    assert [(d.id, d.text) for d in docs] == [("d1", "first"), ("d3", "third")]
    [bad] = rejected
    assert (bad.line, bad.reason) == (2, "invalid UTF-8 in column content")
    assert json.loads(bad.raw)["content"].encode("utf-8", "surrogateescape") == b"\xff\xfe"


def test_files_folder_rejects_a_file_name_that_is_not_utf8_and_reads_the_rest(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("fine")
    Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.txt")).write_text("named in Latin-1")
    docs, rejected = split(list(open_corpus(tmp_path, CorpusFormat.FILES).documents()))
    assert [d.id for d in docs] == ["good.txt"]
    [bad] = rejected
    assert bad.reason == "the file name is not valid UTF-8 (it would be the document id): rename it"
    assert bad.location.endswith("caf\\udce9.txt")  # printable, whatever the terminal


# --- Raw records: the rejects file quotes the record exactly (issue 12) ------------------------------------


def test_a_rejected_document_quotes_its_whole_line_not_a_summary(tmp_path: Path) -> None:
    long_line = json.dumps({"id": "big", "title": "T", "text": "word " * 100, "year": 2020})
    path = write_lines(tmp_path / "c.jsonl", long_line, '{"title": "", "text": "  "}')
    policy = DocumentPolicy(max_doc_bytes=100)
    rejected = [policy(record) for record in read_jsonl(path)]
    assert [(r.line, r.raw) for r in rejected] == [(1, long_line), (2, '{"title": "", "text": "  "}')]


def test_csv_rejects_quote_the_record_as_written_across_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('id,text\r\n1,"spans\r\ntwo lines",extra\r\n2,ok\r\n')
    docs, rejected = split(list(open_corpus(path).documents()))
    assert [d.id for d in docs] == ["2"]
    assert [(r.line, r.raw) for r in rejected] == [(2, '1,"spans\r\ntwo lines",extra')]


def test_rejects_file_gives_back_the_exact_bytes_of_a_line_that_is_not_utf8(tmp_path: Path) -> None:
    line = b'{"id": "latin1", "text": "caf\xe9 \\\\xe9 au lait"}'  # a real byte e9, then the text \\xe9
    path = write_lines(tmp_path / "c.jsonl", line)
    rejects_path = tmp_path / "rejects.jsonl"
    with RejectsFile(rejects_path) as rejects:
        for record in read_jsonl(path):
            assert isinstance(record, Rejected)
            rejects.write(record)
    stored = rejects_path.read_bytes()
    stored.decode("utf-8")  # the rejects file itself is valid UTF-8
    [entry] = [json.loads(text) for text in stored.decode().splitlines()]
    assert entry["raw"].encode("utf-8", "surrogateescape") == line


# --- A format given by hand that the path is not (issue 12) ----------------------------------------------


def beir_folder(root: Path) -> Path:
    write_lines(root / "corpus.jsonl", json.dumps({"_id": "1", "title": "T", "text": "x"}))
    write_lines(root / "queries.jsonl", json.dumps({"_id": "1", "text": "q"}))
    write_lines(root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore", "1\t1\t1")
    return root


@pytest.mark.parametrize(
    "wrong", [CorpusFormat.JSONL, CorpusFormat.FILES, CorpusFormat.BRIGHT, CorpusFormat.CSV]
)
def test_a_beir_folder_given_another_format_is_refused_naming_the_right_flag(
    tmp_path: Path, wrong: CorpusFormat
) -> None:
    beir = beir_folder(tmp_path / "beir")
    pattern = (
        rf"is a BEIR folder \(corpus.jsonl, queries.jsonl, qrels/\): --format {wrong} .* Use --format beir"
    )
    with pytest.raises(FormatError, match=pattern):
        open_corpus(beir, wrong)
    assert open_corpus(beir).format_name == "beir"  # detection, the default, still reads it right


@pytest.mark.parametrize("wrong", [CorpusFormat.JSONL, CorpusFormat.BEIR, CorpusFormat.FILES])
def test_a_bright_export_given_another_format_is_refused(tmp_path: Path, wrong: CorpusFormat) -> None:
    bright = bright_hf_layout(tmp_path / "bright")
    pattern = rf"is a BRIGHT folder \(documents/, examples/, long_documents/\): --format {wrong} .* Use --format bright"
    with pytest.raises(FormatError, match=pattern):
        open_corpus(bright, wrong, bright_task="pony")


@needs_shared
def test_cranfield_given_format_jsonl_is_refused_instead_of_reading_its_queries_as_documents() -> None:
    with pytest.raises(FormatError, match=r"cranfield is a BEIR folder .*would index every .jsonl file"):
        open_corpus(SHARED / "cranfield", CorpusFormat.JSONL)


def test_a_file_given_a_folder_format_or_another_files_format_is_refused_with_the_right_one(
    tmp_path: Path,
) -> None:
    beir = beir_folder(tmp_path / "beir")
    with pytest.raises(
        FormatError, match=r"is a file; it is the corpus of the BEIR folder .*beir: pass that folder"
    ):
        open_corpus(beir / "corpus.jsonl", CorpusFormat.BEIR)
    loose = write_lines(tmp_path / "c.jsonl", json.dumps({"id": "1", "text": "x"}))
    with pytest.raises(
        FormatError, match=r"needs a folder; .*c.jsonl is a file; it is a jsonl file: use --format jsonl"
    ):
        open_corpus(loose, CorpusFormat.BRIGHT)
    with pytest.raises(
        FormatError, match=r"c.jsonl is a jsonl file by its name, not tsv: use --format jsonl"
    ):
        open_corpus(loose, CorpusFormat.TSV)
    comma = tmp_path / "c.csv"
    comma.write_text("id,text\n1,x\n")
    with pytest.raises(FormatError, match=r"c.csv is a csv file by its name, not jsonl"):
        open_corpus(comma, CorpusFormat.JSONL)
    with pytest.raises(FormatError, match="separated by commas, not read as tsv: use --format csv"):
        open_corpus(comma, CorpusFormat.TSV)
    tabs = tmp_path / "passages.txt"  # a name that says nothing: the header decides
    tabs.write_text("id\ttext\n1\tx\n")
    with pytest.raises(FormatError, match="separated by tabs, not read as csv: use --format tsv"):
        open_corpus(tabs, CorpusFormat.CSV)
    assert [d.id for d in open_corpus(tabs, CorpusFormat.TSV).documents()] == ["1"]


def test_a_folder_of_jsonl_files_is_detected_as_jsonl_and_never_read_as_text_files(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    write_lines(shards / "part-1.jsonl", json.dumps({"id": "1", "text": "x"}))
    assert detect_format(shards) is CorpusFormat.JSONL
    with pytest.raises(FormatError, match=r"holds no .txt, .md or .html file; it looks like a jsonl corpus"):
        open_corpus(shards, CorpusFormat.FILES)
    (shards / "notes.md").write_text("# Notes")
    with pytest.raises(FormatError, match=r"holds both .jsonl files and text files"):
        open_corpus(shards)
    assert [d.id for d in open_corpus(shards, CorpusFormat.FILES).documents()] == ["notes.md"]


# --- Progress figures (issue 12) -------------------------------------------------------------------------


def test_a_gzip_corpus_estimates_its_total_from_the_compressed_bytes_read(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    words = [f"w{n}" for n in range(500)]
    with gzip.open(path, "wt") as stream:
        for n in range(20_000):
            stream.write(
                json.dumps({"id": str(n), "text": " ".join(words[(n * k) % 500] for k in range(12))}) + "\n"
            )
    corpus = open_corpus(path)
    assert corpus.size_hint() is None and corpus.estimated_total() is None
    documents = corpus.documents()
    for _ in range(10_000):
        next(documents)
    assert 17_000 <= corpus.estimated_total() <= 23_000
    assert RecordTotal(corpus).label(10_000).startswith("10,000/≈")
    assert sum(1 for _ in documents) == 10_000
    assert corpus.estimated_total() == 20_000  # every byte read: the estimate is the count


def test_plain_progress_writes_a_line_at_the_start_every_interval_and_says_when_the_total_is_estimated(
    tmp_path: Path,
) -> None:
    plain = write_lines(tmp_path / "c.jsonl", *(json.dumps({"id": str(n), "text": "x"}) for n in range(1000)))
    now = [0.0]
    stream = io.StringIO()
    progress = PlainProgress(stream, RecordTotal(open_corpus(plain)), interval=10, clock=lambda: now[0])
    progress.write()
    for now[0], done in ((1, 100), (5, 100), (11, 100), (12, 100), (25, 100)):
        progress.advance(done)
    assert stream.getvalue().splitlines() == [
        "indexing: 0/1,000 records (0%)",
        "indexing: 300/1,000 records (30%), 27 docs/s, 0:00:11 elapsed, about 0:00:26 left",
        "indexing: 500/1,000 records (50%), 20 docs/s, 0:00:25 elapsed, about 0:00:25 left",
    ]
