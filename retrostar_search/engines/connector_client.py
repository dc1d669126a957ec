"""The rerank connector's own API as a client calls it: Cohere's `POST /v1/rerank` with Retro*'s extensions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import httpx

from retrostar_search.engines._hits import RELEVANCE_SCALE
from retrostar_search.engines.connector_endpoint import RERANK_PATH
from retrostar_search.errors import SearchError
from retrostar_search.reranker import Candidate


@dataclass(frozen=True)
class RerankScore:
    """The connector's verdict on one candidate of a request (`index`: its position in the request)."""

    index: int
    candidate: Candidate
    relevance_score: float
    scored: bool
    explanation: str | None = None

    @property
    def retrostar_score(self) -> float | None:
        return self.relevance_score * RELEVANCE_SCALE if self.scored else None


@dataclass(frozen=True)
class RerankReply(Sequence[RerankScore]):
    """One rerank's answer: the scores, best first (the reply is their sequence), whether the connector
    degraded it (a backend failure or its deadline left a pair unscored), and what it says it did
    (`meta.retrostar`): pairs sent to the model, pairs served from its cache and pairs the backend failed
    (None where it does not say)."""

    scores: list[RerankScore]
    degraded: bool = False
    pairs_scored: int | None = None
    cache_hits: int | None = None
    backend_errors: int | None = None

    @property
    def unscored(self) -> int:
        return sum(not score.scored for score in self.scores)

    @overload
    def __getitem__(self, index: int) -> RerankScore: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[RerankScore]: ...

    def __getitem__(self, index: int | slice) -> RerankScore | Sequence[RerankScore]:
        return self.scores[index]

    def __len__(self) -> int:
        return len(self.scores)


class ConnectorClient:
    """The rerank connector's Cohere-shaped `POST /v1/rerank`, over one pooled HTTP connection.

    `timeout` should exceed the connector's own deadline: past it the connector answers what it knows,
    which is better than a client-side timeout with nothing."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        # What messages and reports name: the URL without any user:password written into it (httpx
        # still sends those as basic auth).
        self.base_url = str(httpx.URL(base_url).copy_with(userinfo=b"")).rstrip("/")

    def backend_kind(self) -> str | None:
        """The connector's backend ("sglang", "openai", "engine", "cpu") as its /ready reports it; None when
        the connector does not answer. Lets output say when scores come from the CPU fallback, not Retro*."""
        try:
            body = self._http.get("/ready", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            return None
        return body.get("backend") if isinstance(body, dict) else None

    def rerank(
        self,
        query: str,
        candidates: Sequence[Candidate],
        explain: bool = False,
        task: str | Mapping[str, Any] | None = None,
    ) -> RerankReply:
        """One score per candidate, best first (unscored candidates last, as the connector orders them),
        with the connector's own counts of what the model and its cache did.

        The candidates' ids only label them in the connector's rerank log (else it records hashes)."""
        if not candidates:
            return RerankReply(scores=[], pairs_scored=0, cache_hits=0, backend_errors=0)
        # The wire keeps Cohere's list of texts; the ids travel beside it as Retro*'s `document_ids`.
        payload: dict[str, Any] = {"query": query, "documents": [candidate.text for candidate in candidates]}
        ids = [candidate.id for candidate in candidates]
        if any(doc_id is not None for doc_id in ids):
            payload["document_ids"] = ids
        if explain:
            payload["return_explanations"] = True
        if task is not None:
            payload["task"] = task
        try:
            response = self._http.post(RERANK_PATH, json=payload)
        except httpx.TimeoutException:
            raise SearchError(f"the connector at {self.base_url} timed out") from None
        except httpx.HTTPError as error:
            raise SearchError(
                f"the connector at {self.base_url} is unreachable ({type(error).__name__})"
            ) from None
        if response.status_code >= 400:
            raise SearchError(
                f"the connector at {self.base_url} answered HTTP {response.status_code}: "
                f"{_error_message(response)}"
            )
        body = response.json()
        results = body.get("results", [])
        if len(results) != len(candidates):
            raise SearchError(
                f"the connector answered {len(results)} results for {len(candidates)} documents"
            )
        scores = [
            RerankScore(
                index=int(result["index"]),
                candidate=candidates[int(result["index"])],
                relevance_score=float(result["relevance_score"]),
                scored=bool(result.get("scored", True)),
                explanation=_reasoning(result.get("explanation")),
            )
            for result in results
        ]
        stats = (body.get("meta") or {}).get("retrostar") or {}
        return RerankReply(
            scores=scores,
            degraded=bool(body.get("degraded", any(not score.scored for score in scores))),
            pairs_scored=stats.get("pairs_scored"),
            cache_hits=stats.get("cache_hits"),
            backend_errors=stats.get("backend_errors"),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConnectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reasoning(explanation: Mapping[str, Any] | None) -> str | None:
    """The reasoning text of an explanation; several samples are kept apart by a rule line."""
    if not explanation:
        return None
    texts = [sample.get("text", "") for sample in explanation.get("samples") or []]
    return "\n---\n".join(text for text in texts if text) or None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]
