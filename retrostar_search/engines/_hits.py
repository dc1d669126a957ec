"""What a search answers with: `Hit`s parsed from the engine's response, and the text the connector ranks
for each (`document_text`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from retrostar_search.engines._explanations import Explanation
from retrostar_search.engines._queries import DEFAULT_FIELDS
from retrostar_search.reranker import Candidate

TITLE_FIELD = "title"
TEXT_FIELD = "text"
# Retro* scores are 0..100; the connector answers them divided by 100 (Cohere's 0..1 relevance_score),
# and that is also the `_score` OpenSearch gives a hit reranked through the pipeline.
RELEVANCE_SCALE = 100.0


# Hit's fields in the order its JSON view lists them.
_JSON_FIELDS = (
    "id",
    "rank",
    "first_stage_rank",
    "first_stage_score",
    "retrostar_score",
    "title",
    "text",
    "explanation",
)


@dataclass
class Hit:
    """One search result. Ranks are 1-based; the rerank fields stay None until a rerank fills them."""

    id: str
    first_stage_rank: int | None
    first_stage_score: float | None
    title: str
    text: str
    source: dict[str, Any] = field(repr=False)
    rank: int | None = None
    retrostar_score: float | None = None
    explanation: Explanation | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (for ``--json`` and the explorer page): every field but the raw source, the
        explanation as a structure."""
        view = {name: getattr(self, name) for name in _JSON_FIELDS}
        view["explanation"] = None if self.explanation is None else self.explanation.to_dict()
        return view

    @property
    def label(self) -> str:
        """How a person knows the document: its title, else its id."""
        return self.title or self.id

    def candidate(self, fields: Sequence[str] = DEFAULT_FIELDS) -> Candidate:
        """The hit as the connector ranks it: its `document_text` over `fields`, with its id."""
        return Candidate(text=document_text(self.source, fields), id=self.id)


def attach_first_stage(reranked: Sequence[Hit], first_stage: Sequence[Hit]) -> list[Hit]:
    """The reranked hits with the first-stage rank and score of the same documents filled in."""
    by_id = {hit.id: hit for hit in first_stage}
    attached = []
    for hit in reranked:
        original = by_id.get(hit.id)
        attached.append(
            replace(
                hit,
                first_stage_rank=original.first_stage_rank if original else None,
                first_stage_score=original.first_stage_score if original else None,
            )
        )
    return attached


def document_text(source: Mapping[str, Any], fields: Sequence[str] = DEFAULT_FIELDS) -> str:
    """What the connector ranks for one document: the fields' values concatenated with no separator, a
    missing field counting as "" and a list as its items joined by spaces. This mirrors OpenSearch's
    rerank processor (neural-search DocumentContextSourceFetcher) so both rerank paths score the same
    string."""
    parts = []
    for name in fields:
        value = source.get(name)
        if value is None:
            parts.append("")
        elif isinstance(value, list):
            parts.append(" ".join(str(item) for item in value))
        else:
            parts.append(str(value))
    return "".join(parts)


def raw_hits(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(response["hits"]["hits"])


def parse_hit(raw: Mapping[str, Any], first_stage_rank: int | None, first_stage_score: float | None) -> Hit:
    source = dict(raw.get("_source") or {})
    return Hit(
        id=str(raw["_id"]),
        first_stage_rank=first_stage_rank,
        first_stage_score=first_stage_score,
        title=str(source.get(TITLE_FIELD) or ""),
        text=str(source.get(TEXT_FIELD) or ""),
        source=source,
    )
