"""The rerank connector's own API as a client calls it: Cohere's `POST /v1/rerank` with Retro*'s extensions,
`GET /ready` (who scores: backend, model, task) and `GET /outcomes/{fingerprint}` (how a rerank the
search pipeline asked for went)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from retrostar_search.engines._explanations import Explanation
from retrostar_search.engines._hits import RELEVANCE_SCALE
from retrostar_search.engines.connector_endpoint import OUTCOMES_PATH, RERANK_PATH
from retrostar_search.engines.errors import Service, describe_failure, describe_status
from retrostar_search.errors import SearchError
from retrostar_search.redaction import public_url
from retrostar_search.reranker import Candidate
from retrostar_search.tasks import TaskDefinition

READY_TIMEOUT_S = 5.0
CPU_BACKEND = "cpu"

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class RerankScore:
    """The connector's verdict on one candidate of a request (`index`: its position in the request)."""

    index: int
    candidate: Candidate
    relevance_score: float
    scored: bool
    explanation: Explanation | None = None
    #: The Retro* score the connector reports; connectors without the field imply relevance_score x 100.
    reported_score: float | None = None

    @property
    def retrostar_score(self) -> float | None:
        if not self.scored:
            return None
        # With a cascade relevance_score is banded by stage: only the reported score is Retro*'s own.
        return (
            self.reported_score if self.reported_score is not None else self.relevance_score * RELEVANCE_SCALE
        )


@dataclass(frozen=True)
class RerankAnswer:
    """One rerank: a score per candidate, best first, whether (and why) some went unscored, and what the
    connector says it did (`meta.retrostar`): pairs sent to the model, pairs served from its cache and
    pairs the backend failed (None where it does not say)."""

    scores: list[RerankScore]
    degraded: bool = False
    reason: str | None = None
    request_id: str | None = None
    pairs_scored: int | None = None
    cache_hits: int | None = None
    backend_errors: int | None = None

    @property
    def unscored(self) -> int:
        """Candidates a failure left unscored (the cascade's unscored ones do not count)."""
        return sum(not score.scored for score in self.scores) if self.degraded else 0


@dataclass(frozen=True)
class ConnectorReadiness:
    """What a connector's `/ready` says: whether it answers, whether its backend is ready, and who scores
    (backend kind, model, task, cascade). `problem` and `hint` say why not, for a person."""

    url: str
    reachable: bool
    ready: bool = False
    # Who scores, as /ready reports it (also when the backend is not ready).
    backend: str | None = None
    model: str | None = None
    task: TaskDefinition | None = None
    cascade: str | None = None  # "all@1": one sample per document
    # Why it is not reachable or not ready, and what to try.
    problem: str | None = None
    hint: str | None = None

    @property
    def scorer(self) -> str:
        """Who the scores come from, as labels and titles say it."""
        if self.backend == CPU_BACKEND:
            return "the CPU fallback (not Retro*)"
        if self.backend is None:
            return "an unknown scorer"
        return "Retro*"

    @property
    def score_label(self) -> str:
        """A short column label for the scores."""
        return {CPU_BACKEND: "fallback", None: "score"}.get(self.backend, "Retro*")

    def to_dict(self) -> dict[str, Any]:
        view = {field.name: getattr(self, field.name) for field in fields(self) if field.name != "hint"}
        return {**view, "task": None if self.task is None else self.task.model_dump()}


@dataclass(frozen=True)
class RerankOutcome:
    """How one rerank went, as the connector remembers it: `unscored` of `documents` left without a score,
    which (`unscored_digests`, by `document_digest`; empty when none or all were), whether a failure did it
    (`degraded`, else the cascade) and why."""

    request_id: str
    documents: int
    unscored: int
    degraded: bool = False
    reason: str | None = None
    unscored_digests: frozenset[str] = field(default_factory=frozenset)

    @property
    def failed(self) -> int:
        """Documents a failure left unscored."""
        return self.unscored if self.degraded else 0


