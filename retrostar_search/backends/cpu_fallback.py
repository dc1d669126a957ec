"""A CPU fallback scorer. NOT Retro*: a lexical query-term coverage score for machines without a GPU.

It exists so the connector, the engine wiring and the demos run anywhere. It answers in Retro*'s output
shape (a short explanation ending in `<score>N</score>`), so everything downstream behaves the same, but its
scores carry none of Retro*'s reasoning. Use it for plumbing, never for quality claims.
"""

from __future__ import annotations

import re
from typing import Unpack

from retrostar_search.backends.base import Backend, GenerateOptions, Generation, SamplingParams
from retrostar_search.prompts import RenderedPrompt

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def _terms(text: str) -> set[str]:
    # A crude suffix fold ("colours"/"colour", "falling"/"fall") without a stemmer dependency.
    terms = set()
    for token in _TOKEN.findall(text.lower()):
        if token in _STOPWORDS:
            continue
        for suffix in ("ing", "es", "s"):
            if len(token) > len(suffix) + 2 and token.endswith(suffix):
                token = token[: -len(suffix)]
                break
        terms.add(token)
    return terms


def coverage_score(query: str, document: str) -> int:
    """Share of the query's content terms found in the document, on 0..100."""
    query_terms = _terms(query)
    if not query_terms:
        return 0
    return round(100 * len(query_terms & _terms(document)) / len(query_terms))


class CPUFallbackBackend(Backend):
    kind = "cpu"
    model = "cpu-fallback-term-coverage"

    async def generate(
        self, prompt: RenderedPrompt, n: int, params: SamplingParams, **options: Unpack[GenerateOptions]
    ) -> list[Generation]:
        score = coverage_score(prompt.query, prompt.document)
        text = (
            "CPU fallback scorer (not Retro*): the score is the share of the query's content terms that "
            f"appear in the document.\n<score>{score}</score>"
        )
        return [Generation(text)] * n

    async def ready(self) -> bool:
        return True
