"""The index made for BM25 first-stage retrieval followed by reranking, and the check that an existing
index is one we can safely write into.

Title and text are analysed with the same analyzer (English by default: stemming and stop words, as in
the BEIR paper's BM25 runs) so one ``multi_match`` scores both. ``id`` repeats ``_id`` as a keyword so
evaluation and rerank logs can filter and sort on it. ``metadata`` keeps every other source field in
``_source`` (returned with each hit) without indexing it: arbitrary metadata that is mapped dynamically
makes documents fail on type clashes and can blow the field limit, which would drop documents for fields
nobody searches. A field that needs filtering can be mapped explicitly under ``metadata`` later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from index_tools.engine import EngineOps
from retrostar_search.errors import RetrostarError

DEFAULT_ANALYZER = "english"
# An analysed field without an explicit analyzer uses this one.
ENGINE_DEFAULT_ANALYZER = "standard"


def choose_analyzer(ops: EngineOps, requested: str | None) -> tuple[str, str | None]:
    """The analyzer to build a new index with, and a note when the default had to give way.

    An explicit choice is kept (an unknown analyzer then fails with the engine's own message). Without one,
    English analysis is used where the engine has it; Elasticsearch's integration-test distribution (our
    local node) ships without it, and falling back to `standard` there beats refusing to index.
    """
    if requested is not None:
        return requested, None
    if ops.has_analyzer(DEFAULT_ANALYZER):
        return DEFAULT_ANALYZER, None
    return ENGINE_DEFAULT_ANALYZER, (
        f"this engine has no {DEFAULT_ANALYZER!r} analyzer (no analysis-common module): using "
        f"{ENGINE_DEFAULT_ANALYZER!r}; pass --analyzer to choose"
    )


def index_body(analyzer: str = DEFAULT_ANALYZER, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """Settings and mappings for a new index; the same body works on OpenSearch and Elasticsearch."""
    return {
        "settings": {"index": {"number_of_shards": shards, "number_of_replicas": replicas}},
        "mappings": {
            # Only the four fields below are ever written; anything else is a bug to surface, not to map.
            "dynamic": "strict",
            "properties": {
                "id": {"type": "keyword"},
                "title": {"type": "text", "analyzer": analyzer},
                "text": {"type": "text", "analyzer": analyzer},
                "metadata": {"type": "object", "dynamic": False},
            },
        },
    }


def mapping_problems(mapping: dict[str, Any], analyzer: str) -> list[str]:
    """Why documents written now would not be indexed like the documents already there (empty: fine)."""
    properties = mapping.get("properties", {})
    problems: list[str] = []
    id_field = properties.get("id")
    if id_field is None:
        problems.append("field 'id' is not mapped")
    elif id_field.get("type") != "keyword":
        problems.append(f"field 'id' is {id_field.get('type')!r}, expected 'keyword'")
    for name in ("title", "text"):
        spec = properties.get(name)
        if spec is None:
            problems.append(f"field {name!r} is not mapped")
            continue
        if spec.get("type") != "text":
            problems.append(f"field {name!r} is {spec.get('type')!r}, expected an analysed 'text' field")
            continue
        used = spec.get("analyzer", ENGINE_DEFAULT_ANALYZER)
        if used != analyzer:
            problems.append(f"field {name!r} has analyzer {used!r}, this run uses {analyzer!r}")
        # Unset, the search analyzer follows the index analyzer; set, it must agree too.
        if spec.get("search_analyzer", analyzer) != analyzer:
            problems.append(
                f"field {name!r} has search_analyzer {spec['search_analyzer']!r}, this run uses {analyzer!r}"
            )
    metadata = properties.get("metadata")
    if metadata is None:
        if mapping.get("dynamic") in ("strict", False, "false", "strict_allow_templates"):
            problems.append("field 'metadata' is not mapped and the index does not map new fields")
    elif metadata.get("type", "object") != "object":
        problems.append(f"field 'metadata' is {metadata.get('type')!r}, expected an object")
    return problems


class IncompatibleIndexError(RetrostarError):
    def __init__(self, index: str, problems: list[str]) -> None:
        self.index = index
        self.problems = problems
        super().__init__(
            f"index {index!r} exists with an incompatible mapping: "
            + "; ".join(problems)
            + ". Use --recreate to replace it (deletes its documents) or --force to write anyway."
        )


@dataclass
class IndexState:
    """How the target index stood before loading; the count check starts from ``count_before``."""

    created: bool
    count_before: int
    problems_ignored: list[str] = field(default_factory=list)


def prepare_index(
    ops: EngineOps, index: str, *, analyzer: str, shards: int, replicas: int, recreate: bool, force: bool
) -> IndexState:
    """Create the index (replacing it with ``recreate``), or check that the existing one fits (the options
    and their defaults are `index_tools.run.IndexSettings`).

    Raises IncompatibleIndexError when the existing mapping does not fit and ``force`` is not set.
    """
    exists = ops.exists(index)
    if exists and recreate:
        ops.delete(index)
        exists = False
    if not exists:
        ops.create(index, index_body(analyzer, shards, replicas))
        return IndexState(created=True, count_before=0)
    problems = mapping_problems(ops.mapping(index), analyzer)
    if problems and not force:
        raise IncompatibleIndexError(index, problems)
    # Refresh first: _count only sees documents that a refresh has made visible.
    ops.refresh(index)
    return IndexState(created=False, count_before=ops.count(index), problems_ignored=problems)
