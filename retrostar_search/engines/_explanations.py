"""Why a document got its Retro* score, as a person reads it: the score, each sample's score, how its
generation ended and its reasoning (the trajectory without its `<score>` block, which the score shows),
or, for a document left unscored, why.

Built from the connector's answer (`from_wire`, what `return_explanations` adds to a result) or from the
reranker's own `ScoredDocument` (`from_scored`, the explorer), so `retrosearch search --explain`, its
`--json` and the explorer page show the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from retrostar_search.scoring import SCORE_PATTERN, Sample

# Explanation and sample fields (beyond score, text and finish reason) that say something a reader
# should know when true, such as a document cut to fit the context; shown as notes by their name.
_NOTE_FIELDS = ("truncated",)


def reasoning_text(trajectory: str) -> str:
    """A trajectory without its `<score>N</score>` block: the score is shown beside it."""
    return SCORE_PATTERN.sub("", trajectory).strip()


@dataclass(frozen=True)
class SampleReasoning:
    """One sampled trajectory: its score (None: no `<score>` in it), how the generation ended ("stop",
    "length", "abort"; None when the connector does not say) and its reasoning."""

    score: int | None
    reasoning: str
    finish_reason: str | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        view: dict[str, Any] = {"score": self.score, "finish_reason": self.finish_reason}
        if self.notes:
            view["notes"] = list(self.notes)
        view["reasoning"] = self.reasoning
        return view

    @property
    def label(self) -> str:
        """ "score 93", "no score" and, when the generation did not end by itself, how it ended."""
        label = "no score" if self.score is None else f"score {self.score}"
        if self.finish_reason and self.finish_reason != "stop":
            label += f", {self.finish_reason}"
        return ", ".join([label, *self.notes])


@dataclass(frozen=True)
class Explanation:
    """A document's score (0-100, None when unscored), whether it came from the cache, its samples, and
    for an unscored document the reason (`unscored_reason`)."""

    score: float | None
    cached: bool = False
    samples: tuple[SampleReasoning, ...] = ()
    notes: tuple[str, ...] = ()
    unscored_reason: str | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Explanation:
        """From the connector's `explanation` object (fields it does not send are left at their default)."""
        samples = tuple(
            SampleReasoning(
                score=sample.get("score") if sample.get("parsed", True) else None,
                reasoning=reasoning_text(str(sample.get("text") or "")),
                finish_reason=sample.get("finish_reason"),
                notes=_notes(sample),
            )
            for sample in data.get("samples") or []
        )
        return cls(
            score=data.get("score"),
            cached=bool(data.get("cached", False)),
            samples=samples,
            notes=_notes(data),
        )

    @classmethod
    def from_samples(
        cls, score: float | None, samples: Sequence[Sample], cached: bool, unscored_reason: str | None = None
    ) -> Explanation:
        """From the reranker's samples (the explorer, which reranks in process)."""
        return cls(
            score=score,
            cached=cached,
            samples=tuple(
                SampleReasoning(sample.score, reasoning_text(sample.text or ""), sample.finish_reason.value)
                for sample in samples
            ),
            unscored_reason=unscored_reason if score is None else None,
        )

    def with_unscored_reason(self, reason: str | None) -> Explanation:
        return self if self.score is not None or not reason else replace(self, unscored_reason=reason)

    def to_dict(self) -> dict[str, Any]:
        view: dict[str, Any] = {"score": self.score, "cached": self.cached}
        if self.notes:
            view["notes"] = list(self.notes)
        if self.unscored_reason:
            view["unscored_reason"] = self.unscored_reason
        view["samples"] = [sample.to_dict() for sample in self.samples]
        return view

    def as_text(self) -> str:
        """The reasoning of every sample under a line with its score and how it ended, for a terminal."""
        if self.score is None:
            return f"not scored: {self.unscored_reason or 'the connector gave no score for this document'}"
        parts = []
        for number, sample in enumerate(self.samples, start=1):
            heading = f"sample {number} of {len(self.samples)} · {sample.label}"
            parts.append(f"{heading}\n{sample.reasoning or '(no reasoning text)'}")
        notes = f" ({', '.join(self.notes)})" if self.notes else ""
        return "\n\n".join(parts) or f"(no samples{notes})"


def _notes(data: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(name for name in _NOTE_FIELDS if data.get(name) is True)
