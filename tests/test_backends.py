"""Each backend speaks its server's real API: what it sends, how it reads the answers (finish reasons,
reasoning fields, token counts), and what it asks the server about the model it serves. Checked against
the scripted server in its SGLang, vLLM and router flavours. The pool, cancellation and routing are in
tests/test_backend_pool.py."""

from __future__ import annotations

import pytest

from retrostar_search.backends._discovery import ModelNotServed, ServerKind
from retrostar_search.backends.base import SamplingParams
from retrostar_search.backends.cpu_fallback import CPUFallbackBackend, coverage_score
from retrostar_search.backends.sglang_http import OpenAIChatBackend, SGLangGenerateBackend
from retrostar_search.cache import ScoreCache
from retrostar_search.errors import BackendError, MissingExtra
from retrostar_search.prompts import ChatFormat, apply_chat_template, render_prompt
from retrostar_search.reranker import Candidate, Reranker
from retrostar_search.scoring import FinishReason
from retrostar_search.tasks import PRESETS
from tests.scripted_sglang import MODEL, ScriptedSGLangServer, free_port, trajectory

PROMPT = render_prompt(PRESETS["biology"], "why do leaves fall", "abscission layer [[retrostar:77]]")
CHECKPOINT_8B = "ljw13/retro-star-qwen3-8b-0928"


# --- What is sent ---------------------------------------------------------------------------------


async def test_generate_sends_the_chat_templated_prompt_the_reference_sampling_and_a_rid(
    scripted_sglang, http_backends
) -> None:
    backend = await http_backends()
    texts = [generation.text for generation in await backend.generate(PROMPT, 3, SamplingParams())]
    assert len(texts) == 3 and all(text.endswith("<score>\n77\n</score>") for text in texts)
    assert scripted_sglang.stats.prompts == [apply_chat_template(PROMPT.text, ChatFormat.QWEN3)]
    # top_p and min_p are sent: left out, a server takes the checkpoint's (top_p 0.95 for Qwen3).
    assert scripted_sglang.stats.sampling[0] == {
        "n": 3,
        "temperature": 0.6,
        "top_k": 40,
        "top_p": 1.0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "max_new_tokens": 4096,
        "skip_special_tokens": False,
    }
    [single] = await backend.generate(PROMPT, 1, SamplingParams(), rid="pair-1")
    assert single.text == texts[0]  # n=1 answers an object
    assert (
        scripted_sglang.stats.rids[-1] == "pair-1" and len(scripted_sglang.stats.rids) == 2
    )  # a rid of its own otherwise


async def test_the_backends_of_one_process_never_send_the_same_rid(scripted_sglang, http_backends) -> None:
    # Before, each backend counted its rids from 0: a second one (another leg, a test) sent the first's
    # rids again, and the server refuses a rid that is still live.
    first, second = await http_backends(), await http_backends()
    for backend in (first, second, first):
        await backend.generate(PROMPT, 1, SamplingParams())
    assert len(set(scripted_sglang.stats.rids)) == 3


async def test_chat_sends_the_served_name_the_reference_sampling_and_no_thinking(
    scripted_sglang, http_backends
) -> None:
    backend = await http_backends(OpenAIChatBackend)
    assert len(await backend.generate(PROMPT, 2, SamplingParams())) == 2
    assert scripted_sglang.stats.prompts == [PROMPT.text]
    sent = scripted_sglang.stats.sampling[0]
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    assert (sent["n"], sent["temperature"], sent["top_k"], sent["max_tokens"]) == (2, 0.6, 40, 4096)
    assert (sent["top_p"], sent["min_p"], sent["repetition_penalty"]) == (1.0, 0.0, 1.0)
    assert sent["separate_reasoning"] is False  # SGLang: one text, as trained
    assert scripted_sglang.stats.requests[0].body["model"] == MODEL


async def test_chat_to_vllm_sends_the_name_it_serves_and_no_sglang_only_fields(
    scripted_sglang, http_backends
) -> None:
    # The bug: the connector sent its default 14b name to a vLLM serving the 8b, and every pair got 404.
    scripted_sglang.script(
        flavor="vllm", served_model_name=CHECKPOINT_8B, model_path=f"/models/{CHECKPOINT_8B}"
    )
    backend = await http_backends(OpenAIChatBackend)
    [generation] = await backend.generate(PROMPT, 1, SamplingParams())
    assert generation.text.endswith("<score>\n77\n</score>")
    assert scripted_sglang.stats.requests[0].body["model"] == CHECKPOINT_8B
    assert "separate_reasoning" not in scripted_sglang.stats.requests[0].body  # vLLM logs every unknown field
    assert backend.model == f"/models/{CHECKPOINT_8B}"  # the checkpoint: answers and cache keys


