"""The Retro* reranker: one query, a list of candidate documents, a ranking with scores.

rank_llm's data model: a `Candidate` is a document with its id, and travels whole from a request through
the ranking (each `ScoredDocument` holds its candidate and input position) to the log and the answers.

It renders prompts, serves what it can from the score cache, sends every remaining pair to the backend at
once (SGLang batches them and shares the query-side prefix), integrates the samples, runs the cascade, and
honours a deadline by returning what is known instead of waiting.

Built from settings and used as an async context manager, it owns its backend and cache (the lifecycle
of infinity_emb's engine): ``async with Reranker.from_settings(settings) as reranker: ...``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from retrostar_search.backends.base import Backend, Generation, SamplingParams
from retrostar_search.cache import ScoreCache, cache_key
from retrostar_search.errors import BackendError
from retrostar_search.factory import build_backend, build_cache, build_truncation
from retrostar_search.prompts import RenderedPrompt, Truncation, render_prefix
from retrostar_search.scoring import Cascade, Sample, UnparsedPolicy, integrate, parse_sample
from retrostar_search.settings import RerankerSettings
from retrostar_search.tasks import DEFAULT_TASK, TaskDefinition

_KEPT_ERROR_MESSAGES = 3  # per rerank: enough to say what went wrong without one line per failed pair


@dataclass(frozen=True, slots=True)
class Candidate:
    """One document to rerank: the text the model judges, and the id it is known by (None when the caller
    has none; the rerank log then records a hash of the text)."""

    text: str
    id: str | None = None


@dataclass(slots=True)
class ScoredDocument:
    """One input document's outcome: its candidate and position in the input (`index`, 0-based), and
    `score` on Retro*'s 0..100 scale, None when it went unscored."""

    index: int
    candidate: Candidate
    score: float | None = None
    samples: tuple[Sample, ...] = ()
    cached: bool = False

    @property
    def scored(self) -> bool:
        return self.score is not None


@dataclass(slots=True)
class RerankResult:
    """Best first: scored documents by score (ties keep the input order), then the unscored ones in input
    order. `degraded` is set when a backend failure or the deadline left a planned pair unscored."""

    ranking: list[ScoredDocument]
    degraded: bool = False
    deadline_exceeded: bool = False
    pairs_scored: int = 0
    cache_hits: int = 0
    backend_errors: int = 0
    model_seconds: float = 0.0
    error_messages: list[str] = field(default_factory=list)

    @property
    def unscored(self) -> int:
        return sum(1 for document in self.ranking if not document.scored)


@dataclass(slots=True)
class _UniqueDocument:
    text: str  # after truncation: what the model sees and what the cache key hashes
    first_index: int
    score: float | None = None
    samples: tuple[Sample, ...] = ()
    cached: bool = False


