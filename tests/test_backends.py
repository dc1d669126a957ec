"""Each backend speaks its server's real API: checked against the scripted SGLang server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from retrostar_search.backends.base import SamplingParams
from retrostar_search.backends.cpu_fallback import CPUFallbackBackend, coverage_score
from retrostar_search.backends.sglang_http import OpenAIChatBackend, SGLangGenerateBackend
from retrostar_search.errors import BackendError, MissingExtra
from retrostar_search.prompts import ChatFormat, apply_chat_template, render_prompt
from retrostar_search.scoring import FinishReason
from retrostar_search.tasks import PRESETS
from tests.scripted_sglang import ScriptedSGLangServer, free_port

PROMPT = render_prompt(PRESETS["biology"], "why do leaves fall", "abscission layer [[retrostar:77]]")


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedSGLangServer]:
    with ScriptedSGLangServer() as scripted:
        yield scripted


async def test_generate_sends_the_chat_templated_prompt_and_reference_sampling(server) -> None:
    server.stats.reset()
    backend = SGLangGenerateBackend(server.url, model="m")
    texts = [generation.text for generation in await backend.generate(PROMPT, 3, SamplingParams())]
    assert len(texts) == 3 and all(text.endswith("<score>\n77\n</score>") for text in texts)
    assert server.stats.prompts == [apply_chat_template(PROMPT.text, ChatFormat.QWEN3)]
    assert server.stats.sampling[0] == {
        "n": 3,
        "temperature": 0.6,
        "top_k": 40,
        "repetition_penalty": 1.0,
        "max_new_tokens": 1024,
        "skip_special_tokens": False,
    }
    [single] = await backend.generate(PROMPT, 1, SamplingParams())
    assert single.text == texts[0]  # n=1 answers an object
    await backend.aclose()


async def test_chat_api_sends_the_plain_message_without_thinking(server) -> None:
    server.stats.reset()
    backend = OpenAIChatBackend(server.url, model="retro-star")
    texts = await backend.generate(PROMPT, 2, SamplingParams(max_new_tokens=4096))
    assert len(texts) == 2
    assert server.stats.prompts == [PROMPT.text]
    sent = server.stats.sampling[0]
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    assert (sent["n"], sent["temperature"], sent["top_k"], sent["max_tokens"]) == (2, 0.6, 40, 4096)
    await backend.aclose()


@pytest.mark.parametrize("backend_class", [SGLangGenerateBackend, OpenAIChatBackend])
@pytest.mark.parametrize(
    ("marker", "message"), [("[[error:503]]", "HTTP 503"), ("[[malformed]]", "non-JSON")]
)
async def test_failures_raise_backend_errors_without_prompt_text(
    server, backend_class, marker, message
) -> None:
    backend = backend_class(server.url, model="m")
    prompt = render_prompt(PRESETS["biology"], "secret query", f"secret doc {marker}")
    with pytest.raises(BackendError, match=message) as failure:
        await backend.generate(prompt, 1, SamplingParams())
    assert "secret" not in str(failure.value)
    await backend.aclose()


async def test_unreachable_backend_is_not_ready_and_fails_clearly() -> None:
    backend = SGLangGenerateBackend(f"http://127.0.0.1:{free_port()}", model="m", api_key="sk-hidden")
    assert await backend.ready() is False
    with pytest.raises(BackendError, match="unreachable") as failure:
        await backend.generate(PROMPT, 1, SamplingParams())
    assert "sk-hidden" not in str(failure.value)
    await backend.aclose()


async def test_request_timeout_is_a_backend_error(server) -> None:
    backend = SGLangGenerateBackend(server.url, model="m", request_timeout=0.2)
    prompt = render_prompt(PRESETS["biology"], "q", "[[slow:2]]")
    with pytest.raises(BackendError, match="timed out"):
        await backend.generate(prompt, 1, SamplingParams())
    await backend.aclose()


async def test_ready_against_a_live_server(server) -> None:
    backend = OpenAIChatBackend(server.url, model="m")
    assert await backend.ready() is True
    await backend.aclose()


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


@pytest.mark.parametrize("backend_class", [SGLangGenerateBackend, OpenAIChatBackend])
async def test_generations_carry_the_servers_finish_reasons(server, backend_class) -> None:
    backend = backend_class(server.url, model=server.behaviour.served_model_name)
    prompt = render_prompt(PRESETS["biology"], "q", "[[retrostar:80,length,abort]] doc")
    generations = await backend.generate(prompt, 3, SamplingParams())
    assert [generation.finish_reason for generation in generations] == [
        FinishReason.STOP,
        FinishReason.LENGTH,
        FinishReason.ABORT,
    ]
    await backend.aclose()


@pytest.mark.parametrize(("status", "transient"), [(400, False), (404, False), (429, True), (503, True)])
async def test_only_errors_worth_a_retry_are_transient(server, status, transient) -> None:
    backend = SGLangGenerateBackend(server.url, model="m")
    prompt = render_prompt(PRESETS["biology"], "q", f"doc [[error:{status}]]")
    with pytest.raises(BackendError) as failure:
        await backend.generate(prompt, 1, SamplingParams())
    assert failure.value.transient is transient
    await backend.aclose()