class ConnectorClient:
    """The rerank connector, over one pooled HTTP connection.

    `timeout` should exceed the connector's own deadline: past it the connector answers what it knows,
    which is better than a client-side timeout with nothing."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        # httpx is imported by the methods that use it: `retrosearch search --help` need not load it.
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self._api_key = api_key
        self._timeout = timeout
        # What messages and reports name: the URL without any user:password written into it (httpx
        # still sends those as basic auth).
        self.base_url = public_url(base_url).rstrip("/")

    def at(self, base_url: str) -> ConnectorClient:
        """A client for another connector (the one a search pipeline calls), with this one's key and
        timeout; the caller closes it."""
        return ConnectorClient(base_url, self._api_key, self._timeout)

    def readiness(self) -> ConnectorReadiness:
        """What `/ready` says; never raises (an unreachable connector is a readiness too)."""
        import httpx

        try:
            response = self._http.get("/ready", timeout=READY_TIMEOUT_S)
        except httpx.HTTPError as error:
            failure = describe_failure(error, self.base_url, Service.CONNECTOR)
            return ConnectorReadiness(
                self.base_url, reachable=False, problem=failure.message, hint=failure.hint
            )
        body = _json_object(response)
        task = body.get("task")
        readiness = ConnectorReadiness(
            self.base_url,
            reachable=True,
            ready=response.status_code == 200 and body.get("status") == "ready",
            backend=body.get("backend"),
            model=body.get("model"),
            task=TaskDefinition.model_validate(task) if isinstance(task, dict) else None,
            cascade=body.get("cascade"),
        )
        if response.status_code in (401, 403):
            failure = describe_status(response.status_code, self.base_url, Service.CONNECTOR)
            return ConnectorReadiness(
                self.base_url, reachable=True, problem=failure.message, hint=failure.hint
            )
        if not readiness.ready:
            message = body.get("message") or f"/ready answered HTTP {response.status_code}"
            return replace(readiness, problem=str(message))
        return readiness

    def rerank(
        self,
        query: str,
        candidates: Sequence[Candidate],
        explain: bool = False,
        task: str | Mapping[str, Any] | None = None,
    ) -> RerankAnswer:
        """One score per candidate, best first (unscored candidates last, as the connector orders them).

        The candidates' ids only label them in the connector's rerank log (else it records hashes)."""
        if not candidates:
            return RerankAnswer([], pairs_scored=0, cache_hits=0, backend_errors=0)
        # The wire keeps Cohere's list of texts; the ids travel beside it as Retro*'s `document_ids`.
        payload: dict[str, Any] = {"query": query, "documents": [candidate.text for candidate in candidates]}
        ids = [candidate.id for candidate in candidates]
        if any(doc_id is not None for doc_id in ids):
            payload["document_ids"] = ids
        if explain:
            payload["return_explanations"] = True
        if task is not None:
            payload["task"] = task
        response = self._call("POST", RERANK_PATH, payload)
        if response.status_code >= 400:
            raise self._refusal(response)
        body = _json_object(response)
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
                explanation=Explanation.from_wire(result["explanation"])
                if result.get("explanation")
                else None,
                reported_score=_optional_float(result.get("retrostar_score")),
            )
            for result in results
        ]
        meta = body.get("meta") or {}
        retrostar = meta.get("retrostar") or {}
        warnings = meta.get("warnings") or []
        return RerankAnswer(
            scores,
            degraded=bool(body.get("degraded", False)),
            reason=retrostar.get("reason") or (warnings[0] if warnings else None),
            request_id=body.get("id"),
            pairs_scored=retrostar.get("pairs_scored"),
            cache_hits=retrostar.get("cache_hits"),
            backend_errors=retrostar.get("backend_errors"),
        )

    def outcome(self, fingerprint: str) -> RerankOutcome | None:
        """How the connector's latest rerank with this fingerprint went; None when it does not remember
        one (restarted since, or never asked)."""
        response = self._call("GET", f"{OUTCOMES_PATH}/{fingerprint}")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise self._refusal(response)
        body = _json_object(response)
        return RerankOutcome(
            request_id=str(body.get("request_id", "")),
            documents=int(body.get("documents", 0)),
            unscored=int(body.get("unscored", 0)),
            # A connector that does not say counts every unscored document as a failure.
            degraded=bool(body.get("degraded", int(body.get("unscored", 0)) > 0)),
            reason=body.get("reason"),
            unscored_digests=frozenset(body.get("unscored_documents") or ()),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConnectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> httpx.Response:
        import httpx

        try:
            return self._http.request(method, path, json=payload)
        except httpx.HTTPError as error:
            failure = describe_failure(error, self.base_url, Service.CONNECTOR)
            raise SearchError(f"the connector: {failure.message}", hint=failure.hint) from None

    def _refusal(self, response: httpx.Response) -> SearchError:
        failure = describe_status(response.status_code, self.base_url, Service.CONNECTOR)
        return SearchError(
            f"the connector at {self.base_url} answered HTTP {response.status_code}: "
            f"{_error_message(response)}",
            hint=failure.hint,
        )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]


def _optional_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