# --- How answers are read -------------------------------------------------------------------------


async def test_sglang_finish_reasons_and_token_counts(scripted_sglang, http_backends) -> None:
    backend = await http_backends()
    prompt = render_prompt(PRESETS["biology"], "q", "doc [[retrostar:70,length,abort]]")
    stop, length, abort = await backend.generate(prompt, 3, SamplingParams(max_new_tokens=64))
    assert (stop.finish_reason, length.finish_reason, abort.finish_reason) == (
        FinishReason.STOP,
        FinishReason.LENGTH,
        FinishReason.ABORT,  # SGLang answers an aborted sample with HTTP 200
    )
    assert "<score>" in stop.text and "<score>" not in length.text
    assert stop.prompt_tokens is not None and stop.prompt_tokens > 100
    assert length.completion_tokens == 64
    assert stop.cached_tokens == 0 and length.cached_tokens == stop.prompt_tokens - 1  # the shared prefill


async def test_chat_finish_reasons_usage_and_cached_tokens(scripted_sglang, http_backends) -> None:
    scripted_sglang.script(cache_report=True)
    backend = await http_backends(OpenAIChatBackend)
    prompt = render_prompt(PRESETS["biology"], "q", "doc [[retrostar:70,length]]")
    stop, length = await backend.generate(prompt, 2, SamplingParams(max_new_tokens=64))
    assert (stop.finish_reason, length.finish_reason) == (FinishReason.STOP, FinishReason.LENGTH)
    assert stop.prompt_tokens == length.prompt_tokens and stop.prompt_tokens is not None
    assert stop.completion_tokens is None  # usage counts the whole request when n > 1
    assert stop.cached_tokens == 0
    [again] = await backend.generate(prompt, 1, SamplingParams(max_new_tokens=64))
    assert again.completion_tokens is not None and again.cached_tokens == again.prompt_tokens - 1


@pytest.mark.parametrize(
    ("flavor", "reasoning", "field"),
    [
        ("vllm", "all", None),  # vLLM 0.10+: `reasoning`, content null
        ("vllm", "split", "reasoning_content"),  # older vLLM: the analysis apart, the score in content
        ("sglang", "all", None),  # SGLang: separate_reasoning false keeps it in content
    ],
)
async def test_the_score_is_found_wherever_a_reasoning_parser_put_it(
    scripted_sglang, http_backends, flavor, reasoning, field
) -> None:
    # The bug: with a reasoning parser on the server, the answer sat in the reasoning field, content was
    # empty, and every document scored 0.
    scripted_sglang.script(flavor=flavor, reasoning=reasoning, reasoning_field=field)
    backend = await http_backends(OpenAIChatBackend)
    [generation] = await backend.generate(PROMPT, 1, SamplingParams())
    assert generation.text == trajectory(PROMPT.query, PROMPT.document, 77)


@pytest.mark.parametrize("backend_class", [SGLangGenerateBackend, OpenAIChatBackend])
@pytest.mark.parametrize(
    ("marker", "message"), [("[[error:503]]", "HTTP 503"), ("[[malformed]]", "non-JSON")]
)
async def test_failures_raise_backend_errors_without_prompt_text(
    scripted_sglang, http_backends, backend_class, marker, message
) -> None:
    backend = await http_backends(backend_class)
    prompt = render_prompt(PRESETS["biology"], "secret query", f"secret doc {marker}")
    with pytest.raises(BackendError, match=message) as failure:
        await backend.generate(prompt, 1, SamplingParams())
    assert "secret" not in str(failure.value)


@pytest.mark.parametrize(("status", "transient"), [(400, False), (404, False), (429, True), (503, True)])
async def test_only_errors_worth_a_retry_are_transient(http_backends, status, transient) -> None:
    backend = await http_backends()
    prompt = render_prompt(PRESETS["biology"], "q", f"doc [[error:{status}]]")
    with pytest.raises(BackendError) as failure:
        await backend.generate(prompt, 1, SamplingParams())
    assert failure.value.transient is transient


async def test_a_prompt_over_the_context_is_the_servers_400(scripted_sglang, http_backends) -> None:
    scripted_sglang.script(context_length=200)
    backend = await http_backends()
    with pytest.raises(BackendError, match=r"HTTP 400: The input .* longer than the model.s context length"):
        await backend.generate(PROMPT, 1, SamplingParams())


