"""The Retro* reranker: one query, a list of candidate documents, a ranking with scores.

rank_llm's data model: a `Candidate` is a document with its id, and travels whole from a request through
the ranking (each `ScoredDocument` holds its candidate and input position) to the log and the answers.

It fits the prompts to the served context, serves what it can from the score cache, sends every remaining
pair to the backend at once (SGLang batches them and shares the query-side prefix), integrates the samples,
runs the cascade, and honours a deadline by returning what is known instead of waiting.

A pair is scored once per process however many reranks need it at the same time (the in-flight map), is
retried once within the deadline when its request fails or the server aborts it, and is cached only when
every sample finished and has a score. Pairs nobody waits for any more are aborted, or, with
`OnDeadline.FINISH`, left to finish in the background into the cache.

Built from settings and used as an async context manager, it owns its backend and cache (the lifecycle
of infinity_emb's engine): ``async with Reranker.from_settings(settings) as reranker: ...``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import TracebackType

from retrostar_search.backends.base import Backend, SamplingParams
from retrostar_search.backends.routing import routing_key
from retrostar_search.cache import ScoreCache, query_cache_keys
from retrostar_search.errors import BackendError
from retrostar_search.factory import build_backend, build_cache, build_truncation
from retrostar_search.prompts import PromptFit, RenderedPrompt, Truncation
from retrostar_search.scoring import (
    Cascade,
    FinishReason,
    Sample,
    UnparsedPolicy,
    cacheable,
    integrate,
    parse_sample,
)
from retrostar_search.settings import OnDeadline, RerankerSettings
from retrostar_search.tasks import DEFAULT_TASK, TaskDefinition

_KEPT_ERROR_MESSAGES = 3  # per rerank: enough to say what went wrong without one line per failed pair
# What tells a pair from every other being scored: the model, the prompt up to the document (task and query,
# rendered), the document as the model sees it, and K. A string keeps its hash once computed (a document's
# was, when identical documents were merged), so this key costs no pass over the text; the cache key, a
# SHA-256 of the same things, is made only when there is a score cache.
_PairKey = tuple[str, str, str, int]
# How long a rerank that passed its deadline waits for its abandoned pairs to be aborted (a closed
# connection or an abort request) before it answers.
_ABORT_GRACE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """One document to rerank: the text the model judges, and the id it is known by (None when the caller
    has none; the rerank log then records a hash of the text)."""

    text: str
    id: str | None = None


class Unscored(StrEnum):
    """Why a document has no score."""

    DEADLINE = "deadline"  # its pair was still being generated when the deadline passed
    BACKEND_ERROR = "backend_error"  # its request failed, once retried
    ABORTED = "aborted"  # the server aborted its generation, once retried
    NOT_PLANNED = "not_planned"  # beyond the cascade's first stage: never sent
    NO_PARSED_SAMPLE = "no_parsed_sample"  # --unparsed skip and no sample has a score


@dataclass(slots=True)
class ScoredDocument:
    """One input document's outcome: its candidate and position in the input (`index`, 0-based), and
    `score` on Retro*'s 0..100 scale, None when it went unscored (`unscored` says why).

    `stage` is the cascade stage (1-based) whose samples gave the score, 0 when unscored; `relevance` is
    the 0..1 score engines sort by, never increasing along the ranking (see `relevance`). `truncated`: the
    document was cut to fit the context or an explicit budget."""

    index: int
    candidate: Candidate
    score: float | None = None
    samples: tuple[Sample, ...] = ()
    cached: bool = False
    truncated: bool = False
    stage: int = 0
    relevance: float = 0.0
    unscored: Unscored | None = None

    @property
    def scored(self) -> bool:
        return self.score is not None


@dataclass(slots=True)
class RerankResult:
    """Best first: documents by the deepest cascade stage that scored them, then by score (ties keep the
    input order), then the unscored ones in input order. `degraded` is set when a backend failure, an
    abort or the deadline left a planned pair unscored.

    The counts are this rerank's: `pairs_scored` pairs the model answered for it (a pair another rerank
    was already scoring counts in `inflight_joins` instead), `finish_reasons` their samples by finish reason,
    `unparsed_samples` those without a score (counted per the unparsed policy, never cached)."""

    ranking: list[ScoredDocument]
    degraded: bool = False
    deadline_exceeded: bool = False
    pairs_scored: int = 0
    cache_hits: int = 0
    backend_errors: int = 0
    model_seconds: float = 0.0
    error_messages: list[str] = field(default_factory=list)
    stages: int = 1
    """The cascade's stages: the bands of `ScoredDocument.relevance`."""
    query_truncated: bool = False
    """The query was cut (once, for every document) to leave the documents half the context."""
    truncated_documents: int = 0
    """Documents cut to fit the served context or an explicit budget."""
    finish_reasons: Counter[FinishReason] = field(default_factory=Counter)
    unparsed_samples: int = 0
    retried_pairs: int = 0
    """Pairs sent a second time (a failed request or an abort)."""
    aborted_pairs: int = 0
    """Pairs still aborted the second time: unscored, and counted in backend_errors too."""
    inflight_joins: int = 0
    deadline_pairs: Counter[OnDeadline] = field(default_factory=Counter)
    """Pairs still being generated at the deadline, by what was done: aborted, or left to finish."""

    @property
    def unscored(self) -> int:
        return sum(1 for document in self.ranking if not document.scored)


