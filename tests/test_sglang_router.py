"""The real SGLang router (sglang-router 0.3.2, the `sglang_router` fixture) in front of scripted workers.

These prove what issue 11's scale-out builds on: with `--policy manual` the requests that carry one
`X-SMG-Routing-Key` stay on one worker while different keys spread; a worker that dies mid-load costs no
request, not even one alone on it, given a circuit breaker that opens within the retries;
`/readiness` follows the workers. They also hold the scripted server's router flavour to what the real
router answers. Facts and commands: docs/router-notes.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from retrostar_search.prompts import ChatFormat, apply_chat_template, render_prompt
from retrostar_search.tasks import PRESETS
from tests.conftest import SGLangRouter
from tests.scripted_sglang import ScriptedSGLangServer
from tests.waiting import until

RouterFactory = Callable[..., SGLangRouter]
# The invocation docs/router-notes.md recommends: query affinity by routing key, and a circuit breaker
# that opens before the retries run out (3 < --retry-max-retries 5), so a retry for a key whose worker
# died reaches another worker (with the default 10, a lone request could be retried on the dead worker
# until it failed).
MANUAL = ("--policy", "manual", "--assignment-mode", "min_load", "--cb-failure-threshold", "3")


def prompt(query: str, document: str) -> str:
    return apply_chat_template(render_prompt(PRESETS["biology"], query, document).text, ChatFormat.QWEN3)


async def _generate(client: httpx.AsyncClient, query: str, document: str, key: str) -> httpx.Response:
    return await client.post(
        "/generate",
        json={"text": prompt(query, document), "sampling_params": {"n": 1}},
        headers={"X-SMG-Routing-Key": key},
    )


async def _every_worker_busy(router: SGLangRouter) -> None:
    """Wait until every worker has a request in flight: the router spread the keys."""
    await until(lambda: all(worker.stats.in_flight for worker in router.workers), "the router did not spread")


def _workers_by_key(router: SGLangRouter) -> dict[str, set[int]]:
    placement: dict[str, set[int]] = {}
    for index, worker in enumerate(router.workers):
        for key in worker.stats.routing_keys:
            placement.setdefault(key, set()).add(index)
    return placement


async def test_manual_policy_keeps_each_key_on_one_worker_and_spreads_keys(
    sglang_router: RouterFactory,
) -> None:
    router = sglang_router(2, *MANUAL)
    for worker in router.workers:
        worker.script(latency=0.2)
    keys = [f"query-{i}" for i in range(12)]
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
        for round_number in range(3):  # each round: every key at once, as one rerank's pairs arrive
            responses = await asyncio.gather(
                *(_generate(client, key, f"document {round_number}", key) for key in keys)
            )
            assert all(response.status_code == 200 for response in responses)

    placement = _workers_by_key(router)
    assert sorted(placement) == sorted(keys)
    assert all(len(workers) == 1 for workers in placement.values()), placement
    keys_per_worker = [sum(1 for workers in placement.values() if index in workers) for index in (0, 1)]
    assert min(keys_per_worker) >= 3, keys_per_worker


def test_router_forwards_generation_and_an_allow_list_of_headers(sglang_router: RouterFactory) -> None:
    router = sglang_router(1, *MANUAL)
    worker = router.workers[0]
    headers = {"X-SMG-Routing-Key": "k", "X-Request-Id": "trace-7", "X-Custom": "dropped"}
    body = {"text": prompt("q", "[[retrostar:61]] d"), "sampling_params": {"n": 1}, "rid": "pair-9"}

    response = httpx.post(f"{router.url}/generate", json=body, headers=headers, timeout=30)

    assert response.status_code == 200 and response.headers["x-request-id"] == "trace-7"
    answer = response.json()
    assert answer["text"].endswith("<score>\n61\n</score>") and answer["meta_info"]["id"] == "pair-9"
    seen = worker.stats.requests[-1]
    assert seen.headers["x-smg-routing-key"] == "k" and seen.headers["x-request-id"] == "trace-7"
    assert "x-custom" not in seen.headers
    # The router re-serializes its typed request: a field it does not know never reaches the worker.
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "rid": "lost", "max_tokens": 8}
    assert httpx.post(f"{router.url}/v1/chat/completions", json=chat, timeout=30).status_code == 200
    forwarded = worker.stats.requests[-1].body
    assert "rid" not in forwarded and forwarded["max_completion_tokens"] == 8


async def test_a_worker_killed_mid_load_costs_no_request(sglang_router: RouterFactory) -> None:
    router = sglang_router(2, *MANUAL)
    for worker in router.workers:
        worker.script(latency=0.5)
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
        pending = [
            asyncio.create_task(_generate(client, f"query {key}", f"document {i}", f"key-{key}"))
            for key in range(6)
            for i in range(3)
        ]
        await _every_worker_busy(router)
        router.workers[1].kill()
        responses = await asyncio.gather(*pending)

    failed = [response.text[:300] for response in responses if response.status_code != 200]
    assert failed == []
    assert all(response.json()["meta_info"]["finish_reason"]["type"] == "stop" for response in responses)
    router.wait_healthy(1, timeout=10)


async def test_a_lone_request_on_a_killed_worker_is_retried_on_another(sglang_router: RouterFactory) -> None:
    # One request per key: the retries of the dead worker's request all go back to it while its circuit
    # breaker is closed, so only a breaker that opens within the retries saves it (see MANUAL).
    router = sglang_router(2, *MANUAL)
    for worker in router.workers:
        worker.script(latency=2.0)
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
        # One after the other: min_load can only tell the workers apart once the first is in flight (two
        # keys arriving together may both land on one worker).
        pending = [asyncio.create_task(_generate(client, "q0", "d", "lone-0"))]
        await until(lambda: any(worker.stats.in_flight for worker in router.workers))
        pending.append(asyncio.create_task(_generate(client, "q1", "d", "lone-1")))
        await _every_worker_busy(router)
        router.workers[1].kill()
        responses = await asyncio.gather(*pending)

    assert [response.text[:300] for response in responses if response.status_code != 200] == []
    assert router.workers[0].stats.routing_keys.count(router.workers[1].stats.routing_keys[0]) == 1


def test_readiness_follows_the_workers(sglang_router: RouterFactory) -> None:
    router = sglang_router(2, *MANUAL)
    assert router.readiness().json() == {"status": "ready", "healthy_workers": 2, "total_workers": 2}
    for worker in router.workers:
        worker.kill()
    router.wait_healthy(0, timeout=10)

    ready = router.readiness()
    assert ready.status_code == 503
    assert ready.json() == {"status": "not ready", "reason": "insufficient healthy workers"}
    assert httpx.get(f"{router.url}/health").text == "OK"  # liveness only

    router.workers[0].start()
    router.wait_healthy(1, timeout=10)


# ------------------------------------------------------------------------------------------------
# The scripted server's router flavour answers as the real router does
# ------------------------------------------------------------------------------------------------

PROBES: list[tuple[str, str, dict | None]] = [
    ("GET", "/readiness", None),
    ("GET", "/health", None),
    ("GET", "/liveness", None),
    ("GET", "/health_generate", None),
    ("GET", "/v1/models", None),
    ("GET", "/get_model_info", None),
    ("GET", "/model_info", None),
    ("GET", "/server_info", None),
    ("POST", "/abort_request", {"rid": "x"}),
    ("POST", "/generate", {"text": ["a", "b"], "sampling_params": {"n": 1}}),
    ("POST", "/generate", {"text": "a", "rid": ["a"]}),
    ("POST", "/generate", {"text": "plain prompt", "sampling_params": {"n": 1}}),
]


def _shape(response: httpx.Response) -> tuple[int, object]:
    """Status and the body's shape: a JSON body's keys (and error code), or a text body's first words."""
    try:
        body = response.json()
    except ValueError:
        return response.status_code, " ".join(response.text.split()[:8])
    if isinstance(body, dict):
        error = body.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        data = body.get("data")
        if isinstance(data, list):
            return response.status_code, (sorted(body), [sorted(card) for card in data])
        return response.status_code, (sorted(body), code, body.get("status"))
    return response.status_code, type(body).__name__


@pytest.mark.parametrize("live_workers", [1, 0])
def test_router_flavour_answers_as_the_real_router(sglang_router: RouterFactory, live_workers: int) -> None:
    router = sglang_router(1, *MANUAL)
    if live_workers == 0:
        router.workers[0].kill()
    # A health check that failed on a loaded machine would leave the real router with no live worker.
    router.wait_healthy(live_workers, timeout=10)
    with ScriptedSGLangServer(flavor="router", live_workers=live_workers) as double:
        for method, path, body in PROBES:
            real = httpx.request(method, f"{router.url}{path}", json=body, timeout=30)
            scripted = httpx.request(method, f"{double.url}{path}", json=body, timeout=30)
            assert _shape(scripted) == _shape(real), (method, path, real.text[:300])
