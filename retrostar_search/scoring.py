"""Turning sampled trajectories into one Retro* score: parsing, integration, and the cascade plan."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

# The reference's pattern: the first <score>N</score> in the generated text.
SCORE_PATTERN = re.compile(r"<score>\s*(\d+)\s*</score>")
MIN_SCORE, MAX_SCORE = 0, 100


class FinishReason(StrEnum):
    """Why a generation ended, as SGLang's `meta_info.finish_reason.type` and the OpenAI API's
    `finish_reason` say it. Only STOP is a finished trajectory."""

    STOP = "stop"  # the model ended its answer (end-of-sequence or a stop string)
    LENGTH = "length"  # cut at max_new_tokens: the score may be missing or premature
    ABORT = "abort"  # stopped by the server (abort_request, load shedding, weight updates): no answer


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampled trajectory: the generated text, the score parsed out of it (None if none) and why the
    generation ended. `text` is None when the score cache kept the score but not the text (its reasoning
    bound evicted it, and no persistent store had it)."""

    text: str | None
    score: int | None
    finish_reason: FinishReason = FinishReason.STOP

    @property
    def parsed(self) -> bool:
        return self.score is not None

    @property
    def finished(self) -> bool:
        """A real sample: the model ended its answer itself."""
        return self.finish_reason is FinishReason.STOP


def parse_sample(text: str, finish_reason: FinishReason = FinishReason.STOP) -> Sample:
    """Parse like the reference (first match, integer), then clip to 0..100, which the reference does not:
    an out-of-range number would otherwise dominate a mean.

    Only a finished generation is parsed. One cut at the token limit has no score even when a `<score>`
    appears in its text (the answer did not end, so the number may be premature), and an aborted one has
    no answer at all."""
    match = SCORE_PATTERN.search(text) if finish_reason is FinishReason.STOP else None
    if match is None:
        return Sample(text=text, score=None, finish_reason=finish_reason)
    score = min(MAX_SCORE, max(MIN_SCORE, int(match.group(1))))
    return Sample(text=text, score=score, finish_reason=finish_reason)


class UnparsedPolicy(StrEnum):
    ZERO = "zero"  # the reference: an unparseable sample counts as 0 and stays in the denominator
    SKIP = "skip"  # mean over parsed samples only; a pair with none parsed stays unscored


def cacheable(samples: Sequence[Sample]) -> bool:
    """Whether samples may be kept in the score cache: every one finished and parsed. Anything else is an
    answer of this moment (a server that aborts, a token limit, a garbled answer) that must not outlive it."""
    return bool(samples) and all(sample.finished and sample.parsed for sample in samples)


def integrate(samples: Sequence[Sample], policy: UnparsedPolicy = UnparsedPolicy.ZERO) -> float | None:
    """The test-time-scaling score: the mean of the samples' scores on 0..100, or None when unscored."""
    if not samples:
        return None
    if policy is UnparsedPolicy.ZERO:
        return sum(sample.score or 0 for sample in samples) / len(samples)
    parsed = [sample.score for sample in samples if sample.score is not None]
    return sum(parsed) / len(parsed) if parsed else None


@dataclass(frozen=True, slots=True)
class CascadeStage:
    """Score the best `candidates` documents of the previous stage (all of them when None) with
    `samples` trajectories each."""

    candidates: int | None
    samples: int

    def __str__(self) -> str:
        return f"{'all' if self.candidates is None else self.candidates}@{self.samples}"


@dataclass(frozen=True, slots=True)
class Cascade:
    stages: tuple[CascadeStage, ...]

    @classmethod
    def single(cls, samples: int = 1) -> Cascade:
        return cls((CascadeStage(candidates=None, samples=samples),))

    @classmethod
    def parse(cls, spec: str) -> Cascade:
        """`"100@1,30@16"` (the reference: the top 100 with one sample, then the top 30 with sixteen);
        `"all@4"` or a bare `"4"` scores every candidate with four samples."""
        stages: list[CascadeStage] = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            candidates_text, _, samples_text = part.rpartition("@")
            try:
                samples = int(samples_text)
                candidates = None if candidates_text in ("", "all") else int(candidates_text)
            except ValueError:
                raise ValueError(f"invalid cascade stage {part!r}: expected N@K, e.g. 100@1,30@16") from None
            if samples < 1 or (candidates is not None and candidates < 1):
                raise ValueError(f"invalid cascade stage {part!r}: counts must be positive")
            if stages and candidates is None:
                raise ValueError(f"invalid cascade stage {part!r}: only the first stage may score all")
            stages.append(CascadeStage(candidates=candidates, samples=samples))
        if not stages:
            raise ValueError("empty cascade: expected N@K, e.g. 100@1,30@16")
        return cls(tuple(stages))

    def __str__(self) -> str:
        return ",".join(str(stage) for stage in self.stages)