def relevance(score: float, stage: int, stages: int) -> float:
    """The 0..1 score a ranked document is answered with: `(stage - 1 + score / 100) / stages`.

    Without a cascade (one stage) that is exactly score / 100. In a cascade each stage has its band, so a
    document scored by a later stage (promoted) always sorts above one that stopped earlier, as the
    reference ranks them; a lower band stops just below the next one, so even a 100 there stays under a
    promoted document's 0."""
    value = (stage - 1 + score / 100) / stages
    if stage < stages:
        value = min(value, math.nextafter(stage / stages, 0.0))
    return value


@dataclass(slots=True)
class _UniqueDocument:
    text: str  # after truncation: what the model sees and what the cache key hashes
    first_index: int
    score: float | None = None
    samples: tuple[Sample, ...] = ()
    cached: bool = False
    stage: int = 0
    unscored: Unscored | None = None


@dataclass(frozen=True, slots=True)
class _PairOutcome:
    """What scoring one pair came to: the samples of its last attempt, and the reason it failed if it did
    (`error` the message for logs, never the prompt)."""

    samples: tuple[Sample, ...] = ()
    failure: Unscored | None = None
    error: str | None = None
    transient: bool = False  # a failure that another attempt may not repeat
    retried: bool = False
    discarded: tuple[Sample, ...] = ()  # an aborted first attempt's, for the counts

    @property
    def cacheable(self) -> bool:
        return self.failure is None and cacheable(self.samples)


@dataclass(slots=True, eq=False)
class _PairWork:
    """One pair being scored, shared by every rerank that needs it. `waiters` counts the reranks waiting
    for it: the last one to leave before it is done aborts it, or leaves it to finish in the background.
    The first rerank to take its outcome (`claimed`) counts it and stores it in the cache; until then it
    stays in the in-flight map, so no rerank scores it again in between."""

    task: asyncio.Task[_PairOutcome]
    cache_key: str | None  # None without a score cache
    waiters: int = 0
    claimed: bool = False
    background: bool = False


