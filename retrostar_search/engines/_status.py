"""Whether a rerank scored what it was given, said the same way wherever results are shown: the search
table and its JSON, the explorer, the evaluation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from retrostar_search.reranker import RerankResult

# A backend's error names its URL ("sglang backend at http://gpu:30000/generate answered HTTP 503"); what
# people are told leaves the address out.
_AT_URL = re.compile(r" at [a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def degradation_reason(result: RerankResult) -> str | None:
    """Why documents of a rerank went unscored by a failure (the deadline, the backend's first error);
    None when none did. Backend addresses are left out."""
    if result.deadline_exceeded:
        return "the deadline passed before every document was scored"
    if result.backend_errors:
        first_error = f": {_AT_URL.sub('', result.error_messages[0])}" if result.error_messages else ""
        errors = f"{result.backend_errors} request{'s' if result.backend_errors != 1 else ''}"
        return f"the model backend failed ({errors}){first_error}"
    return None


class RerankState(StrEnum):
    COMPLETE = "complete"  # every document has a Retro* score
    PARTIAL = "partial"  # some documents went unscored: their place is the first stage's
    NONE = "none"  # nothing was scored: the order is the first stage's
    UNVERIFIED = "unverified"  # the pipeline reranked, but its connector could not be asked how it went


@dataclass(frozen=True)
class RerankStatus:
    """How a rerank of `documents` went: how many stayed `unscored`, why (`reason`), and the connector's
    request id when known. `verified` is False when the outcome could not be confirmed with the connector
    (then `unscored` is what the scores suggest)."""

    documents: int
    unscored: int = 0
    reason: str | None = None
    request_id: str | None = None
    verified: bool = True

    @property
    def state(self) -> RerankState:
        if self.documents and self.unscored >= self.documents:
            return RerankState.NONE
        if self.unscored:
            return RerankState.PARTIAL
        return RerankState.COMPLETE if self.verified else RerankState.UNVERIFIED

    @property
    def degraded(self) -> bool:
        """Some or all documents have no Retro* score."""
        return self.state in (RerankState.PARTIAL, RerankState.NONE)

    def describe(self) -> str | None:
        """One line for a person: None when there is nothing to say."""
        reason = f": {self.reason}" if self.reason else ""
        state = self.state
        if state is RerankState.NONE:
            return f"nothing was reranked: none of the {self.documents} documents got a Retro* score{reason}"
        if state is RerankState.PARTIAL:
            return (
                f"reranked only in part: {self.unscored} of {self.documents} documents got no Retro* score "
                f"and keep their first-stage order after the scored ones{reason}"
            )
        if state is RerankState.UNVERIFIED:
            return f"not verified with the connector{reason}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.state.value,
            "documents": self.documents,
            "unscored": self.unscored,
            "reason": self.reason,
            "request_id": self.request_id,
        }
