"""A tiny corpus whose BM25 order and Retro* order disagree, for the search and rerank tests.

Each document carries a `[[retrostar:N]]` marker, so the scripted SGLang server scores it N whatever the
query; the documents that match the query's words best get the lowest scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from typer.testing import CliRunner

from retrostar_search.cli import app

QUERY = "why do leaves change colour in autumn"

# id -> (title, text, scripted Retro* score)
DOCUMENTS: dict[str, tuple[str, str, int]] = {
    "leaves-1": (
        "Why autumn leaves change colour",
        "Leaves change colour in autumn because chlorophyll breaks down in autumn leaves. [[retrostar:12]]",
        12,
    ),
    "leaves-2": ("Leaf colour", "Leaves change colour when chlorophyll fades. [[retrostar:35]]", 35),
    "pigments-3": (
        "Carotenoids",
        "Yellow and orange pigments already in the leaf show once the green goes in autumn. [[retrostar:91]]",
        91,
    ),
    "pigments-4": (
        "Anthocyanins",
        "The red of autumn leaves comes from sugars trapped in the leaf. [[retrostar:77]]",
        77,
    ),
    "trees-5": ("Deciduous trees", "Trees shed leaves to save water over winter. [[retrostar:50]]", 50),
    "daylight-6": ("Photoperiod", "Shorter days trigger the change in the tree. [[retrostar:64]]", 64),
    "volcano-7": ("Volcanoes", "Lava and ash erupt in bursts. [[retrostar:99]]", 99),
}

# The standard analyzer: the local Elasticsearch node (integ-test distribution) has no English analysis.
MAPPINGS: dict[str, Any] = {"properties": {"title": {"type": "text"}, "text": {"type": "text"}}}


def scripted_score(doc_id: str) -> int:
    return DOCUMENTS[doc_id][2]


def index_documents(
    client: Any, index: str, documents: dict[str, tuple[str, str, int]] | None = None
) -> None:
    """(Re)create `index` with the documents, refreshed so they are searchable at once."""
    from opensearchpy import OpenSearch

    documents = DOCUMENTS if documents is None else documents
    client.indices.delete(index=index, ignore_unavailable=True)
    if isinstance(client, OpenSearch):
        from opensearchpy import helpers

        client.indices.create(index=index, body={"settings": {"number_of_replicas": 0}, "mappings": MAPPINGS})
    else:
        from elasticsearch import helpers  # type: ignore[no-redef]

        client.indices.create(index=index, settings={"number_of_replicas": 0}, mappings=MAPPINGS)
    actions = [
        {"_index": index, "_id": doc_id, "_source": {"title": title, "text": text}}
        for doc_id, (title, text, _score) in documents.items()
    ]
    helpers.bulk(client, actions, refresh="wait_for")


def indexed(client: Any, index: str) -> Iterator[str]:
    """For a fixture: `index` holding the documents for the fixture's scope, deleted afterwards."""
    index_documents(client, index)
    yield index
    client.indices.delete(index=index, ignore_unavailable=True)


def run_cli(*args: str, columns: int = 200) -> tuple[int, str]:
    """`retrosearch ARGS` in this process, on a terminal `columns` wide: the exit code and the output."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
    return result.exit_code, result.output


def expected_order(doc_ids: list[str], first_stage_order: list[str]) -> list[str]:
    """Best scripted score first; ties keep the first-stage order (as the rerank processor does)."""
    position = {doc_id: i for i, doc_id in enumerate(first_stage_order)}
    return sorted(doc_ids, key=lambda doc_id: (-scripted_score(doc_id), position[doc_id]))