async def test_unreachable_backend_is_not_ready_and_fails_clearly(http_backends) -> None:
    url = f"http://user:pw@127.0.0.1:{free_port()}"
    backend = await http_backends(url=url, api_key="sk-hidden")  # started: a server not up yet is no error
    assert await backend.ready() is False
    assert backend.not_ready_reason is not None and "unreachable" in backend.not_ready_reason
    with pytest.raises(BackendError, match="unreachable") as failure:
        await backend.generate(PROMPT, 1, SamplingParams())
    for secret in ("sk-hidden", "pw"):
        assert secret not in str(failure.value) and secret not in backend.not_ready_reason


@pytest.mark.parametrize(
    ("credentials", "api_key", "expected"),
    [
        ("user:pw@", None, "Basic dXNlcjpwdw=="),
        ("", "sk-key", "Bearer sk-key"),
        ("user:pw@", "sk-key", "Bearer sk-key"),
    ],
)
async def test_the_url_credentials_or_the_api_key_authorize_the_requests(
    scripted_sglang, http_backends, credentials, api_key, expected
) -> None:
    url = scripted_sglang.url.replace("http://", f"http://{credentials}")
    backend = await http_backends(url=url, api_key=api_key)
    await backend.generate(PROMPT, 1, SamplingParams())
    assert scripted_sglang.stats.requests[-1].headers["authorization"] == expected
    assert backend.base_url == scripted_sglang.url  # never named with its credentials


# --- What the server serves -----------------------------------------------------------------------


async def test_start_adopts_the_served_model_its_context_and_chat_format(
    scripted_sglang, http_backends
) -> None:
    scripted_sglang.script(served_model_name="retro-star", model_path=CHECKPOINT_8B, context_length=8192)
    backend = await http_backends()
    assert (backend.model, backend.context_length, backend.chat_format) == (
        CHECKPOINT_8B,
        8192,
        ChatFormat.QWEN3,
    )
    assert backend.served is not None and backend.served.server is ServerKind.SGLANG


async def test_a_0923_checkpoint_gets_qwen25s_chat_format_unless_one_is_set(
    scripted_sglang, http_backends
) -> None:
    scripted_sglang.script(model_path="ljw13/retro-star-qwen2.5-7b-0923", served_model_name="retro-star")
    derived = await http_backends()
    await derived.generate(PROMPT, 1, SamplingParams())
    assert scripted_sglang.stats.prompts[-1] == apply_chat_template(PROMPT.text, ChatFormat.QWEN2_5)
    forced = await http_backends(chat_format=ChatFormat.QWEN3)
    await forced.generate(PROMPT, 1, SamplingParams())
    assert scripted_sglang.stats.prompts[-1] == apply_chat_template(PROMPT.text, ChatFormat.QWEN3)


@pytest.mark.parametrize("configured", ["retro-star", CHECKPOINT_8B])
async def test_a_configured_model_may_be_the_served_name_or_the_checkpoint(
    scripted_sglang, http_backends, configured
) -> None:
    scripted_sglang.script(flavor="vllm", served_model_name="retro-star", model_path=CHECKPOINT_8B)
    backend = await http_backends(OpenAIChatBackend, model=configured)
    await backend.generate(PROMPT, 1, SamplingParams())
    assert scripted_sglang.stats.requests[-1].body["model"] == "retro-star"
    assert backend.model == CHECKPOINT_8B


@pytest.mark.parametrize("backend_class", [SGLangGenerateBackend, OpenAIChatBackend])
async def test_a_configured_model_the_server_does_not_serve_is_a_startup_error(
    scripted_sglang, http_backends, backend_class
) -> None:
    backend = await http_backends(backend_class, model=CHECKPOINT_8B, start=False)
    with pytest.raises(ModelNotServed, match=f"serves '{MODEL}', not the configured model '{CHECKPOINT_8B}'"):
        await backend.start()
    assert await backend.ready() is False
    assert backend.not_ready_reason is not None and "not the configured model" in backend.not_ready_reason
    with pytest.raises(ModelNotServed):
        await backend.generate(PROMPT, 1, SamplingParams())
    assert scripted_sglang.stats.prompts == []  # nothing was scored with the wrong model


async def test_a_server_that_comes_up_later_is_asked_before_use(http_backends) -> None:
    port = free_port()
    backend = await http_backends(url=f"http://127.0.0.1:{port}")
    assert backend.served is None
    with ScriptedSGLangServer(port=port, context_length=9000):
        assert await backend.ready() is True
        assert backend.context_length == 9000


