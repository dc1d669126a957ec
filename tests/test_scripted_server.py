"""The scripted model server answers in the real servers' shapes.

These guard the test double against drift from the servers it stands for; each expectation names the
source it was read from (versions and paths are listed in tests/scripted_sglang.py): SGLang 0.5.23,
vLLM 0.34.0, sglang-router 0.3.2. tests/test_sglang_router.py checks the router flavour against the
real router binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from retrostar_search.prompts import ChatFormat, apply_chat_template, render_prompt
from retrostar_search.tasks import PRESETS
from tests.scripted_sglang import (
    MODEL,
    Aborted,
    Failure,
    Pair,
    ScriptedSGLangServer,
    chat_prompt,
    count_tokens,
    expected_score,
    free_port,
)
from tests.waiting import until

QUERY = "why do leaves change colour"


def prompt(document: str, query: str = QUERY) -> str:
    """A Retro* prompt as the native /generate path sends it (chat template applied by the client)."""
    return apply_chat_template(render_prompt(PRESETS["biology"], query, document).text, ChatFormat.QWEN3)


def message(document: str, query: str = QUERY) -> list[dict[str, str]]:
    return [{"role": "user", "content": render_prompt(PRESETS["biology"], query, document).text}]


@pytest.fixture
def server(scripted_sglang: ScriptedSGLangServer) -> ScriptedSGLangServer:
    """The suite's scripted server (tests/conftest.py), reset for each test."""
    return scripted_sglang


@pytest.fixture
def client(server: ScriptedSGLangServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def generate(client: httpx.Client, text: object, **sampling: object) -> httpx.Response:
    return client.post("/generate", json={"text": text, "sampling_params": {"n": 1, **sampling}})


# ------------------------------------------------------------------------------------------------
# SGLang /generate (http_server.generate_request; io_struct.GenerateReqInput; tokenizer_manager)
# ------------------------------------------------------------------------------------------------


def test_one_text_answers_an_object_with_sglang_meta_info(client: httpx.Client) -> None:
    text = prompt("chlorophyll breaks down [[retrostar:77]]")
    body = client.post(
        "/generate", json={"text": text, "sampling_params": {"max_new_tokens": 512}, "rid": "pair-1"}
    ).json()

    assert body["text"].endswith("<score>\n77\n</score>")
    meta = body["meta_info"]
    # tokenizer_manager._handle_batch_output; schedule_batch.FINISH_MATCHED_TOKEN ("stop" on EOS)
    assert meta["id"] == "pair-1"
    assert meta["finish_reason"] == {"type": "stop", "matched": 151645}
    assert meta["prompt_tokens"] == count_tokens(text)
    assert meta["completion_tokens"] == count_tokens(body["text"]) == len(body["output_ids"])
    assert meta["cached_tokens"] == 0 and meta["e2e_latency"] >= 0
    assert {"weight_version", "num_retractions", "reasoning_tokens"} <= meta.keys()


def test_n_samples_answer_a_list_with_fresh_rids(client: httpx.Client) -> None:
    text = prompt("[[retrostar:10,20,30]] pigments")
    body = client.post("/generate", json={"text": text, "sampling_params": {"n": 3}, "rid": "mine"}).json()

    assert [output["text"].rsplit("<score>", 1)[1] for output in body] == [
        f"\n{s}\n</score>" for s in (10, 20, 30)
    ]
    # _handle_batch_request gives every parallel sample a fresh rid (regenerate_rid): the client's is lost.
    ids = [output["meta_info"]["id"] for output in body]
    assert len(set(ids)) == 3 and "mine" not in ids
    # The samples share one prefill: all but the first find the whole prompt (less one token) cached.
    assert [output["meta_info"]["cached_tokens"] for output in body][1:] == [count_tokens(text) - 1] * 2


def test_a_list_of_texts_answers_a_flat_list_prompt_by_prompt(client: httpx.Client) -> None:
    texts = [prompt("[[retrostar:1,2]] a"), prompt("[[retrostar:8,9]] b")]
    body = client.post(
        "/generate", json={"text": texts, "sampling_params": {"n": 2}, "rid": ["r-a", "r-b"]}
    ).json()

    assert [output["text"].rsplit("<score>", 1)[1] for output in body] == [
        f"\n{s}\n</score>" for s in (1, 2, 8, 9)
    ]


def test_a_list_with_one_rid_string_numbers_the_rids(client: httpx.Client) -> None:
    body = client.post(
        "/generate", json={"text": [prompt("a"), prompt("b")], "sampling_params": {}, "rid": "batch"}
    ).json()
    assert [output["meta_info"]["id"] for output in body] == ["batch_0", "batch_1"]  # _normalize_rid


def test_rid_errors_answer_400_with_sglangs_message(client: httpx.Client) -> None:
    response = client.post("/generate", json={"text": [prompt("a"), prompt("b")], "rid": ["only-one"]})
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": "The specified rids length mismatch with the batch_size for batch processing."}
    }


