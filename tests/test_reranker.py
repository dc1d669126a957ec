"""The reranker against the scripted SGLang server over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retrostar_search.backends.sglang_http import SGLangGenerateBackend
from retrostar_search.cache import ScoreCache
from retrostar_search.reranker import Candidate, Reranker
from retrostar_search.scoring import Cascade, UnparsedPolicy
from retrostar_search.settings import RerankerSettings
from retrostar_search.tasks import PRESETS
from tests.scripted_sglang import MODEL, ScriptedSGLangServer, expected_score


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedSGLangServer]:
    with ScriptedSGLangServer() as scripted:
        yield scripted


@pytest.fixture
def backend(server: ScriptedSGLangServer):
    server.reset()
    return SGLangGenerateBackend(server.url)


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
        result = await Reranker(SGLangGenerateBackend(server.url)).rerank("q", candidates(documents))
    assert server.stats.max_in_flight == 24
    assert result.model_seconds < 0.3 * 24 / 4  # far from sequential
    assert order(result)[0] == 23


async def test_from_settings_closes_what_it_built_and_leaves_a_given_backend_open(
    server: ScriptedSGLangServer, backend, tmp_path
) -> None:
    settings = RerankerSettings(backend_url=server.url, model=MODEL, cache_path=tmp_path / "scores.sqlite")
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