async def test_a_model_learnt_only_at_first_use_fails_the_pairs_keyed_before(http_backends) -> None:
    # Cache keys were computed with the model assumed before the server answered: scores of another model
    # must not be kept under them. The pairs fail once; the next request uses the served model.
    port = free_port()
    backend = await http_backends(url=f"http://127.0.0.1:{port}")
    with ScriptedSGLangServer(port=port, model_path=CHECKPOINT_8B):
        with pytest.raises(BackendError, match=f"serves {CHECKPOINT_8B}, not {MODEL} as assumed"):
            await backend.generate(PROMPT, 1, SamplingParams())
        assert len(await backend.generate(PROMPT, 1, SamplingParams())) == 1


async def test_the_cache_key_follows_the_served_checkpoint(scripted_sglang, http_backends) -> None:
    # The bug: keys used the configured name, so a server moved to another checkpoint reused the old scores.
    backend = await http_backends()
    reranker = Reranker(backend, cache=ScoreCache())
    documents = [Candidate("abscission layer [[retrostar:77]]")]
    assert (await reranker.rerank("q", documents)).pairs_scored == 1
    assert (await reranker.rerank("q", documents)).cache_hits == 1
    scripted_sglang.script(model_path=CHECKPOINT_8B, served_model_name=CHECKPOINT_8B)
    assert await backend.ready()  # /ready asks again
    again = await reranker.rerank("q", documents)
    assert (again.pairs_scored, again.cache_hits) == (1, 0)


async def test_the_router_reports_no_context_length_so_the_configured_one_is_used(
    scripted_sglang, http_backends
) -> None:
    scripted_sglang.script(flavor="router")
    backend = await http_backends()
    assert backend.served is not None and backend.served.server is ServerKind.ROUTER
    assert backend.model == MODEL and backend.context_length is None
    configured = await http_backends(context_length=16384)
    assert configured.context_length == 16384
    worker = await http_backends(context_length=16384)
    scripted_sglang.script(flavor="sglang")
    await worker.start()
    assert worker.context_length == 16384  # a configured length wins over the server's


# --- Readiness ------------------------------------------------------------------------------------


async def test_behind_the_router_ready_means_a_healthy_worker(scripted_sglang, http_backends) -> None:
    # The bug: the router's /health is liveness only, so /ready said ready with no live worker.
    scripted_sglang.script(flavor="router", live_workers=0)
    backend = await http_backends()
    assert await backend.ready() is False
    assert "HTTP 503 to /readiness" in (backend.not_ready_reason or "")
    scripted_sglang.script(live_workers=2)
    assert await backend.ready() is True and backend.not_ready_reason is None
    assert scripted_sglang.stats.calls["GET /readiness"] >= 2


@pytest.mark.parametrize(("flavor", "probe"), [("sglang", "/health_generate"), ("vllm", "/health")])
async def test_a_worker_is_ready_when_it_can_generate(scripted_sglang, http_backends, flavor, probe) -> None:
    scripted_sglang.script(flavor=flavor, status="starting")
    backend = await http_backends(OpenAIChatBackend)
    assert await backend.ready() is False
    scripted_sglang.script(status="up")
    assert await backend.ready() is True
    assert scripted_sglang.stats.calls[f"GET {probe}"] == 2


# --- The other backends ---------------------------------------------------------------------------


async def test_cpu_fallback_scores_term_coverage_in_retrostar_shape() -> None:
    backend = CPUFallbackBackend()
    prompt = render_prompt(
        PRESETS["biology"], "why do leaves change colour", "Leaves change colour in autumn"
    )
    texts = [generation.text for generation in await backend.generate(prompt, 2, SamplingParams())]
    assert len(texts) == 2 and "not Retro*" in texts[0] and texts[0].endswith("<score>100</score>")
    assert coverage_score("leaves colour autumn", "the leaf is green") == 0
    assert coverage_score("leaves colour", "green leaves") == 50
    assert coverage_score("the of and", "anything") == 0


def test_engine_backend_explains_the_missing_extra() -> None:
    pytest.importorskip("retrostar_search.backends.sglang_engine")
    try:
        import sglang  # noqa: F401
    except ImportError:
        from retrostar_search.backends.sglang_engine import SGLangEngineBackend

        with pytest.raises(MissingExtra, match=r"retrostar-search\[sglang\]"):
            SGLangEngineBackend("ljw13/retro-star-qwen3-8b-0928")
    else:  # pragma: no cover - only on GPU hosts with the extra
        pytest.skip("sglang is installed here")
