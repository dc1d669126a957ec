"""The HTTP backends' client: a bounded keep-alive pool that serves a warm burst in one backend latency,
prompts rendered only once a slot is free, request timeouts without a timer per request, one retry for
a pooled connection the server had closed, cancellation that frees the server's work, and the routing key
that keeps a query on one worker behind the real SGLang router."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from retrostar_search.backends import sglang_http
from retrostar_search.backends._discovery import ServerKind
from retrostar_search.backends.base import SamplingParams
from retrostar_search.backends.routing import routing_key
from retrostar_search.backends.sglang_http import OpenAIChatBackend, SGLangGenerateBackend
from retrostar_search.errors import BackendError
from retrostar_search.prompts import RenderedPrompt, render_prefix, render_prompt
from retrostar_search.reranker import Candidate, Reranker
from retrostar_search.scoring import Cascade
from retrostar_search.tasks import DEFAULT_TASK, PRESETS
from tests.conftest import SGLangRouter
from tests.scripted_sglang import MODEL, ScriptedSGLangServer, free_port
from tests.sglang_router import RECOMMENDED_FLAGS
from tests.waiting import until

PROMPT = render_prompt(PRESETS["biology"], "why do leaves fall", "abscission layer [[retrostar:77]]")


def prompts(count: int, query: str = "q") -> list[RenderedPrompt]:
    return [render_prompt(PRESETS["biology"], query, f"doc {i} [[retrostar:{i}]]") for i in range(count)]


# --- The pool -------------------------------------------------------------------------------------


async def test_a_warm_burst_reuses_the_pools_connections_and_takes_one_latency(
    scripted_sglang, http_backends
) -> None:
    # Before: a fresh connection per pair (a keep-alive httpx pool served a burst in 3-4.5 latencies).
    scripted_sglang.script(latency=0.3)
    backend = await http_backends()
    burst = prompts(40)
    await asyncio.gather(*(backend.generate(prompt, 1, SamplingParams()) for prompt in burst))
    warm = set(map(id, scripted_sglang.connections()))
    scripted_sglang.stats.reset()
    await asyncio.gather(*(backend.generate(prompt, 1, SamplingParams()) for prompt in burst))
    assert len(warm) >= 40
    assert set(map(id, scripted_sglang.connections())) == warm  # no connection opened or closed
    # One latency: all forty at once on the warm connections (wall time would flake on a busy machine).
    assert scripted_sglang.stats.max_in_flight == len(burst)


async def test_prompts_are_rendered_only_once_a_slot_is_free_and_connections_are_bounded(
    scripted_sglang, http_backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted_sglang.script(latency=0.2)
    backend = await http_backends(max_concurrency=2)
    rendered: list[str] = []
    render = sglang_http.apply_chat_template
    monkeypatch.setattr(
        sglang_http,
        "apply_chat_template",
        lambda text, chat_format: rendered.append(text) or render(text, chat_format),
    )
    tasks = [asyncio.create_task(backend.generate(prompt, 1, SamplingParams())) for prompt in prompts(10)]
    await until(lambda: scripted_sglang.stats.in_flight == 2)
    assert len(rendered) == 2  # the other eight wait unrendered
    await asyncio.gather(*tasks)
    assert len(rendered) == 10 and scripted_sglang.stats.max_in_flight == 2


async def test_a_burst_arms_no_timer_per_request(scripted_sglang, http_backends) -> None:
    scripted_sglang.script(latency=0.5)
    backend = await http_backends(request_timeout=60.0)
    loop = asyncio.get_running_loop()
    timers_before = len(loop._scheduled)  # type: ignore[attr-defined]  # the stdlib loop's timer heap
    tasks = [asyncio.create_task(backend.generate(prompt, 1, SamplingParams())) for prompt in prompts(100)]
    await until(lambda: scripted_sglang.stats.in_flight == 100)
    timers = len(loop._scheduled) - timers_before  # type: ignore[attr-defined]
    await asyncio.gather(*tasks)
    assert timers <= 3, f"{timers} timers for 100 requests in flight"


async def test_a_request_past_its_timeout_fails_and_is_aborted(scripted_sglang, http_backends) -> None:
    backend = await http_backends(request_timeout=0.2)
    prompt = render_prompt(PRESETS["biology"], "q", "[[slow:3]]")
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"timed out after 0\.2 s"):
        await backend.generate(prompt, 1, SamplingParams(), rid="slow-1")
    assert time.monotonic() - started < 2.0  # the answer would take 3 s
    await until(lambda: scripted_sglang.stats.aborted == ["slow-1"])
    # The same task cancelled later by someone else is cancelled, not timed out again.
    this_task = asyncio.current_task()
    assert this_task is not None
    asyncio.get_running_loop().call_later(0.05, this_task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await backend.generate(prompt, 1, SamplingParams(), rid="slow-2")
    this_task.uncancel()


async def test_a_pooled_connection_the_server_closed_is_sent_again_once(http_backends) -> None:
    with ScriptedSGLangServer() as scripted:
        backend = await http_backends(url=scripted.url)
        await backend.generate(PROMPT, 1, SamplingParams())  # its connection stays in the pool
        # The server closes its connections; this event loop is blocked meanwhile and has not seen it,
        # as when a server closes an idle connection just as a request takes it from the pool.
        scripted.stop()
        scripted.start()
        [generation] = await backend.generate(PROMPT, 1, SamplingParams())
        assert generation.text.endswith("<score>\n77\n</score>")
        assert backend._client.stale_retries == 1
        assert scripted.stats.calls["POST /generate"] == 2  # one before, one on the new connection


async def test_a_request_dropped_on_a_new_connection_is_not_sent_again(
    scripted_sglang, http_backends
) -> None:
    # The server may have generated for it: only a connection closed while idle proves it did not.
    backend = await http_backends()
    scripted_sglang.script(failures=["drop"])
    with pytest.raises(BackendError, match=r"unreachable \(ServerDisconnectedError\)"):
        await backend.generate(PROMPT, 1, SamplingParams())
    assert scripted_sglang.stats.calls["POST /generate"] == 1


async def test_pairs_queued_behind_a_failed_discovery_do_not_ask_again(http_backends) -> None:
    # A server that is down fails every pair at once, with one attempt to ask it, not one per pair (each
    # could wait for a connect timeout).
    backend = await http_backends(url=f"http://127.0.0.1:{free_port()}")
    pairs = [backend.generate(prompt, 1, SamplingParams()) for prompt in prompts(20)]
    failures = await asyncio.gather(*pairs, return_exceptions=True)
    assert all(isinstance(failure, BackendError) and "unreachable" in str(failure) for failure in failures)
    assert backend._failed_discoveries == 1


# --- Cancellation frees the server's work ---------------------------------------------------------


async def _cancel_when_live(server: ScriptedSGLangServer, task: asyncio.Task[Any], samples: int) -> None:
    await until(lambda: len(server.live_rids()) == samples)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_cancelling_one_sample_on_an_sglang_worker_aborts_it_by_rid(
    scripted_sglang, http_backends
) -> None:
    scripted_sglang.script(latency=10)  # SGLang would notice the closed connection only after 4 s
    backend = await http_backends()
    task = asyncio.create_task(backend.generate(PROMPT, 1, SamplingParams(), rid="pair-7"))
    await _cancel_when_live(scripted_sglang, task, 1)
    await until(lambda: not scripted_sglang.live_rids(), timeout=1.0)
    assert scripted_sglang.stats.abort_requests == [{"rid": "pair-7"}] and scripted_sglang.stats.aborted == [
        "pair-7"
    ]


@pytest.mark.parametrize(
    ("flavor", "backend_class", "samples"),
    [
        ("sglang", SGLangGenerateBackend, 3),  # n > 1: SGLang runs the samples under rids of its own
        ("router", SGLangGenerateBackend, 1),  # the router has no /abort_request
        ("vllm", OpenAIChatBackend, 1),
        ("sglang", OpenAIChatBackend, 2),
    ],
)
async def test_cancelling_elsewhere_closes_the_request_and_the_server_stops_it(
    scripted_sglang, http_backends, flavor, backend_class, samples
) -> None:
    scripted_sglang.script(flavor=flavor, latency=10, disconnect_check_s=0.1)
    backend = await http_backends(backend_class)
    task = asyncio.create_task(backend.generate(PROMPT, samples, SamplingParams()))
    await _cancel_when_live(scripted_sglang, task, samples)
    await until(lambda: not scripted_sglang.live_rids(), timeout=2.0)
    assert len(scripted_sglang.stats.disconnected) == samples
    assert scripted_sglang.stats.calls["POST /abort_request"] == 0  # nothing it could name


# --- Query affinity -------------------------------------------------------------------------------


async def test_every_request_of_a_rerank_carries_its_querys_routing_key(
    scripted_sglang, http_backends
) -> None:
    backend = await http_backends()
    reranker = Reranker(backend, cascade=Cascade.parse("4@1,2@2"))
    documents = [Candidate(f"doc {i} [[retrostar:{10 * i}]]") for i in range(4)]
    first = await reranker.rerank("first query", documents)
    second = await reranker.rerank("second query", documents)
    assert first.pairs_scored == second.pairs_scored == 6  # a single worker ignores the header
    keys = scripted_sglang.stats.routing_keys
    assert (
        keys
        == [routing_key(MODEL, render_prefix(DEFAULT_TASK, "first query"))] * 6
        + [routing_key(MODEL, render_prefix(DEFAULT_TASK, "second query"))] * 6
    )
    assert keys[0] != keys[-1] and "first" not in keys[0]  # the key tells nothing of the query


async def test_through_the_real_router_each_query_stays_on_one_worker_and_queries_spread(
    sglang_router: Callable[..., SGLangRouter],
) -> None:
    router = sglang_router(2, *RECOMMENDED_FLAGS)
    for worker in router.workers:
        worker.script(latency=0.2)
    queries = [f"query {i}" for i in range(8)]
    documents = [Candidate(f"doc {i} [[retrostar:{10 * i}]]") for i in range(6)]
    async with Reranker(SGLangGenerateBackend(router.url)) as reranker:
        assert reranker.backend.served is not None and reranker.backend.served.server is ServerKind.ROUTER
        results = await asyncio.gather(*(reranker.rerank(query, documents) for query in queries))
    assert all([doc.index for doc in result.ranking] == [5, 4, 3, 2, 1, 0] for result in results)
    placement: dict[str, set[int]] = {}
    for index, worker in enumerate(router.workers):
        for key in worker.stats.routing_keys:
            placement.setdefault(key, set()).add(index)
    assert len(placement) == len(queries)
    assert all(len(workers) == 1 for workers in placement.values())  # every pair of a query on one worker
    assert {index for workers in placement.values() for index in workers} == {0, 1}  # queries spread
