"""How recent reranks went, remembered by what they ranked, for clients that cannot see the answer.

OpenSearch's rerank processor keeps only the scores of the connector's answer: `degraded`, the warnings
and which documents went unscored are dropped, and with `ignore_failure` a failed rerank looks like the
BM25 order. A client that searched through the pipeline (`retrosearch search`) computes the same
fingerprint from the query and the hits' texts (`rerank_fingerprint`) and asks `GET /outcomes/{fingerprint}`.

Only digests are kept (never a query or a document), for the last `RECENT_OUTCOMES` reranks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from pydantic import BaseModel, Field

from retrostar_search.engines.connector_endpoint import document_digest, rerank_fingerprint
from retrostar_search.reranker import Candidate, RerankResult

RECENT_OUTCOMES = 1024


class RerankOutcome(BaseModel):
    """`GET /outcomes/{fingerprint}`: how the latest rerank of that query and those documents went."""

    request_id: str = Field(description="The rerank's request id (its log line and rerank-log event).")
    documents: int
    unscored: int = Field(description="Documents left without a score (a failure's, or the cascade's).")
    degraded: bool = Field(description="true: a failure (backend, deadline) left documents unscored.")
    reason: str | None = Field(description="Why a failure left documents unscored; null when none did.")
    unscored_documents: list[str] = Field(
        default_factory=list,
        description="Digests of the unscored documents' texts when some, not all, went unscored.",
    )


class RecentOutcomes:
    """A bounded map from rerank fingerprints to outcomes, newest kept; safe to share between threads."""

    def __init__(self, size: int = RECENT_OUTCOMES) -> None:
        self.size = size
        self._outcomes: OrderedDict[str, RerankOutcome] = OrderedDict()
        self._lock = threading.Lock()

    def record(
        self,
        query: str,
        candidates: Sequence[Candidate],
        result: RerankResult,
        request_id: str,
        reason: str | None,
    ) -> None:
        unscored = result.unscored
        partial = 0 < unscored < len(candidates)
        outcome = RerankOutcome(
            request_id=request_id,
            documents=len(candidates),
            unscored=unscored,
            degraded=result.degraded,
            reason=reason,
            unscored_documents=sorted(
                {document_digest(doc.candidate.text) for doc in result.ranking if not doc.scored}
            )
            if partial
            else [],
        )
        key = rerank_fingerprint(query, (candidate.text for candidate in candidates))
        with self._lock:
            self._outcomes.pop(key, None)
            self._outcomes[key] = outcome
            while len(self._outcomes) > self.size:
                self._outcomes.popitem(last=False)

    def get(self, fingerprint: str) -> RerankOutcome | None:
        with self._lock:
            return self._outcomes.get(fingerprint)
