"""The cache key of a (query, document) pair, and how stores write a pair's samples."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

from retrostar_search.prompts import PROMPT_VERSION
from retrostar_search.scoring import FinishReason, Sample
from retrostar_search.tasks import TaskDefinition


def cache_key(model: str, task: TaskDefinition, query: str, document: str, samples: int) -> str:
    return query_cache_keys(model, task, query)(document, samples)


def query_cache_keys(model: str, task: TaskDefinition, query: str) -> Callable[[str, int], str]:
    """`cache_key` for every document of one query: the query is hashed once, not once per document.

    The key is the hash of the JSON list [model, prompt version, task, query, document hash, K]; its text
    up to the query is the same for every document, so that much is hashed once and the hash copied."""
    opening = json.dumps([model, PROMPT_VERSION, task.fingerprint, query], ensure_ascii=False)[:-1] + ", "
    query_hash = hashlib.sha256(opening.encode("utf-8", "surrogatepass"))

    def key(document: str, samples: int) -> str:
        document_hash = hashlib.sha256(document.encode("utf-8", "surrogatepass")).hexdigest()
        hashed = query_hash.copy()
        hashed.update(json.dumps([document_hash, samples])[1:].encode())
        return hashed.hexdigest()

    return key


def encode_samples(samples: Sequence[Sample]) -> str:
    """JSON `[[text, score, finish_reason], ...]`: what sqlite rows and Redis values hold."""
    return json.dumps(
        [[sample.text, sample.score, sample.finish_reason.value] for sample in samples], ensure_ascii=False
    )


def decode_samples(encoded: str | bytes) -> tuple[Sample, ...]:
    # Rows written before finish reasons were kept hold [text, score]: those samples had finished.
    return tuple(
        Sample(
            text=item[0],
            score=item[1],
            finish_reason=FinishReason(item[2]) if len(item) > 2 else FinishReason.STOP,
        )
        for item in json.loads(encoded)
    )
