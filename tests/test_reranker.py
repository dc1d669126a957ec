"""The reranker against the scripted SGLang server over real HTTP."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from retrostar_search.backends.base import SamplingParams
from retrostar_search.backends.sglang_http import SGLangGenerateBackend
from retrostar_search.cache import ScoreCache, cache_key, query_cache_keys
from retrostar_search.prompts import PROMPT_VERSION, Truncation
from retrostar_search.reranker import Candidate, Reranker, Unscored, relevance
from retrostar_search.scoring import Cascade, FinishReason, Sample, UnparsedPolicy
from retrostar_search.settings import RerankerSettings
from retrostar_search.tasks import DEFAULT_TASK, PRESETS
from tests.scripted_sglang import ABORT, ScriptedSGLangServer, expected_score


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedSGLangServer]:
    with ScriptedSGLangServer() as scripted:
        yield scripted


@pytest.fixture
def backend(server: ScriptedSGLangServer):
    server.reset()
    return SGLangGenerateBackend(server.url, model="retro-star-test")


def candidates(texts: list[str]) -> list[Candidate]:
    return [Candidate(text) for text in texts]


def order(result) -> list[int]:
    return [document.index for document in result.ranking]


async def test_ranks_by_score_and_breaks_ties_by_input_order(backend) -> None:
    documents = ["a [[retrostar:40]]", "b [[retrostar:90]]", "c [[retrostar:40]]", "d [[retrostar:95]]"]
    result = await Reranker(backend).rerank("q", candidates(documents))
    assert order(result) == [3, 1, 0, 2]
    assert [document.score for document in result.ranking] == [95.0, 90.0, 40.0, 40.0]
    assert not result.degraded and result.pairs_scored == 4


async def test_unmarked_documents_get_the_scripted_hash_score(backend) -> None:
    result = await Reranker(backend).rerank("leaves", candidates(["chlorophyll", "photosynthesis"]))
    scores = {document.index: document.score for document in result.ranking}
    assert scores == {
        0: expected_score("leaves", "chlorophyll"),
        1: expected_score("leaves", "photosynthesis"),
    }


async def test_identical_documents_are_scored_once(backend, server) -> None:
    documents = ["same [[retrostar:60]]", "other [[retrostar:70]]", "same [[retrostar:60]]"]
    result = await Reranker(backend).rerank("q", candidates(documents))
    assert len(server.stats.prompts) == 2
    assert order(result) == [1, 0, 2]
    assert result.ranking[1].score == result.ranking[2].score == 60.0


async def test_samples_are_averaged_with_unparsed_counting_zero(backend, server) -> None:
    reranker = Reranker(backend, cascade=Cascade.single(4))
    result = await reranker.rerank("q", candidates(["x [[retrostar:70,80,90,100]]", "y [[noscore]]"]))
    assert server.stats.sampling[0]["n"] == 4
    scores = {document.index: document.score for document in result.ranking}
    assert scores == {0: 85.0, 1: 0.0}
    assert [sample.parsed for sample in result.ranking[1].samples] == [False] * 4


async def test_skip_policy_leaves_a_pair_without_parsed_samples_unscored(backend) -> None:
    reranker = Reranker(backend, unparsed_policy=UnparsedPolicy.SKIP)
    result = await reranker.rerank("q", candidates(["y [[noscore]]", "x [[retrostar:30]]"]))
    assert order(result) == [1, 0]
    assert result.ranking[1].score is None


async def test_cascade_rescores_the_top_candidates_with_more_samples(backend, server) -> None:
    documents = [
        "a [[retrostar:50,10]]",  # stage 1 (one sample): 50; stage 2 (four samples): 50,10,50,10 -> 30
        "b [[retrostar:80]]",
        "c [[retrostar:20]]",
        "d [[retrostar:99]]",  # beyond the first stage's 3 candidates: never scored
    ]
    result = await Reranker(backend, cascade=Cascade.parse("3@1,2@4")).rerank("q", candidates(documents))
    sent = [
        (sampling["n"], prompt.split("[Begin of Document]\n")[1][0])
        for prompt, sampling in zip(server.stats.prompts, server.stats.sampling, strict=True)
    ]
    assert sorted(sent) == sorted([(1, "a"), (1, "b"), (1, "c"), (4, "a"), (4, "b")])
    scores = {document.index: document.score for document in result.ranking}
    assert scores == {0: 30.0, 1: 80.0, 2: 20.0, 3: None}
    # One ranking by final score, as the engines sort by it; unplanned documents last, not "degraded".
    assert order(result) == [1, 0, 2, 3]
    assert not result.degraded


async def test_cache_hits_cost_no_model_call(backend, server) -> None:
    reranker = Reranker(backend, cache=ScoreCache())
    first = await reranker.rerank(
        "q", candidates(["a [[retrostar:10]]", "b [[retrostar:20]]"]), task=PRESETS["biology"]
    )
    calls = len(server.stats.prompts)
    second = await reranker.rerank(
        "q", candidates(["b [[retrostar:20]]", "a [[retrostar:10]]"]), task=PRESETS["biology"]
    )
    assert len(server.stats.prompts) == calls == 2
    assert second.cache_hits == 2 and second.pairs_scored == 0
    assert all(document.cached for document in second.ranking)
    assert [d.score for d in second.ranking] == [d.score for d in first.ranking]
    # Another task is another prompt: not a hit.
    await reranker.rerank("q", candidates(["a [[retrostar:10]]"]), task=PRESETS["economics"])
    assert len(server.stats.prompts) == 3


async def test_deadline_returns_finished_scores_first_and_flags_the_rest(backend) -> None:
    documents = [
        "slow one [[slow:5]]",
        "fast [[retrostar:10]]",
        "slow two [[slow:5]]",
        "fast [[retrostar:60]]",
    ]
    result = await Reranker(backend).rerank("q", candidates(documents), deadline=1.0)
    assert result.degraded and result.deadline_exceeded
    assert order(result) == [3, 1, 0, 2]
    assert [document.scored for document in result.ranking] == [True, True, False, False]
    assert result.model_seconds < 3


async def test_backend_errors_leave_the_rest_scored(backend) -> None:
    documents = ["boom [[error:500]]", "ok [[retrostar:70]]", "bad [[malformed]]"]
    result = await Reranker(backend).rerank("q", candidates(documents))
    assert result.degraded and not result.deadline_exceeded
    assert result.backend_errors == 2
    assert order(result) == [1, 0, 2]
    assert any("HTTP 500" in message for message in result.error_messages)
    assert all("boom" not in message for message in result.error_messages)  # no document text


async def test_all_pairs_are_in_flight_together() -> None:
    documents = [f"doc {i} [[retrostar:{i}]]" for i in range(24)]
    # A server of its own: slow requests cancelled by other tests may still be sleeping on the shared one.
    with ScriptedSGLangServer(latency=0.3) as server:
        result = await Reranker(SGLangGenerateBackend(server.url, model="m")).rerank(
            "q", candidates(documents)
        )
    assert server.stats.max_in_flight == 24
    assert result.model_seconds < 0.3 * 24 / 4  # far from sequential
    assert order(result)[0] == 23


async def test_from_settings_closes_what_it_built_and_leaves_a_given_backend_open(
    server: ScriptedSGLangServer, backend, tmp_path
) -> None:
    settings = RerankerSettings(
        backend_url=server.url, model="retro-star-test", cache_path=tmp_path / "scores.sqlite"
    )
    async with Reranker.from_settings(settings) as built:
        result = await built.rerank("q", [Candidate("a [[retrostar:30]]", id="doc-a")])
        assert await built.backend.ready()
    assert (result.ranking[0].score, result.ranking[0].candidate.id) == (30.0, "doc-a")
    with pytest.raises(RuntimeError, match="closed"):
        await built.backend.ready()  # its HTTP client is closed
    # The score went to the sqlite file the settings named: a new reranker serves it from there.
    async with Reranker.from_settings(settings, backend=backend) as borrowing:
        again = await borrowing.rerank("q", [Candidate("a [[retrostar:30]]")])
    assert again.cache_hits == 1 and again.pairs_scored == 0
    assert await backend.ready()  # a backend passed in stays the caller's


# --- What counts as a sample, retries, and what is cached ------------------------------------------


async def test_an_aborted_generation_is_retried_once_and_then_scored(backend, server) -> None:
    server.script(answers=lambda pair: ABORT if pair.attempt == 0 else 70)
    result = await Reranker(backend, cache=ScoreCache()).rerank("q", candidates(["doc"]))
    assert len(server.stats.prompts) == 2
    [document] = result.ranking
    assert document.score == 70.0 and not result.degraded
    assert result.retried_pairs == 1 and result.aborted_pairs == 0
    assert result.finish_reasons == {FinishReason.ABORT: 1, FinishReason.STOP: 1}


async def test_a_pair_aborted_twice_is_unscored_flagged_and_never_cached(backend, server) -> None:
    reranker = Reranker(backend, cache=ScoreCache())
    documents = ["gone [[retrostar:abort]]", "kept [[retrostar:40]]"]
    result = await reranker.rerank("q", candidates(documents))
    assert len(server.stats.prompts) == 3  # the aborted pair twice
    assert order(result) == [1, 0]
    aborted = result.ranking[1]
    assert aborted.score is None and aborted.unscored is Unscored.ABORTED
    assert [sample.finish_reason for sample in aborted.samples] == [FinishReason.ABORT]
    assert result.degraded and result.backend_errors == 1 and result.aborted_pairs == 1
    assert "aborted" in result.error_messages[0]
    again = await reranker.rerank("q", candidates(documents))
    assert again.cache_hits == 1 and len(server.stats.prompts) == 5


@pytest.mark.parametrize("failure", [503, "drop"])
async def test_a_failed_request_is_retried_once(backend, server, failure) -> None:
    server.script(failures=[failure])
    result = await Reranker(backend).rerank("q", candidates(["doc [[retrostar:55]]"]))
    assert result.ranking[0].score == 55.0 and not result.degraded
    assert result.retried_pairs == 1 and len(server.stats.requests) == 2


async def test_a_refused_request_is_not_retried(backend, server) -> None:
    result = await Reranker(backend).rerank("q", candidates(["doc [[error:400]]", "ok [[retrostar:5]]"]))
    assert len(server.stats.requests) == 2  # one each: a 400 would only come back
    assert result.ranking[1].unscored is Unscored.BACKEND_ERROR and result.retried_pairs == 0


async def test_a_pair_failing_twice_is_unscored(backend, server) -> None:
    server.script(failures=[503, 503])
    result = await Reranker(backend).rerank("q", candidates(["doc [[retrostar:55]]"]))
    assert result.ranking[0].unscored is Unscored.BACKEND_ERROR
    assert result.degraded and result.retried_pairs == 1 and "HTTP 503" in result.error_messages[0]


@pytest.mark.parametrize("marker", ["length", "noscore"])
async def test_cut_or_scoreless_samples_count_per_the_policy_but_are_never_cached(
    backend, server, marker
) -> None:
    reranker = Reranker(backend, cache=ScoreCache(), cascade=Cascade.single(2))
    documents = [f"half [[retrostar:80,{marker}]]", "full [[retrostar:60]]"]
    first = await reranker.rerank("q", candidates(documents))
    scores = {document.index: document.score for document in first.ranking}
    assert scores == {0: 40.0, 1: 60.0}  # zero: the unparsed sample counts 0
    half = next(document for document in first.ranking if document.index == 0)
    expected_reason = FinishReason.LENGTH if marker == "length" else FinishReason.STOP
    assert [sample.finish_reason for sample in half.samples] == [FinishReason.STOP, expected_reason]
    assert first.unparsed_samples == 1 and not first.degraded
    second = await reranker.rerank("q", candidates(documents))
    assert second.cache_hits == 1 and second.pairs_scored == 1  # the half-scored pair is asked again
    assert len(server.stats.prompts) == 3


async def test_a_length_cut_sample_is_unparsed_even_with_a_score_in_its_text(backend) -> None:
    # The scripted analysis opens by quoting the query: a premature <score> in an unfinished answer.
    reranker = Reranker(backend, sampling=SamplingParams(max_new_tokens=20))
    result = await reranker.rerank("<score>10</score>", candidates(["[[retrostar:90]]"]))
    [sample] = result.ranking[0].samples
    assert "<score>10</score>" in sample.text
    assert sample.finish_reason is FinishReason.LENGTH and sample.score is None
    assert result.ranking[0].score == 0.0 and result.unparsed_samples == 1


async def test_cached_non_scores_of_older_versions_are_scored_again(backend) -> None:
    cache = ScoreCache()
    key = cache_key(backend.model, DEFAULT_TASK, "q", "doc [[retrostar:75]]", 1)
    await cache.put_many({key: (Sample("cut short", None),)})  # what a server abort left there before
    result = await Reranker(backend, cache=cache).rerank("q", candidates(["doc [[retrostar:75]]"]))
    assert result.cache_hits == 0 and result.ranking[0].score == 75.0
    assert [sample.score for sample in (await cache.get_many([key]))[key]] == [75]


# --- The cascade: the reference's order, scores the engines can sort by -----------------------------


async def test_cascade_ranks_promoted_documents_first_whatever_their_refined_score(backend) -> None:
    documents = [
        "a [[retrostar:90,10]]",  # stage 1: 90, promoted; stage 2 (two samples): 50
        "b [[retrostar:80]]",  # stage 1: 80, not promoted: stays below a although 80 > 50
        "c [[retrostar:20]]",
        "d [[retrostar:99]]",  # beyond the first stage
    ]
    result = await Reranker(backend, cascade=Cascade.parse("3@1,1@2")).rerank("q", candidates(documents))
    assert order(result) == [0, 1, 2, 3]
    assert [(document.score, document.stage) for document in result.ranking] == [
        (50.0, 2),
        (80.0, 1),
        (20.0, 1),
        (None, 0),
    ]
    relevances = [document.relevance for document in result.ranking]
    assert relevances == [0.75, 0.4, 0.1, 0.0]
    assert result.ranking[3].unscored is Unscored.NOT_PLANNED


async def test_cascade_relevance_keeps_the_order_when_an_engine_sorts_by_it(backend, server) -> None:
    # Each stage asks again for the same prompt: the scripted answer is the stage's score.
    by_stage = {"a": [100, 100, 0], "b": [100, 100], "c": [50]}
    server.script(answers=lambda pair: by_stage[pair.document][pair.attempt])
    cascade = Cascade.parse("3@1,2@1,1@1")  # three stages: bands of a third
    result = await Reranker(backend, cascade=cascade).rerank("q", candidates(["a", "b", "c"]))
    # a reached the last stage and scored 0 there; b stopped at stage 2 with 100: a still comes first.
    assert [(document.index, document.stage, document.score) for document in result.ranking] == [
        (0, 3, 0.0),
        (1, 2, 100.0),
        (2, 1, 50.0),
    ]
    relevances = [document.relevance for document in result.ranking]
    assert relevances[0] > relevances[1] > relevances[2] > 0
    assert sorted(result.ranking, key=lambda document: -document.relevance) == result.ranking


def test_relevance_is_the_retrostar_score_over_100_without_a_cascade() -> None:
    assert all(relevance(score, 1, 1) == score / 100 for score in (0, 12.5, 33.333333333333336, 77, 100))
    assert relevance(100, 1, 2) < relevance(0, 2, 2) == 0.5


async def test_a_single_stage_answers_score_over_100_exactly(backend) -> None:
    result = await Reranker(backend, cascade=Cascade.single(3)).rerank(
        "q", candidates(["[[retrostar:10,20,40]]", "[[retrostar:99]]"])
    )
    assert [document.relevance for document in result.ranking] == [0.99, (70 / 3) / 100]


# --- Fitting the served context -------------------------------------------------------------------


def fitted_backend(server: ScriptedSGLangServer, context_length: int) -> SGLangGenerateBackend:
    server.script(context_length=context_length)
    backend = SGLangGenerateBackend(server.url, model="retro-star-test")
    backend.context_length = context_length  # what the server reports
    return backend


async def test_a_document_longer_than_the_served_context_is_cut_to_fit_and_flagged(server) -> None:
    server.reset()
    backend = fitted_backend(server, 4000)
    long_document = "[[retrostar:65]] " + "chlorophyll pigments absorb light. " * 1000
    documents = [long_document, "short [[retrostar:30]]"]
    reranker = Reranker(backend, sampling=SamplingParams(max_new_tokens=256))
    result = await reranker.rerank("why are leaves green", candidates(documents))
    assert [(document.score, document.truncated) for document in result.ranking] == [
        (65.0, True),
        (30.0, False),
    ]
    assert not result.degraded and result.truncated_documents == 1
    # The query-side prefix is the same for both documents: SGLang's prefix cache reuses it.
    prefixes = {prompt.split("[Begin of Document]\n")[0] for prompt in server.stats.prompts}
    assert len(prefixes) == 1
    await backend.aclose()


async def test_without_a_served_context_the_configured_one_is_fitted(server) -> None:
    server.reset()
    server.script(context_length=4000)
    backend = SGLangGenerateBackend(server.url, model="retro-star-test")  # reports no context length
    reranker = Reranker(
        backend, sampling=SamplingParams(max_new_tokens=256), truncation=Truncation(context_length=4000)
    )
    result = await reranker.rerank("q", candidates(["[[retrostar:45]] " + "word " * 20_000]))
    assert result.ranking[0].score == 45.0 and result.ranking[0].truncated
    await backend.aclose()


async def test_a_query_too_long_for_the_context_is_cut_once_for_every_document(server) -> None:
    server.reset()
    backend = fitted_backend(server, 4000)
    reranker = Reranker(backend, sampling=SamplingParams(max_new_tokens=256))
    query = "why " * 5000
    result = await reranker.rerank(query, candidates(["a [[retrostar:10]]", "b [[retrostar:20]]"]))
    assert result.query_truncated and not result.degraded
    assert [document.score for document in result.ranking] == [20.0, 10.0]
    queries = {
        prompt.split("[Begin of Query]\n")[1].split("\n[End of Query]")[0] for prompt in server.stats.prompts
    }
    assert len(queries) == 1 and query.startswith(queries.pop())
    await backend.aclose()


async def test_explicit_truncation_still_applies_and_is_flagged(backend, server) -> None:
    result = await Reranker(backend, truncation=Truncation(max_chars=20)).rerank(
        "q", candidates(["[[retrostar:30]] and a long tail", "[[retrostar:10]]"])
    )
    assert [document.truncated for document in result.ranking] == [True, False]
    assert server.stats.prompts[0].count("long tail") == 0


@pytest.mark.parametrize("query", ["q", 'é "quoted" \n', "lone \ud800", "x" * 10_000])
def test_keys_hashed_once_per_query_are_the_keys_caches_already_hold(query: str) -> None:
    # The key as every earlier version computed it, document by document: sqlite files keep working.
    def historic_key(document: str, samples: int) -> str:
        document_hash = hashlib.sha256(document.encode("utf-8", "surrogatepass")).hexdigest()
        material = json.dumps(
            ["m", PROMPT_VERSION, PRESETS["biology"].fingerprint, query, document_hash, samples],
            ensure_ascii=False,
        )
        return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()

    keys = query_cache_keys("m", PRESETS["biology"], query)
    for document, samples in [("", 1), ("doc", 16), ("\ud800é", 4)]:
        assert keys(document, samples) == historic_key(document, samples)