async def test_a_rid_already_in_flight_is_refused(server: ScriptedSGLangServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        slow = asyncio.create_task(
            client.post("/generate", json={"text": prompt("[[slow:0.5]] x"), "rid": "same"})
        )
        await until(lambda: "same" in server.live_rids())
        second = await client.post("/generate", json={"text": prompt("y"), "rid": "same"})
        assert second.status_code == 400
        assert second.json() == {"error": {"message": "Duplicate request ID detected: same"}}
        assert (await slow).status_code == 200


def test_max_new_tokens_cuts_the_answer_with_finish_length(client: httpx.Client) -> None:
    body = generate(client, prompt("[[retrostar:90]] long"), max_new_tokens=12).json()

    assert body["meta_info"]["finish_reason"] == {"type": "length", "length": 12}  # FINISH_LENGTH
    assert body["meta_info"]["completion_tokens"] == 12 == count_tokens(body["text"])
    assert "<score>" not in body["text"]


def test_scripted_sample_ends(client: httpx.Client) -> None:
    body = generate(client, prompt("[[retrostar:70,abort,length,noscore]] x"), n=4, max_new_tokens=200).json()

    reasons = [output["meta_info"]["finish_reason"] for output in body]
    assert reasons[0]["type"] == "stop" and body[0]["text"].endswith("<score>\n70\n</score>")
    # An aborted sample answers HTTP 200 with its partial text (schedule_batch.FINISH_ABORT.to_json).
    assert reasons[1] == {"type": "abort", "message": "Aborted", "status_code": None, "err_type": None}
    assert body[1]["text"] and "<score>" not in body[1]["text"]
    assert reasons[2] == {"type": "length", "length": 200}
    assert body[2]["meta_info"]["completion_tokens"] == 200
    assert reasons[3]["type"] == "stop" and "<score>" not in body[3]["text"]


@pytest.mark.parametrize(
    ("abort", "status", "expected"),
    [
        # tokenizer_manager._handle_abort_finish_reason: 400 raises ValueError -> _create_error_response
        (Aborted("bad input", 400), 400, {"error": {"message": "bad input"}}),
        # ... any other status an HTTPException -> ErrorResponse with type str(status)
        (
            Aborted("overloaded", 503),
            503,
            {"object": "error", "message": "overloaded", "type": "503", "param": None, "code": 503},
        ),
    ],
)
def test_aborts_with_a_status_are_http_errors(
    server: ScriptedSGLangServer, client: httpx.Client, abort: Aborted, status: int, expected: dict
) -> None:
    server.script(answers=lambda pair: abort)
    response = generate(client, prompt("x"))
    assert response.status_code == status and response.json() == expected


def test_answers_mapping_and_callable(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(answers={"mapped": 42})
    assert generate(client, prompt("mapped")).json()["text"].endswith("<score>\n42\n</score>")
    unmapped = generate(client, prompt("other")).json()["text"]
    assert unmapped.endswith(f"<score>\n{expected_score(QUERY, 'other')}\n</score>")

    seen: list[Pair] = []

    def abort_first_attempt(pair: Pair) -> str | int:
        seen.append(pair)
        return "abort" if pair.attempt == 0 else 64

    server.script(answers=abort_first_attempt)
    first = generate(client, prompt("retried")).json()
    second = generate(client, prompt("retried")).json()
    assert first["meta_info"]["finish_reason"]["type"] == "abort"
    assert second["text"].endswith("<score>\n64\n</score>")
    assert [(pair.query, pair.document, pair.attempt) for pair in seen] == [
        (QUERY, "retried", 0),
        (QUERY, "retried", 1),
    ]


# ------------------------------------------------------------------------------------------------
# Context length (tokenizer_manager._validate_one_request) and the prefix cache
# ------------------------------------------------------------------------------------------------


def test_prompt_over_the_context_answers_sglangs_400(
    server: ScriptedSGLangServer, client: httpx.Client
) -> None:
    text = prompt("a document " * 50)
    tokens = count_tokens(text)
    server.script(context_length=tokens)

    too_long = generate(client, text, max_new_tokens=1)
    assert too_long.status_code == 400
    assert too_long.json() == {
        "error": {
            "message": f"The input ({tokens} tokens) is longer than the model's context length "
            f"({tokens} tokens)."
        }
    }

    server.script(context_length=tokens + 10)
    over_total = generate(client, text, max_new_tokens=11)
    assert over_total.status_code == 400
    assert over_total.json()["error"]["message"] == (
        "Requested token count exceeds the model's maximum context length of "
        f"{tokens + 10} tokens. You requested a total of {tokens + 11} tokens: {tokens} tokens from the "
        "input messages and 11 tokens for the completion. Please reduce the number of tokens in the "
        "input messages or the completion to fit within the limit."
    )
    assert generate(client, text, max_new_tokens=10).status_code == 200  # exactly fits


def test_cached_tokens_are_the_longest_prefix_seen_before(
    server: ScriptedSGLangServer, client: httpx.Client
) -> None:
    first, second = prompt("first document"), prompt("second document")
    assert generate(client, first).json()["meta_info"]["cached_tokens"] == 0
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert generate(client, second).json()["meta_info"]["cached_tokens"] == count_tokens(first[:shared])
    # At most the prompt less one token (schedule_batch: max_prefix_len = input_len - 1).
    assert generate(client, first).json()["meta_info"]["cached_tokens"] == count_tokens(first) - 1

    assert client.post("/flush_cache").status_code == 200
    assert generate(client, first).json()["meta_info"]["cached_tokens"] == 0


# ------------------------------------------------------------------------------------------------
# Aborts, disconnects, capacity (http_server.abort_request; tokenizer_manager.abort_request,
# _handle_abort_req, _stream_one_response; scheduler.abort_request)
# ------------------------------------------------------------------------------------------------


async def test_abort_request_stops_a_running_request(server: ScriptedSGLangServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        pending = asyncio.create_task(
            client.post("/generate", json={"text": prompt("[[slow:5]] x"), "rid": "stop-me"})
        )
        await until(lambda: "stop-me" in server.live_rids())
        await asyncio.sleep(0.3)
        started = time.monotonic()
        aborted = await client.post("/abort_request", json={"rid": "stop-me"})
        response = await pending

    assert aborted.status_code == 200 and aborted.content == b""
    assert response.status_code == 200 and time.monotonic() - started < 1.0
    meta = response.json()["meta_info"]
    assert meta["finish_reason"] == {
        "type": "abort",
        "message": "Aborted",
        "status_code": None,
        "err_type": None,
    }
    assert meta["completion_tokens"] == count_tokens(response.json()["text"])
    assert server.stats.aborted == ["stop-me"] and server.stats.abort_requests == [{"rid": "stop-me"}]
    assert server.live_rids() == [] and server.stats.running == 0


async def test_abort_in_the_waiting_queue_has_sglangs_short_meta_info(server: ScriptedSGLangServer) -> None:
    server.script(capacity=1, latency=2.0)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        first = asyncio.create_task(client.post("/generate", json={"text": prompt("a"), "rid": "runs"}))
        await until(lambda: server.stats.running == 1)
        queued = asyncio.create_task(client.post("/generate", json={"text": prompt("b"), "rid": "waits"}))
        await until(lambda: server.stats.queued == 1)
        await client.post("/abort_request", json={"rid": "waits"})
        response = await queued
        await client.post("/abort_request", json={"rid": "runs"})
        await first

    assert response.json() == {
        "text": "",
        "output_ids": [],
        "meta_info": {
            "id": "waits",
            "finish_reason": {"type": "abort", "message": "Abort in waiting queue"},
            "weight_version": "default",
            "e2e_latency": response.json()["meta_info"]["e2e_latency"],
            "completion_tokens": 0,
        },
    }
    assert server.stats.max_queued == 1 and server.stats.max_running == 1


async def test_abort_needs_the_exact_rid_of_a_live_request(server: ScriptedSGLangServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        # n > 1: the samples run under fresh rids, so the client's rid aborts nothing.
        pending = asyncio.create_task(
            client.post(
                "/generate",
                json={"text": prompt("[[slow:0.4]] x"), "sampling_params": {"n": 2}, "rid": "parent"},
            )
        )
        await until(lambda: len(server.live_rids()) == 2)
        await client.post("/abort_request", json={"rid": "parent"})
        body = (await pending).json()

    assert [output["meta_info"]["finish_reason"]["type"] for output in body] == ["stop", "stop"]
    assert server.stats.aborted == [] and server.stats.abort_requests == [{"rid": "parent"}]


async def test_a_client_that_goes_away_frees_its_samples(server: ScriptedSGLangServer) -> None:
    server.script(disconnect_check_s=0.05)
    async with httpx.AsyncClient(base_url=server.url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/generate", json={"text": prompt("[[slow:10]] x"), "rid": "gone"})
    await until(lambda: server.stats.disconnected == ["gone"])
    assert server.live_rids() == [] and server.stats.running == 0


async def test_capacity_queues_samples_beyond_it(server: ScriptedSGLangServer) -> None:
    server.script(capacity=2, latency=0.2)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/generate", json={"text": prompt(f"doc {i}")}) for i in range(4))
        )
    assert all(response.status_code == 200 for response in responses)
    assert server.stats.max_running == 2 and server.stats.max_queued == 2
    assert time.monotonic() - started >= 0.4


# ------------------------------------------------------------------------------------------------
# Failures
# ------------------------------------------------------------------------------------------------


def test_scripted_failures_come_in_turn(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(failures=[503, "drop", Failure(malformed=True)])

    failed = generate(client, prompt("x"))
    assert failed.status_code == 503 and failed.json() == {"error": {"message": "scripted failure"}}
    with pytest.raises(httpx.RemoteProtocolError):
        generate(client, prompt("x"))
    assert generate(client, prompt("x")).text == "<html>not json"
    assert generate(client, prompt("x")).status_code == 200


def test_document_markers_fail_one_request(client: httpx.Client) -> None:
    failed = generate(client, prompt("x [[error:502]]"))
    assert (failed.status_code, failed.json()) == (502, {"error": {"message": "scripted failure"}})
    malformed = generate(client, prompt("x [[malformed]]"))
    assert (malformed.status_code, malformed.text) == (200, "<html>not json")
    with pytest.raises(httpx.RemoteProtocolError):
        generate(client, prompt("x [[drop]]"))


# ------------------------------------------------------------------------------------------------
# Model, server info and health (http_server.model_info, server_info, available_models, health_generate)
# ------------------------------------------------------------------------------------------------


def test_model_and_server_info(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(served_model_name="retro-star", model_path="/models/8b", context_length=8192)

    for path in ("/model_info", "/get_model_info"):
        info = client.get(path).json()
        assert info["model_path"] == "/models/8b" and info["served_model_name"] == "retro-star"
        assert info["is_generation"] is True and "tokenizer_path" in info
    server_info = client.get("/server_info").json()
    assert server_info["context_length"] == 8192 and server_info["served_model_name"] == "retro-star"
    assert client.get("/get_server_info").json() == server_info

    card = client.get("/v1/models").json()["data"][0]
    assert (card["id"], card["root"], card["owned_by"], card["max_model_len"]) == (
        "retro-star",
        "retro-star",
        "sglang",
        8192,
    )


@pytest.mark.parametrize("path", ["/health", "/health_generate", "/ready"])
def test_health_is_503_until_the_server_is_up(
    server: ScriptedSGLangServer, client: httpx.Client, path: str
) -> None:
    server.script(status="starting")
    assert client.get(path).status_code == 503
    server.script(status="up")
    assert client.get(path).status_code == 200


def test_stats_keep_what_the_client_sent(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    client.post(
        "/generate",
        json={"text": prompt("x"), "sampling_params": {"top_p": 1.0, "min_p": 0.0}, "rid": "k"},
        headers={"X-SMG-Routing-Key": "query-key"},
    )
    assert server.stats.sampling == [{"top_p": 1.0, "min_p": 0.0}]
    assert server.stats.rids == ["k"] and server.stats.routing_keys == ["query-key"]
    assert server.stats.calls["POST /generate"] == 1
    assert (server.stats.pairs, server.stats.samples) == (1, 1)


def test_lean_stats_count_the_pairs_of_each_query() -> None:
    # What bench/scale_out.py reads from worker processes (--stats-file): which worker answered which
    # query's pairs, without keeping prompts.
    with ScriptedSGLangServer(lean=True) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for query, document in [("q1", "a"), ("q1", "b"), ("q2", "a")]:
            assert generate(http, prompt(document, query), n=2).status_code == 200
        assert server.stats.queries == {"q1": 2, "q2": 1}
        assert (server.stats.pairs, server.stats.samples, server.stats.prompts) == (3, 6, [])


# ------------------------------------------------------------------------------------------------
# OpenAI chat, SGLang flavour (openai/serving_chat._build_chat_response, usage_processor, protocol)
# ------------------------------------------------------------------------------------------------


def chat(client: httpx.Client, messages: list[dict[str, str]], **fields: object) -> httpx.Response:
    body = {"model": "anything", "messages": messages, "chat_template_kwargs": {"enable_thinking": False}}
    return client.post("/v1/chat/completions", json={**body, **fields})


def test_chat_answers_sglangs_shape(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    messages = message("[[retrostar:55,65]] x")
    body = chat(client, messages, n=2, top_p=1.0, min_p=0.0, top_k=40, temperature=0.6, max_tokens=512).json()

    assert body["object"] == "chat.completion" and body["model"] == "anything"  # SGLang checks no name
    first = body["choices"][0]
    assert first["message"]["content"].endswith("<score>\n55\n</score>")
    assert first["message"]["reasoning_content"] is None and first["finish_reason"] == "stop"
    assert first["matched_stop"] == 151645
    assert body["choices"][1]["message"]["content"].endswith("<score>\n65\n</score>")
    prompt_tokens = count_tokens(chat_prompt(messages, enable_thinking=False))
    completion = sum(count_tokens(choice["message"]["content"]) for choice in body["choices"])
    assert body["usage"]["prompt_tokens"] == prompt_tokens
    assert body["usage"]["completion_tokens"] == completion
    assert body["usage"]["total_tokens"] == prompt_tokens + completion
    assert body["usage"]["prompt_tokens_details"] is None  # no --enable-cache-report
    sent = server.stats.sampling[0]
    assert (sent["top_p"], sent["min_p"], sent["top_k"], sent["temperature"], sent["max_tokens"]) == (
        1.0,
        0.0,
        40,
        0.6,
        512,
    )


def test_chat_cache_report(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(cache_report=True)
    chat(client, message("a"))
    usage = chat(client, message("a")).json()["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": usage["prompt_tokens"] - 1}


def test_chat_reasoning_parser(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(reasoning="all")
    answer = chat(client, message("[[retrostar:81]] x")).json()["choices"][0]["message"]
    assert answer["content"] == "" and answer["reasoning_content"].endswith("<score>\n81\n</score>")

    unseparated = chat(client, message("[[retrostar:81]] x"), separate_reasoning=False).json()
    assert unseparated["choices"][0]["message"]["content"].endswith("<score>\n81\n</score>")
    assert unseparated["choices"][0]["message"]["reasoning_content"] is None

    server.script(reasoning="split")
    split = chat(client, message("[[retrostar:81]] x")).json()["choices"][0]["message"]
    assert split["content"] == "<score>\n81\n</score>" and "Query Analysis" in split["reasoning_content"]
    assert client.get("/model_info").json()["reasoning_parser"] == "qwen3"


def test_chat_finish_reasons_and_errors(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    body = chat(client, message("[[retrostar:abort,70]] x"), n=2, max_tokens=9).json()
    assert [choice["finish_reason"] for choice in body["choices"]] == ["abort", "length"]

    messages = message("words " * 40)
    tokens = count_tokens(chat_prompt(messages, enable_thinking=False))
    server.script(context_length=tokens)
    refused = chat(client, messages)
    assert refused.status_code == 400
    assert refused.json() == {
        "object": "error",
        "message": f"The input ({tokens} tokens) is longer than the model's context length ({tokens} tokens).",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    assert chat(client, []).json()["message"] == "Messages cannot be empty."


async def test_chat_takes_a_rid_that_abort_request_stops(server: ScriptedSGLangServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        body = {"model": MODEL, "messages": message("[[slow:5]] x"), "rid": "chat-pair"}
        pending = asyncio.create_task(client.post("/v1/chat/completions", json=body))
        await until(lambda: "chat-pair" in server.live_rids())
        await client.post("/abort_request", json={"rid": "chat-pair"})
        answer = (await pending).json()
    assert answer["choices"][0]["finish_reason"] == "abort"


# ------------------------------------------------------------------------------------------------
# vLLM flavour (chat_completion/{protocol,serving}.py, serve/engine/serving.py, renderers/params.py)
# ------------------------------------------------------------------------------------------------


def test_vllm_refuses_another_model_name(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(flavor="vllm", served_model_name="ljw13/retro-star-qwen3-8b-0928")
    response = chat(client, message("x"), model=MODEL)
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": f"The model `{MODEL}` does not exist. Valid aliases: ljw13/retro-star-qwen3-8b-0928.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    served = chat(client, message("[[retrostar:12]] x"), model="ljw13/retro-star-qwen3-8b-0928").json()
    assert served["choices"][0]["message"]["content"].endswith("<score>\n12\n</score>")
    assert served["id"].startswith("chatcmpl-") and "prompt_tokens_details" not in served["usage"]


def test_vllm_has_no_native_routes(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(flavor="vllm")
    for method, path in [("POST", "/generate"), ("GET", "/get_model_info"), ("POST", "/abort_request")]:
        response = client.request(method, path, json={})
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    card = client.get("/v1/models").json()["data"][0]
    assert (card["id"], card["owned_by"], card["root"], card["max_model_len"]) == (
        MODEL,
        "vllm",
        MODEL,
        40960,
    )
    assert client.get("/version").json() == {"version": "0.34.0"}


def test_vllm_reasoning_field(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(flavor="vllm", reasoning="all")
    answer = chat(client, message("[[retrostar:33]] x"), model=MODEL).json()["choices"][0]["message"]
    assert answer["content"] is None and answer["reasoning"].endswith("<score>\n33\n</score>")

    server.script(reasoning_field="reasoning_content")  # vLLM before the rename
    older = chat(client, message("[[retrostar:33]] x"), model=MODEL).json()["choices"][0]["message"]
    assert older["content"] is None and older["reasoning_content"].endswith("<score>\n33\n</score>")


def test_vllm_context_checks(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    messages = message("[[retrostar:50]] " + "words " * 30)
    tokens = count_tokens(chat_prompt(messages, enable_thinking=False))
    server.script(flavor="vllm", context_length=tokens - 1)

    refused = chat(client, messages, model=MODEL)
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "message": f"This model's maximum context length is {tokens - 1} tokens. However, your prompt "
        f"contains {tokens} input tokens, which exceeds this limit even without any output tokens. "
        "Please reduce the length of the input prompt.",
        "type": "BadRequestError",
        "param": "input_tokens",
        "code": 400,
    }
    # A prompt that fits gets max_tokens clamped to what is left (api_utils.get_max_tokens), not a 400.
    server.script(context_length=tokens + 5)
    clamped = chat(client, messages, model=MODEL, max_tokens=tokens).json()
    assert clamped["choices"][0]["finish_reason"] == "length"
    assert clamped["usage"]["completion_tokens"] == 5
    assert chat(client, messages, model=MODEL, max_tokens=tokens + 6).status_code == 400


def test_vllm_health(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(flavor="vllm", status="unhealthy")
    assert client.get("/health").status_code == 503


# ------------------------------------------------------------------------------------------------
# Router flavour (sgl-model-gateway 0.3.2 src/server.rs, routers/error.rs; checked against the real
# router in tests/test_sglang_router.py)
# ------------------------------------------------------------------------------------------------


def test_router_readiness_and_liveness(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(flavor="router", live_workers=2)
    ready = client.get("/readiness")
    assert ready.json() == {"status": "ready", "healthy_workers": 2, "total_workers": 2}

    server.script(live_workers=0)
    not_ready = client.get("/readiness")
    assert not_ready.status_code == 503
    assert not_ready.json() == {"status": "not ready", "reason": "insufficient healthy workers"}
    assert (client.get("/health").text, client.get("/liveness").text) == ("OK", "OK")
    assert client.get("/health_generate").status_code == 503
    refused = generate(client, prompt("x"))
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "no_available_workers"
    assert client.get("/get_model_info").json()["error"]["code"] == "no_workers"


def test_router_shapes(server: ScriptedSGLangServer, client: httpx.Client) -> None:
    server.script(flavor="router")
    assert client.get("/v1/models").json() == {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "owned_by": "local"}],
    }
    listed = generate(client, [prompt("a"), prompt("b")])
    assert listed.status_code == 422 and listed.text.startswith("Failed to deserialize the JSON body")
    missing = client.post("/abort_request", json={"rid": "x"})
    assert (missing.status_code, missing.content) == (404, b"")
    echoed = client.get("/readiness", headers={"X-Request-Id": "trace-1"})
    assert echoed.headers["x-request-id"] == "trace-1"
    assert generate(client, prompt("[[retrostar:5]] x")).json()["text"].endswith("<score>\n5\n</score>")


# ------------------------------------------------------------------------------------------------
# The lean server (`python -m tests.scripted_sglang --lean`, benchmarks' backend)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lean_url() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.scripted_sglang", "--lean", "--port", str(port)]
    process = subprocess.Popen([*command, "--timeout-keep-alive", "0.4"], cwd=Path(__file__).parents[1])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            assert time.monotonic() < deadline and process.poll() is None, "the lean server did not start"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _shape(value: object) -> object:
    """Keys, types and values, with what differs by nature between two servers (ids, timings, token counts
    that depend on the prefix cache or are estimated) left as their types."""
    if isinstance(value, dict):
        volatile = {"id", "e2e_latency", "prompt_tokens", "cached_tokens", "created"}
        return {key: type(item).__name__ if key in volatile else _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return value


@pytest.mark.parametrize(
    "body",
    [
        {"text": prompt("chlorophyll breaks down"), "sampling_params": {"n": 1}, "rid": "lean-1"},
        {"text": prompt("doc [[retrostar:70,length,abort,noscore]]"), "sampling_params": {"n": 4}},
        {"text": prompt("chlorophyll breaks down"), "sampling_params": {"n": 2, "max_new_tokens": 9}},
    ],
)
def test_the_lean_server_answers_as_the_full_one(lean_url: str, client: httpx.Client, body) -> None:
    full = client.post("/generate", json=body)
    lean = httpx.post(f"{lean_url}/generate", json=body)
    assert lean.status_code == full.status_code == 200
    assert _shape(lean.json()) == _shape(full.json())
    if "rid" in body:
        assert lean.json()["meta_info"]["id"] == body["rid"]
    for path in ("/model_info", "/get_model_info", "/server_info", "/get_server_info", "/v1/models"):
        assert _shape(httpx.get(f"{lean_url}{path}").json()) == _shape(client.get(path).json()), path
    assert httpx.get(f"{lean_url}/readiness").status_code == 404  # a worker, not the router


def test_the_lean_server_keeps_connections_alive_and_closes_idle_ones(lean_url: str) -> None:
    with httpx.Client(base_url=lean_url) as http:
        for _ in range(3):
            assert (
                http.post("/generate", json={"text": prompt("doc"), "sampling_params": {}}).status_code == 200
            )
        connections = http._transport._pool.connections  # type: ignore[attr-defined]
        assert len(connections) == 1  # one kept-alive connection served all three
        time.sleep(1.2)  # idle over --timeout-keep-alive 0.4, and a sweep of the server since
        assert http.get("/health").status_code == 200  # a new connection: the old one was closed
        assert connections[0].is_closed() or connections[0] not in http._transport._pool.connections  # type: ignore[attr-defined]
