"""Which BM25 choices move a collection's figures: the evidence behind docs/evaluation.md's comparison
with the published SciFact numbers (BEIR 0.665, Anserini 0.6789 nDCG@10).

    python bench/bm25_variants.py --url http://127.0.0.1:9250                 # SciFact
    python bench/bm25_variants.py --collection ../shared/data/cisi --url ...

For each analyzer and BM25 (k1, b) pair, the collection is indexed through `retrosearch index`'s code path
(`index_tools.run.index_corpus`) into an index created beforehand with that similarity and an extra
`flat` field (title and text copied into one field, as Anserini's flat runs index them). Each query form
then runs every judged query, scored by `retrostar_search.evaluation.metrics`. The indices are deleted
afterwards.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from index_tools.engine import EngineOps
from index_tools.mapping import index_body
from index_tools.run import IndexSettings, index_corpus
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.engines.search import first_stage_body
from retrostar_search.evaluation.collection import CollectionFormat, load_collection, open_reader
from retrostar_search.evaluation.metrics import mean_scores, parse_metrics, score_run

DEFAULT_COLLECTION = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
SIMILARITIES = [
    ("english", 1.2, 0.75),  # what `retrosearch index` builds: the engines' default BM25
    ("english", 0.9, 0.4),  # Anserini's BEIR regressions
    ("standard", 1.2, 0.75),  # no stemming, no stop words
]
QueryBody = Callable[[str], dict[str, Any]]


def multi_match(kind: str, tie_breaker: float | None = None) -> QueryBody:
    def body(query: str) -> dict[str, Any]:
        clause: dict[str, Any] = {"query": query, "type": kind, "fields": ["title", "text"]}
        if tie_breaker is not None:
            clause["tie_breaker"] = tie_breaker
        return {"multi_match": clause}

    return body


QUERY_FORMS: list[tuple[str, QueryBody]] = [
    ("best_fields, tie_breaker 0.5 (BEIR; retrosearch)", lambda q: first_stage_body(q)["query"]),
    ("best_fields, no tie_breaker", multi_match("best_fields")),
    ("most_fields (sum of both fields)", multi_match("most_fields")),
    ("cross_fields", multi_match("cross_fields")),
    ("one flat field: title + text", lambda q: {"match": {"flat": q}}),
    ("text field only", lambda q: {"match": {"text": q}}),
]


def create_index(ops: EngineOps, name: str, analyzer: str, k1: float, b: float) -> None:
    """`retrosearch index`'s mapping plus the similarity under test and the flat copy field; index_corpus
    then finds a compatible index and writes into it."""
    body = index_body(analyzer)
    body["settings"]["index"]["similarity"] = {"default": {"type": "BM25", "k1": k1, "b": b}}
    properties = body["mappings"]["properties"]
    properties["flat"] = {"type": "text", "analyzer": analyzer}
    properties["title"]["copy_to"] = "flat"
    properties["text"]["copy_to"] = "flat"
    if ops.exists(name):
        ops.delete(name)
    ops.create(name, body)


def rankings(ops: EngineOps, index: str, queries: dict[str, str], body: QueryBody) -> dict[str, list[str]]:
    """Every query's top 1000 ids, eight queries at a time."""

    def ranking(item: tuple[str, str]) -> tuple[str, list[str]]:
        query_id, query = item
        response = ops.client.search(
            index=index,
            body={"size": 1000, "_source": False, "query": body(query)},
            search_type="dfs_query_then_fetch",
        )
        return query_id, [hit["_id"] for hit in response["hits"]["hits"]]

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(ranking, queries.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", type=Path, default=DEFAULT_COLLECTION, help="A BEIR folder.")
    parser.add_argument("--url", default="http://127.0.0.1:9250", help="OpenSearch URL.")
    parser.add_argument("--metrics", default="ndcg@10,recall@100")
    args = parser.parse_args()

    reader = open_reader(args.collection, CollectionFormat.BEIR, None)
    collection = load_collection(reader)
    metrics = parse_metrics(args.metrics)
    ops = EngineOps.connect(EngineConnection(engine=Engine.OPENSEARCH, url=args.url))
    print(f"{collection.name}: {len(collection.queries)} judged queries", file=sys.stderr)
    print("| analyzer | k1 | b | query | " + " | ".join(m.name for m in metrics) + " |")
    print("|---|---|---|---|" + "---|" * len(metrics))
    for analyzer, k1, b in SIMILARITIES:
        name = f"bm25-variants-{collection.name}-{analyzer}-{k1}-{b}".replace(".", "")
        create_index(ops, name, analyzer, k1, b)
        try:
            index_corpus(
                ops, reader, IndexSettings(index=name, analyzer=analyzer, rejects_path=Path("/dev/null"))
            )
            for label, body in QUERY_FORMS:
                run = rankings(ops, name, collection.queries, body)
                means = mean_scores(score_run(run, collection.qrels, metrics, collection.queries), metrics)
                figures = " | ".join(f"{means[m.name]:.4f}" for m in metrics)
                print(f"| {analyzer} | {k1} | {b} | {label} | {figures} |", flush=True)
        finally:
            ops.delete(name)


if __name__ == "__main__":
    main()