class Reranker:
    """Closing it (``aclose``, or leaving ``async with``) aborts the pairs it is still scoring, closes its
    cache and, unless `owns_backend` is False, its backend.

    `on_background_finish`, when set, is called with True (its samples went into the cache) or False as
    each pair left to finish in the background ends."""

    def __init__(
        self,
        backend: Backend,
        *,
        cache: ScoreCache | None = None,
        cascade: Cascade | None = None,
        sampling: SamplingParams | None = None,
        unparsed_policy: UnparsedPolicy = UnparsedPolicy.ZERO,
        truncation: Truncation | None = None,
        on_deadline: OnDeadline = OnDeadline.ABORT,
        max_background_pairs: int = 256,
        owns_backend: bool = True,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.cascade = cascade or Cascade.single(1)
        self.sampling = sampling or SamplingParams()
        self.unparsed_policy = unparsed_policy
        self.truncation = truncation or Truncation()
        self.on_deadline = on_deadline
        self.max_background_pairs = max_background_pairs
        self.on_background_finish: Callable[[bool], None] | None = None
        self._owns_backend = owns_backend
        self._in_flight: dict[_PairKey, _PairWork] = {}
        self._background: set[asyncio.Task[None]] = set()

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
                on_deadline=settings.on_deadline,
                max_background_pairs=settings.max_background_pairs,
                owns_backend=backend is None,
            )
        except BaseException:
            if cache is not None:
                cache.close()
            raise

    async def __aenter__(self) -> Reranker:
        # The backend asks its server what it serves: a model it does not serve fails here, at start-up.
        try:
            await self.backend.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        unfinished = [work.task for work in self._in_flight.values()] + list(self._background)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
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
        get it from the persistent stores. Cancelling the call aborts the pairs no other rerank is waiting
        for."""
        cascade = cascade or self.cascade
        expires_at = None if deadline is None else time.monotonic() + deadline
        fit = self.truncation.fit(
            task,
            query,
            max_new_tokens=self.sampling.max_new_tokens,
            context_length=self.backend.context_length,
        )

        # Identical documents (after truncation) are scored once and share the outcome.
        unique: dict[str, _UniqueDocument] = {}
        owners: list[_UniqueDocument] = []
        truncated: list[bool] = []
        for index, candidate in enumerate(candidates):
            text, cut = fit.document(candidate.text)
            owners.append(unique.setdefault(text, _UniqueDocument(text=text, first_index=index)))
            truncated.append(cut)

        result = RerankResult(
            ranking=[],
            stages=len(cascade.stages),
            query_truncated=fit.query_truncated,
            truncated_documents=sum(truncated),
        )
        model = self.backend.model
        cache_keys = query_cache_keys(model, task, fit.query) if self.cache is not None else None
        pool = list(unique.values())  # input order, which is the first-stage order
        started = time.monotonic()
        for stage_number, stage in enumerate(cascade.stages, start=1):
            if stage_number > 1:  # the best of those the previous stage scored
                pool = _best_first([doc for doc in pool if doc.stage == stage_number - 1])
            if stage.candidates is not None:
                pool = pool[: stage.candidates]
            pairs = {(model, fit.prefix, doc.text, stage.samples): doc for doc in pool}
            await self._score_stage(
                pairs, stage_number, stage.samples, fit, cache_keys, expires_at, result, explain
            )
            if result.deadline_exceeded:
                break
        result.model_seconds = time.monotonic() - started
        result.degraded = result.deadline_exceeded or result.backend_errors > 0
        result.ranking = _ranking(candidates, owners, truncated, result.stages)
        return result

    async def _score_stage(
        self,
        pairs: dict[_PairKey, _UniqueDocument],
        stage: int,
        samples: int,
        fit: PromptFit,
        cache_keys: Callable[[str, int], str] | None,
        expires_at: float | None,
        result: RerankResult,
        explain: bool,
    ) -> None:
        """Score the documents of `pairs` with `samples` each, adding the counts, errors and deadline to
        `result`. `cache_keys` gives the score cache's key of a document of this query (None: no cache)."""
        stored_as: dict[_PairKey, str] = {}
        cached: dict[str, tuple[Sample, ...]] = {}
        if self.cache is not None and cache_keys is not None:
            stored_as = {key: cache_keys(doc.text, samples) for key, doc in pairs.items()}
            cached = await self.cache.get_many(stored_as.values(), reasoning=explain)
        waiting: dict[_PairKey, _PairWork] = {}
        for key, doc in pairs.items():
            cache_key = stored_as.get(key)
            hit = cached.get(cache_key) if cache_key is not None else None
            if hit is not None and cacheable(hit):  # an older version may have cached non-scores
                self._record(doc, stage, hit, cached=True)
                result.cache_hits += 1
                continue
            work = self._in_flight.get(key)
            if work is None:
                work = self._start(key, cache_key, fit.prompt(doc.text), samples)
            else:
                result.inflight_joins += 1
            work.waiters += 1
            waiting[key] = work
        if not waiting:
            return

        timeout = None if expires_at is None else max(0.0, expires_at - time.monotonic())
        try:
            await asyncio.wait([work.task for work in waiting.values()], timeout=timeout)
        except asyncio.CancelledError:  # the caller hung up: nothing of this stage is wanted any more
            self._leave(waiting, keep_running=False)
            raise
        unfinished = {key: work for key, work in waiting.items() if not work.task.done()}
        aborted = self._leave(unfinished, keep_running=self.on_deadline is OnDeadline.FINISH, result=result)
        result.deadline_exceeded = bool(unfinished)

        fresh: dict[_PairKey, _PairWork] = {}  # outcomes this rerank claimed, to be cached
        for key, work in waiting.items():
            doc = pairs[key]
            if key in unfinished:
                self._unscored(doc, Unscored.DEADLINE)
                continue
            work.waiters -= 1
            if work.task.cancelled():  # the reranker is closing
                self._unscored(doc, Unscored.DEADLINE)
                continue
            outcome = work.task.result()
            if not work.claimed:
                work.claimed = True
                _count(outcome, result)
                if outcome.cacheable:
                    fresh[key] = work
            if outcome.failure is None:
                self._record(doc, stage, outcome.samples, cached=False)
                continue
            result.backend_errors += 1
            result.aborted_pairs += outcome.failure is Unscored.ABORTED
            if outcome.error is not None and len(result.error_messages) < _KEPT_ERROR_MESSAGES:
                result.error_messages.append(outcome.error)
            self._unscored(doc, outcome.failure, outcome.samples)
        try:
            await self._store(fresh.values())
        finally:
            for key, work in fresh.items():
                self._forget(key, work)
        if aborted:
            await asyncio.wait(aborted, timeout=_ABORT_GRACE_SECONDS)

    def _start(self, key: _PairKey, cache_key: str | None, prompt: RenderedPrompt, samples: int) -> _PairWork:
        work = _PairWork(asyncio.create_task(self._score_pair(prompt, samples)), cache_key)
        self._in_flight[key] = work
        work.task.add_done_callback(lambda task: self._settled(key, work))
        return work

    def _settled(self, key: _PairKey, work: _PairWork) -> None:
        # An outcome that will not be cached leaves the map at once; one that will, once it is stored.
        task = work.task
        if task.cancelled() or task.exception() is not None or not task.result().cacheable:
            self._forget(key, work)

    def _forget(self, key: _PairKey, work: _PairWork) -> None:
        if self._in_flight.get(key) is work:
            del self._in_flight[key]

    def _leave(
        self, works: dict[_PairKey, _PairWork], *, keep_running: bool, result: RerankResult | None = None
    ) -> list[asyncio.Task[_PairOutcome]]:
        """One rerank stops waiting for `works`. Those nobody else waits for are aborted, or, with
        `keep_running` and room in the background, finish there into the cache (counted in `result`).
        Returns the aborted."""
        aborted = []
        for key, work in works.items():
            work.waiters -= 1
            if work.waiters > 0 or work.background:
                continue
            if work.task.done():
                if not work.claimed:  # a hung-up rerank's finished pair: nobody will store it
                    self._forget(key, work)
            elif keep_running and len(self._background) < self.max_background_pairs:
                self._finish_in_background(key, work)
                if result is not None:
                    result.deadline_pairs[OnDeadline.FINISH] += 1
            else:
                work.task.cancel()
                aborted.append(work.task)
                if result is not None:
                    result.deadline_pairs[OnDeadline.ABORT] += 1
        return aborted

    def _finish_in_background(self, key: _PairKey, work: _PairWork) -> None:
        work.background = True
        finisher = asyncio.create_task(self._store_when_done(key, work))
        self._background.add(finisher)
        finisher.add_done_callback(self._background.discard)

    async def _store_when_done(self, key: _PairKey, work: _PairWork) -> None:
        try:
            outcome = await work.task
            if work.claimed:  # a rerank that joined it meanwhile took it
                return
            work.claimed = True
            stored = outcome.cacheable and await self._store([work])
            if self.on_background_finish is not None:
                self.on_background_finish(stored)
        finally:
            self._forget(key, work)

    async def _store(self, works: Iterable[_PairWork]) -> bool:
        """Put the (cacheable) outcomes of `works` in the score cache; False when there is no cache."""
        if self.cache is None:
            return False
        entries = {work.cache_key: work.task.result().samples for work in works if work.cache_key is not None}
        if entries:
            await self.cache.put_many(entries)
        return True

    async def _score_pair(self, prompt: RenderedPrompt, samples: int) -> _PairOutcome:
        """Ask the backend for `samples` trajectories, once more when the request failed (unless the
        server refused it for good) or the server aborted the generation."""
        first = await self._attempt(prompt, samples)
        if first.failure is None or not first.transient:
            return first
        second = await self._attempt(prompt, samples)
        return replace(second, retried=True, discarded=first.samples)

    async def _attempt(self, prompt: RenderedPrompt, samples: int) -> _PairOutcome:
        # No rid: the backend gives each attempt one of its own (the server refuses one that is still live).
        try:
            generations = await self.backend.generate(
                prompt,
                samples,
                self.sampling,
                # Every request of the query (both cascade stages, repeats) to the worker holding its prefix.
                routing_key=routing_key(self.backend.model, prompt.prefix),
            )
        except BackendError as error:
            return _PairOutcome(failure=Unscored.BACKEND_ERROR, error=str(error), transient=error.transient)
        except Exception as error:
            # Only the type: the message of an unexpected exception might quote the prompt.
            return _PairOutcome(
                failure=Unscored.BACKEND_ERROR, error=f"{type(error).__name__} from the backend"
            )
        parsed = tuple(parse_sample(generation.text, generation.finish_reason) for generation in generations)
        if any(sample.finish_reason is FinishReason.ABORT for sample in parsed):
            message = f"the {self.backend.kind} backend aborted the generation"
            return _PairOutcome(parsed, Unscored.ABORTED, message, transient=True)
        return _PairOutcome(parsed)

    def _record(self, doc: _UniqueDocument, stage: int, samples: tuple[Sample, ...], *, cached: bool) -> None:
        score = integrate(samples, self.unparsed_policy)
        if score is None and doc.score is not None:
            return  # an earlier stage's score stands
        doc.samples, doc.score, doc.cached = samples, score, cached
        doc.stage = stage if score is not None else 0
        doc.unscored = None if score is not None else Unscored.NO_PARSED_SAMPLE

    def _unscored(self, doc: _UniqueDocument, reason: Unscored, samples: tuple[Sample, ...] = ()) -> None:
        if doc.score is None:  # otherwise an earlier stage's score stands
            doc.unscored, doc.samples = reason, samples


