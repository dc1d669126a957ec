"""What an evaluation needs from a test collection: its queries, its judgements and, for BRIGHT, the ids
each query must not be credited for. Read through the indexing readers, so eval and index agree on ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from index_tools.readers import BeirCorpus, BrightExport, CorpusFormat, FormatError, open_corpus
from retrostar_search.evaluation.metrics import has_relevant


class CollectionFormat(StrEnum):
    BEIR = "beir"
    BRIGHT = "bright"


@dataclass(frozen=True)
class EvalCollection:
    """Queries to run (file order, only those with at least one relevant judgement), their qrels, and
    per-query excluded ids (empty outside BRIGHT)."""

    name: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    excluded: dict[str, set[str]] = field(default_factory=dict)
    # Queries in the file that had no relevant judgement: nothing to measure, so not run.
    skipped_unjudged: int = 0

    def limited(self, count: int | None) -> EvalCollection:
        """The first ``count`` queries (all when None): a quick look before a full run."""
        if count is None or count >= len(self.queries):
            return self
        kept = dict(list(self.queries.items())[:count])
        return EvalCollection(
            name=self.name,
            queries=kept,
            qrels={query_id: self.qrels[query_id] for query_id in kept},
            excluded={query_id: ids for query_id, ids in self.excluded.items() if query_id in kept},
            skipped_unjudged=self.skipped_unjudged,
        )


def open_reader(
    path: Path, collection_format: CollectionFormat, task: str | None
) -> BeirCorpus | BrightExport:
    """The indexing reader for ``path``; it also streams the corpus when the index must be built."""
    corpus_format = CorpusFormat(collection_format.value)
    reader = open_corpus(path, corpus_format, bright_task=task)
    if not isinstance(reader, BeirCorpus | BrightExport):
        raise FormatError(f"{path}: evaluation needs a BEIR folder or a BRIGHT export")
    return reader


def load_collection(reader: BeirCorpus | BrightExport, split: str = "test") -> EvalCollection:
    if isinstance(reader, BrightExport):
        all_queries, qrels, excluded = reader.queries(), reader.qrels(), reader.excluded_ids()
        name = f"{reader.folder.name}/{reader.task}"
    else:
        all_queries, qrels, excluded = reader.queries(), reader.qrels(split), {}
        name = reader.folder.name
    queries = {
        query_id: text for query_id, text in all_queries.items() if has_relevant(qrels.get(query_id, {}))
    }
    return EvalCollection(
        name=name,
        queries=queries,
        qrels={query_id: qrels[query_id] for query_id in queries},
        excluded={query_id: excluded[query_id] for query_id in queries if excluded.get(query_id)},
        skipped_unjudged=len(all_queries) - len(queries),
    )