class Reranker:
    """Closing it (``aclose``, or leaving ``async with``) closes its cache and, unless `owns_backend` is
    False, its backend."""

    def __init__(
        self,
        backend: Backend,
        *,
        cache: ScoreCache | None = None,
        cascade: Cascade | None = None,
        sampling: SamplingParams | None = None,
        unparsed_policy: UnparsedPolicy = UnparsedPolicy.ZERO,
        truncation: Truncation | None = None,
        owns_backend: bool = True,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.cascade = cascade or Cascade.single(1)
        self.sampling = sampling or SamplingParams()
        self.unparsed_policy = unparsed_policy
        self.truncation = truncation or Truncation()
        self._owns_backend = owns_backend

    @classmethod
    def from_settings(cls, settings: RerankerSettings, *, backend: Backend | None = None) -> Reranker:
        """The reranker the settings describe: backend, score cache, cascade, sampling, truncation. A
        `backend` passed in is used instead of building one, and stays the caller's to close.

        Call it inside the event loop that will use it: HTTP clients and engines bind to their loop."""
        cache = build_cache(settings)
        try:
            truncation = build_truncation(settings)  # may load a tokenizer: before the backend exists
            return cls(
                backend or build_backend(settings),
                cache=cache,
                cascade=settings.cascade_plan(),
                sampling=settings.sampling_params(),
                unparsed_policy=settings.unparsed,
                truncation=truncation,
                owns_backend=backend is None,
            )
        except BaseException:
            if cache is not None:
                cache.close()
            raise

    async def __aenter__(self) -> Reranker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.cache is not None:
            await self.cache.aclose()
        if self._owns_backend:
            await self.backend.aclose()

    async def rerank(
        self,
        query: str,
        candidates: Sequence[Candidate],
        *,
        task: TaskDefinition = DEFAULT_TASK,
        cascade: Cascade | None = None,
        deadline: float | None = None,
        explain: bool = False,
    ) -> RerankResult:
        """Rank `candidates` for `query`; `deadline` is in seconds from now (None: wait for everything).
        `explain`: the caller shows the samples' reasoning, so cached pairs whose text left the memory cache
        get it from the persistent stores."""
        cascade = cascade or self.cascade
        expires_at = None if deadline is None else time.monotonic() + deadline
        prefix = render_prefix(task, query)

        # Identical documents (after truncation) are scored once and share the outcome.
        unique: dict[str, _UniqueDocument] = {}
        owners: list[_UniqueDocument] = []
        for index, candidate in enumerate(candidates):
            text = self.truncation.apply(candidate.text)
            owner = unique.setdefault(text, _UniqueDocument(text=text, first_index=index))
            owners.append(owner)

        result = RerankResult(ranking=[])
        pool = list(unique.values())  # input order, which is the first-stage order
        started = time.monotonic()
        for stage_number, stage in enumerate(cascade.stages):
            if stage_number > 0:
                pool = _best_first([doc for doc in pool if doc.score is not None])
            if stage.candidates is not None:
                pool = pool[: stage.candidates]
            await self._score_stage(pool, stage.samples, query, prefix, task, expires_at, result, explain)
            if result.deadline_exceeded:
                break
        result.model_seconds = time.monotonic() - started
        result.degraded = result.deadline_exceeded or result.backend_errors > 0

        ranked = [
            ScoredDocument(
                index=index,
                candidate=candidate,
                score=owner.score,
                samples=owner.samples,
                cached=owner.cached,
            )
            for index, (candidate, owner) in enumerate(zip(candidates, owners, strict=True))
        ]
        scored = sorted((doc for doc in ranked if doc.score is not None), key=_best_first_key)
        result.ranking = scored + [doc for doc in ranked if doc.score is None]
        return result

    async def _score_stage(
        self,
        pool: list[_UniqueDocument],
        samples: int,
        query: str,
        prefix: str,
        task: TaskDefinition,
        expires_at: float | None,
        result: RerankResult,
        explain: bool,
    ) -> None:
        """Score `pool` with `samples` each, adding the counts, errors and deadline to `result`."""
        keys = {id(doc): cache_key(self.backend.model, task, query, doc.text, samples) for doc in pool}
        cached = await self.cache.get_many(keys.values(), reasoning=explain) if self.cache is not None else {}
        pending: dict[asyncio.Task[list[Generation]], tuple[_UniqueDocument, str]] = {}
        for doc in pool:
            key = keys[id(doc)]
            if key in cached:
                self._record(doc, cached[key], cached=True)
                result.cache_hits += 1
                continue
            prompt = RenderedPrompt(query=query, document=doc.text, prefix=prefix)
            task_handle = asyncio.create_task(self.backend.generate(prompt, samples, self.sampling))
            pending[task_handle] = (doc, key)
        if not pending:
            return

        timeout = None if expires_at is None else max(0.0, expires_at - time.monotonic())
        done, not_done = await asyncio.wait(pending, timeout=timeout)
        for task_handle in not_done:
            task_handle.cancel()
        if not_done:
            result.deadline_exceeded = True
            await asyncio.gather(*not_done, return_exceptions=True)
        scored: dict[str, tuple[Sample, ...]] = {}
        for task_handle in done:
            doc, key = pending[task_handle]
            error = task_handle.exception()
            if error is not None:
                result.backend_errors += 1
                if len(result.error_messages) < _KEPT_ERROR_MESSAGES:
                    result.error_messages.append(_describe(error))
                continue
            parsed = tuple(
                parse_sample(generation.text, generation.finish_reason) for generation in task_handle.result()
            )
            result.pairs_scored += 1
            scored[key] = parsed
            self._record(doc, parsed, cached=False)
        if self.cache is not None and scored:
            await self.cache.put_many(scored)

    def _record(self, doc: _UniqueDocument, samples: tuple[Sample, ...], *, cached: bool) -> None:
        doc.samples = samples
        doc.score = integrate(samples, self.unparsed_policy)
        doc.cached = cached


def _best_first_key(document: ScoredDocument) -> tuple[float, int]:
    return (-(document.score or 0.0), document.index)


def _best_first(pool: list[_UniqueDocument]) -> list[_UniqueDocument]:
    return sorted(pool, key=lambda doc: (-(doc.score or 0.0), doc.first_index))


def _describe(error: BaseException) -> str:
    # These messages reach logs and strict 502 answers. A BackendError's is written never to quote the
    # prompt; any other exception's message might, so only its type is kept.
    if isinstance(error, BackendError):
        return str(error)
    return f"{type(error).__name__} from the backend"