def _count(outcome: _PairOutcome, result: RerankResult) -> None:
    """Add a pair's work to the counts of the rerank that took its outcome first."""
    result.finish_reasons.update(sample.finish_reason for sample in (*outcome.discarded, *outcome.samples))
    result.retried_pairs += outcome.retried
    if outcome.failure is None:
        result.pairs_scored += 1
        result.unparsed_samples += sum(1 for sample in outcome.samples if not sample.parsed)


def _ranking(
    candidates: Sequence[Candidate], owners: list[_UniqueDocument], truncated: list[bool], stages: int
) -> list[ScoredDocument]:
    """The reference's order: the documents the last stage scored by that score, then those each earlier
    stage left behind by theirs; within a stage ties keep the input order. Unscored documents follow, in
    input order."""
    ranked = []
    for index, (candidate, owner, cut) in enumerate(zip(candidates, owners, truncated, strict=True)):
        unscored = owner.unscored or (Unscored.NOT_PLANNED if owner.score is None else None)
        ranked.append(
            ScoredDocument(
                index, candidate, owner.score, owner.samples, owner.cached, cut, owner.stage, 0.0, unscored
            )
        )
    scored = sorted((doc for doc in ranked if doc.score is not None), key=_best_first_key)
    for document in scored:
        assert document.score is not None
        document.relevance = relevance(document.score, document.stage, stages)
    return scored + [doc for doc in ranked if doc.score is None]


def _best_first_key(document: ScoredDocument) -> tuple[int, float, int]:
    return (-document.stage, -(document.score or 0.0), document.index)


def _best_first(pool: list[_UniqueDocument]) -> list[_UniqueDocument]:
    return sorted(pool, key=lambda doc: (-(doc.score or 0.0), doc.first_index))
