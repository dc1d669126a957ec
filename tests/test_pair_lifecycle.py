"""What becomes of a pair's work on the model server: shared by concurrent reranks, aborted when nobody
waits for it any more, or left to finish into the cache. Each test has a scripted server of its own, so
no slow request of another test is still decoding on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from retrostar_search.backends.sglang_http import SGLangGenerateBackend
from retrostar_search.cache import ScoreCache
from retrostar_search.reranker import Candidate, Reranker, Unscored
from retrostar_search.scoring import Cascade
from retrostar_search.settings import OnDeadline
from retrostar_search.tasks import PRESETS
from tests.scripted_sglang import ScriptedSGLangServer


@pytest.fixture
async def server() -> AsyncIterator[ScriptedSGLangServer]:
    # The server notices a client that went away within 50 ms (SGLang checks every 4 s).
    scripted = ScriptedSGLangServer(disconnect_check_s=0.05)
    await asyncio.to_thread(scripted.start)
    yield scripted
    await asyncio.to_thread(scripted.stop)


@pytest.fixture
async def backend(server: ScriptedSGLangServer) -> AsyncIterator[SGLangGenerateBackend]:
    backend = SGLangGenerateBackend(server.url)
    yield backend
    await backend.aclose()


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def freed(server: ScriptedSGLangServer) -> list[str]:
    """The samples the server stopped for a client that gave up: aborted by their rid (a one-sample
    request on an SGLang worker) or found with their connection closed."""
    return [*server.stats.aborted, *server.stats.disconnected]


def candidates(*texts: str) -> list[Candidate]:
    return [Candidate(text) for text in texts]


SLOW = candidates("one [[slow:5]] [[retrostar:10]]", "two [[slow:5]] [[retrostar:20]]")


# --- The deadline -------------------------------------------------------------------------------


async def test_pairs_abandoned_at_the_deadline_are_aborted(server, backend) -> None:
    result = await Reranker(backend).rerank("q", SLOW, deadline=0.3)
    assert result.deadline_exceeded and result.deadline_pairs == {OnDeadline.ABORT: 2}
    assert [document.unscored for document in result.ranking] == [Unscored.DEADLINE] * 2
    await eventually(lambda: not server.live_rids())  # well before the 5 s the pairs would decode
    assert len(freed(server)) == 2


async def test_finish_lets_pairs_complete_into_the_cache_for_the_next_search(server, backend) -> None:
    reranker = Reranker(backend, cache=ScoreCache(), on_deadline=OnDeadline.FINISH)
    finished: list[bool] = []
    reranker.on_background_finish = finished.append
    documents = candidates("fast [[retrostar:30]]", "slow [[slow:1.5]] [[retrostar:90]]")

    first = await reranker.rerank("q", documents, deadline=0.7)
    assert first.degraded and first.deadline_pairs == {OnDeadline.FINISH: 1}
    assert [document.score for document in first.ranking] == [30.0, None]
    await eventually(lambda: finished == [True], timeout=5.0)
    assert not freed(server)

    second = await reranker.rerank("q", documents, deadline=0.7)
    assert not second.degraded and second.cache_hits == 2
    assert [document.score for document in second.ranking] == [90.0, 30.0]
    assert server.stats.pairs == 2


async def test_background_pairs_are_bounded_and_the_rest_aborted(server, backend) -> None:
    reranker = Reranker(backend, on_deadline=OnDeadline.FINISH, max_background_pairs=1)
    documents = candidates(*(f"{i} [[slow:0.8]] [[retrostar:{i}]]" for i in range(3)))
    result = await reranker.rerank("q", documents, deadline=0.2)
    assert result.deadline_pairs == {OnDeadline.FINISH: 1, OnDeadline.ABORT: 2}
    await eventually(lambda: len(freed(server)) == 2)
    await reranker.aclose()


async def test_closing_the_reranker_aborts_what_finishes_in_the_background(server, backend) -> None:
    reranker = Reranker(backend, on_deadline=OnDeadline.FINISH, owns_backend=False)
    await reranker.rerank("q", SLOW, deadline=0.2)
    await reranker.aclose()
    await eventually(lambda: not server.live_rids())
    assert len(freed(server)) == 2


# --- A caller that hangs up -----------------------------------------------------------------------


async def test_a_cancelled_rerank_aborts_its_pairs(server, backend) -> None:
    rerank = asyncio.create_task(Reranker(backend).rerank("q", SLOW))
    await eventually(lambda: len(server.live_rids()) == 2)
    rerank.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rerank
    await eventually(lambda: not server.live_rids())
    assert len(freed(server)) == 2


# --- In-flight de-duplication ---------------------------------------------------------------------


async def test_concurrent_reranks_of_the_same_pairs_score_them_once(server, backend) -> None:
    reranker = Reranker(backend)
    documents = candidates("a [[slow:0.3]] [[retrostar:40]]", "b [[slow:0.3]] [[retrostar:60]]")
    first, second = await asyncio.gather(
        reranker.rerank("q", documents), reranker.rerank("q", [*documents, Candidate("c [[retrostar:5]]")])
    )
    assert server.stats.pairs == 3
    assert [document.score for document in first.ranking] == [60.0, 40.0]
    assert [document.score for document in second.ranking] == [60.0, 40.0, 5.0]
    assert first.pairs_scored + second.pairs_scored == 3
    assert first.inflight_joins + second.inflight_joins == 2


async def test_pairs_of_another_query_task_or_sample_count_are_never_joined(server, backend) -> None:
    reranker = Reranker(backend)  # no score cache: pairs in flight are told apart without cache keys
    document = candidates("a [[slow:0.3]] [[retrostar:40]]")
    results = await asyncio.gather(
        reranker.rerank("q", document),
        reranker.rerank("another q", document),
        reranker.rerank("q", document, task=PRESETS["biology"]),
        reranker.rerank("q", document, cascade=Cascade.single(2)),
    )
    assert [result.inflight_joins for result in results] == [0, 0, 0, 0]
    assert server.stats.pairs == 4 and server.stats.samples == 5


async def test_one_waiter_hanging_up_leaves_the_others_work_running(server, backend) -> None:
    reranker = Reranker(backend)
    documents = candidates("shared [[slow:0.5]] [[retrostar:70]]")
    leaving = asyncio.create_task(reranker.rerank("q", documents))
    staying = asyncio.create_task(reranker.rerank("q", documents))
    await eventually(lambda: len(server.live_rids()) == 1)
    leaving.cancel()
    result = await staying
    assert result.ranking[0].score == 70.0 and not result.degraded
    assert server.stats.pairs == 1 and not freed(server)


async def test_each_waiter_keeps_its_own_deadline(server, backend) -> None:
    reranker = Reranker(backend)
    documents = candidates("shared [[slow:0.5]] [[retrostar:70]]")
    hurried, patient = await asyncio.gather(
        reranker.rerank("q", documents, deadline=0.1), reranker.rerank("q", documents)
    )
    assert hurried.deadline_exceeded and hurried.ranking[0].unscored is Unscored.DEADLINE
    assert not hurried.deadline_pairs  # neither aborted nor left behind: the other rerank waits for it
    assert patient.ranking[0].score == 70.0 and not patient.degraded
    assert server.stats.pairs == 1 and not freed(server)


async def test_a_joined_pair_is_stored_once_and_then_served_from_the_cache(server, backend) -> None:
    reranker = Reranker(backend, cache=ScoreCache())
    documents = candidates("x [[slow:0.2]] [[retrostar:33]]")
    first = asyncio.create_task(reranker.rerank("q", documents))
    await eventually(lambda: len(server.live_rids()) == 1)
    second = await reranker.rerank("q", documents)
    assert (await first).ranking[0].score == second.ranking[0].score == 33.0
    third = await reranker.rerank("q", documents)
    assert third.cache_hits == 1 and server.stats.pairs == 1
