"""A scripted model server: the only test double in this project.

It answers the way SGLang, vLLM and the SGLang router answer over HTTP, in their real shapes, and reads
the query and the document back out of the Retro* prompt to answer a Retro*-style trajectory that ends in
`<score>N</score>`. One server speaks one flavour at a time (`flavor`: "sglang", "vllm" or "router").

The shapes come from the servers' own sources, read at these versions (file paths below are inside them):
- SGLang 0.5.23 (PyPI wheel `sglang`): `srt/entrypoints/http_server.py` (routes, `/health*`, `/ready`,
  `/model_info`, `/server_info`, `/v1/models`, `/abort_request`, `_create_error_response`),
  `srt/managers/io_struct.py` (`GenerateReqInput`: text or list, `rid`, `n`), `srt/managers/
  tokenizer_manager.py` (`_validate_one_request`, `_handle_batch_request`, `abort_request`,
  `_handle_abort_req`, `_handle_batch_output`, `_stream_one_response`), `srt/managers/scheduler.py`
  (`abort_request`), `srt/managers/schedule_batch.py` (`FINISH_*`), `srt/entrypoints/openai/
  {serving_chat,serving_base,protocol,usage_processor}.py` (chat answers and errors).
- vLLM 0.34.0 (PyPI wheel `vllm`): `entrypoints/openai/chat_completion/{protocol,serving}.py`,
  `entrypoints/serve/engine/{serving,protocol}.py` (`_check_model`, `ErrorResponse`),
  `entrypoints/openai/models/serving.py` (`/v1/models`), `renderers/params.py` (`_token_len_check`),
  `entrypoints/serve/utils/api_utils.py` (`get_max_tokens`), `entrypoints/serve/instrumentator/health.py`.
- sglang-router 0.3.2 (sgl-model-gateway; github.com/lightseekorg/smg at commit c7f9bf9f5 "release
  0.3.2"): `src/server.rs` (`/liveness`, `/readiness`, `/health`, routes), `src/routers/error.rs`,
  `src/routers/http/router.rs` (`proxy_get_request`), `src/protocols/generate.rs` (text is one string).

What each answer is made of, and how a test scripts it (`server.script(...)`; `server.reset()` restores
the defaults between tests):

- Scores: a document holding `[[retrostar:N]]` scores N; `[[retrostar:70,80,90]]` gives the samples in
  turn, and an item may also be `noscore` (a trajectory without `<score>`), `length` (cut at the token
  limit) or `abort` (aborted, HTTP 200, partial text). Otherwise `expected_score(query, document)`.
  `script(answers=...)`, a mapping from document text or a callable taking a `Pair`, overrides both.
- Request failures: `[[error:STATUS]]`, `[[malformed]]` (a 200 body that is not JSON), `[[drop]]` (the
  connection closes without an answer), `[[slow:SECONDS]]`; `script(failures=[503, "drop"])` fails the
  next requests in turn; `Failure(...)` from an `answers` callable fails one request.
- Model and limits: `served_model_name`, `model_path`, `context_length`, `max_new_tokens` cuts, the
  context-length 400s; `capacity` (sequences decoding at once, the rest wait in a queue), `latency`.
- Chat: `reasoning` ("all" or "split") as a server started with a reasoning parser answers;
  `cache_report` (usage.prompt_tokens_details); `reasoning_field` for older vLLM.
- Health: `status` ("up", "starting", "unhealthy": health 503, as SGLang before its warm-up).
- `POST /abort_request` (SGLang) and client disconnects stop pending samples and are recorded in `stats`.
  As in SGLang, the samples of an n > 1 request run under fresh rids, so only requests with n == 1 (or a
  list of texts with one rid each) can be aborted by rid; a disconnect is noticed after
  `disconnect_check_s` (SGLang 4 s, vLLM at once).
- Router flavour: what the router itself answers (`/readiness`, `/liveness`, `/health` "OK", its own
  `/v1/models` and `/get_server_info`, 422 for a list of texts or rids, 503 without a healthy worker,
  `/abort_request` 404), with `live_workers` healthy workers behind it; generation answers as SGLang's.
  tests/test_sglang_router.py holds these against the real router.

Tokens are counted by `count_tokens`: one token per run of word characters and one per other
non-space character (regex `\\w+|[^\\w\\s]`). It is an approximation of a BPE tokenizer (real counts
are higher for long or rare words), deterministic, and the same for every flavour, so tests compute
what fits with it.

Run it on its own for demos: `python -m tests.scripted_sglang --port 30000 --latency 0.05`. Benchmarks
add `--lean`: `LeanSGLangServer`, the same /generate answers from a raw asyncio handler at about 0.05 ms
of CPU per request (the FastAPI server spends about 0.3 ms), so that the backend is never what they measure.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import hashlib
import json
import math
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

MODEL = "ljw13/retro-star-qwen3-14b-0928"
# Qwen3 checkpoints declare max_position_embeddings 40960, the context length SGLang and vLLM report
# unless started with --context-length / --max-model-len.
DEFAULT_CONTEXT_LENGTH = 40960
SGLANG_VERSION = "0.5.23"
VLLM_VERSION = "0.34.0"
FLAVORS = ("sglang", "vllm", "router")

# SGLang's SamplingParams.max_new_tokens default (srt/sampling/sampling_params.py).
SGLANG_DEFAULT_MAX_NEW_TOKENS = 128
# How long SGLang lets a non-streaming request wait before it checks whether the client is still there
# (SGLANG_REQUEST_STATE_WAIT_TIMEOUT, srt/environ.py); vLLM cancels the handler at once (with_cancellation).
SGLANG_DISCONNECT_CHECK_S = 4.0
VLLM_DISCONNECT_CHECK_S = 0.05
# Qwen3's <|im_end|>, the token a stop on EOS reports as `matched` (FINISH_MATCHED_TOKEN).
QWEN3_EOS_TOKEN_ID = 151645

NO_SCORE = "noscore"
LENGTH = "length"
ABORT = "abort"

_QUERY = re.compile(r"\[Begin of Query\]\n(.*?)\n\[End of Query\]", re.DOTALL)
_DOCUMENT = re.compile(r"\[Begin of Document\]\n(.*)\n\[End of Document\]\n", re.DOTALL)
_SAMPLES = re.compile(r"\[\[retrostar:([0-9a-z, ]+)\]\]")
_SLOW = re.compile(r"\[\[slow:([0-9.]+)\]\]")
_ERROR = re.compile(r"\[\[error:([0-9]{3})\]\]")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w")


# ------------------------------------------------------------------------------------------------
# Tokens and prompts
# ------------------------------------------------------------------------------------------------


def count_tokens(text: str) -> int:
    """The scripted tokenizer's count for `text` (see the module docstring)."""
    return len(_TOKEN.findall(text))


def _cut_to_tokens(text: str, limit: int) -> str:
    """The prefix of `text` that holds its first `limit` tokens."""
    if limit <= 0:
        return ""
    for index, match in enumerate(_TOKEN.finditer(text)):
        if index == limit - 1:
            return text[: match.end()]
    return text


def chat_prompt(messages: Sequence[Mapping[str, Any]], *, enable_thinking: bool = True) -> str:
    """The prompt a Qwen3 chat template renders for `messages` (what the chat path counts tokens of).

    With `enable_thinking` false the template closes an empty think block, as Qwen3's does."""
    rendered = "".join(
        f"<|im_start|>{message.get('role', 'user')}\n{message.get('content') or ''}<|im_end|>\n"
        for message in messages
    )
    rendered += "<|im_start|>assistant\n"
    return rendered if enable_thinking else rendered + "<think>\n\n</think>\n\n"


def expected_score(query: str, document: str) -> int:
    """The score the server gives a pair without a scripted answer."""
    return hashlib.sha256(f"{query}\x00{document}".encode()).digest()[0] * 100 // 255


def trajectory(query: str, document: str, score: int | None, padding_tokens: int = 0) -> str:
    """A Retro*-shaped answer: the three analysis steps, then the score (or none)."""
    padding = " considered" * padding_tokens
    analysis = (
        f"1. Query Analysis: the query asks about {query[:40]!r}.{padding}\n"
        f"2. Document Analysis: the document ({len(document)} characters) is compared with it.\n"
        "3. Relevance Annotation: scripted judgement.\n"
    )
    return analysis if score is None else f"{analysis}<score>\n{score}\n</score>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# What a test scripts
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A whole request that fails: an HTTP status (in the flavour's error shape), a dropped connection,
    or a 200 whose body is not JSON."""

    status: int = 503
    drop: bool = False
    malformed: bool = False


@dataclass(frozen=True)
class Aborted:
    """A sample the server aborts. With a `status_code` of 400-599 SGLang turns it into an HTTP error
    (`_handle_abort_finish_reason`); without one the request answers 200 with finish_reason abort."""

    message: str = "Aborted"
    status_code: int | None = None


#: One sample's scripted end: a score, `NO_SCORE`, `LENGTH`, `ABORT` or an `Aborted`.
SampleSpec = int | str | Aborted
#: A scripted answer: one spec for every sample, a sequence cycled over the samples, or a `Failure`.
AnswerSpec = SampleSpec | Sequence[SampleSpec] | Failure


@dataclass(frozen=True)
class Pair:
    """What an `answers` callable is asked about: one prompt of one request."""

    query: str
    document: str
    #: How many earlier requests carried the same prompt (0 for the first), for "fail once" scripts.
    attempt: int
    path: str


@dataclass
class Behaviour:
    """Everything a test can switch; `ScriptedSGLangServer.reset()` restores these defaults."""

    flavor: str = "sglang"
    served_model_name: str = MODEL
    model_path: str = MODEL
    context_length: int = DEFAULT_CONTEXT_LENGTH
    #: Seconds every sample takes once it is decoding (plus any `[[slow:S]]` of its document).
    latency: float = 0.0
    #: Sequences (samples) decoding at once; the others wait in a queue. None: unbounded.
    capacity: int | None = None
    #: "up", "starting" (health 503, as SGLang before its warm-up) or "unhealthy".
    status: str = "up"
    #: Router flavour: how many healthy workers the router would have.
    live_workers: int = 1
    #: Chat answers of a server started with a reasoning parser: None; "all" (the whole answer is
    #: reasoning and content is empty, as when the template forces reasoning and no </think> ends it);
    #: "split" (the analysis is reasoning, the `<score>` block is content).
    reasoning: str | None = None
    #: The message field for reasoning; None: the flavour's ("reasoning_content" for SGLang, "reasoning"
    #: for vLLM 0.34; older vLLM used "reasoning_content").
    reasoning_field: str | None = None
    #: usage.prompt_tokens_details.cached_tokens (SGLang --enable-cache-report, vLLM
    #: --enable-prompt-tokens-details).
    cache_report: bool = False
    #: A mapping from document text to an answer, or a callable Pair -> answer (None: not scripted).
    answers: Mapping[str, AnswerSpec] | Callable[[Pair], AnswerSpec | None] | None = None
    #: Failures for the next prompts, one each, in order (a list of texts takes one per text): a status,
    #: "drop" or a Failure.
    failures: list[int | str | Failure] = field(default_factory=list)
    #: Words added to every answer's analysis (longer answers, for length and throughput scripts).
    padding_tokens: int = 0
    #: Seconds between checks for a client that went away; None: the flavour's (SGLang 4 s, vLLM at once).
    disconnect_check_s: float | None = None


@dataclass
class Seen:
    """One generation request as the server received it."""

    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class Stats:
    """What the server saw. `prompts` and `sampling` have one entry per prompt (a list of texts counts
    each); `in_flight` counts prompts being answered, `running` and `queued` samples."""

    prompts: list[str] = field(default_factory=list)
    sampling: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    #: rids the clients sent (a list of rids counts each).
    rids: list[str] = field(default_factory=list)
    #: The bodies of `POST /abort_request`.
    abort_requests: list[dict[str, Any]] = field(default_factory=list)
    #: Sample rids that an abort stopped, and those whose client went away before they finished.
    aborted: list[str] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    #: Every request by "METHOD /path", health checks and the router's worker discovery included.
    calls: Counter[str] = field(default_factory=Counter)
    #: Prompts (query-document pairs) generated per query (the prompt's query), in lean mode too: which
    #: worker behind a router answered which query's pairs.
    queries: Counter[str] = field(default_factory=Counter)
    #: Prompts (query-document pairs) and samples generated, counted in lean mode too.
    pairs: int = 0
    samples: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    running: int = 0
    max_running: int = 0
    queued: int = 0
    max_queued: int = 0

    @property
    def routing_keys(self) -> list[str]:
        """The X-SMG-Routing-Key header of each generation request that had one."""
        return [
            seen.headers["x-smg-routing-key"] for seen in self.requests if "x-smg-routing-key" in seen.headers
        ]

    def reset(self) -> None:
        for name in ("prompts", "sampling", "requests", "rids", "abort_requests", "aborted", "disconnected"):
            getattr(self, name).clear()
        self.calls.clear()
        self.queries.clear()
        self.pairs = self.samples = 0
        self.max_in_flight = self.max_running = self.max_queued = 0


# ------------------------------------------------------------------------------------------------
# The generation model: samples, slots, prefix cache
# ------------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    """One sample's scripted end, resolved."""

    score: int | None
    finish: str  # "stop" | "length" | "abort"
    abort: Aborted | None = None


@dataclass(eq=False)
class _Sample:
    rid: str
    query: str
    document: str
    outcome: _Outcome
    delay: float
    prompt_tokens: int
    cached_tokens: int
    max_new_tokens: int | None
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    #: Where an abort found it: "queued" or "running"; None while not aborted.
    aborted_in: str | None = None
    #: Set when any sample of its request stops early (shared by the request's samples).
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


class _Slots:
    """The decoding capacity: a sample runs when a slot is free and waits in FIFO order otherwise."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.waiting: deque[tuple[_Sample, asyncio.Future[None]]] = deque()

    async def acquire(self, sample: _Sample, capacity: int | None) -> bool:
        """Wait for a slot; True when the sample holds one (then `release` it), False when it was
        aborted before it got one."""
        if sample.aborted_in is not None:
            return False
        if capacity is None or (self.stats.running < capacity and not self.waiting):
            self.start(sample)
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((sample, future))
        self.stats.queued += 1
        self.stats.max_queued = max(self.stats.max_queued, self.stats.queued)
        await future
        return sample.started is not None

    def release(self, capacity: int | None) -> None:
        self.stats.running -= 1
        while self.waiting and (capacity is None or self.stats.running < capacity):
            sample, future = self.waiting.popleft()
            self.stats.queued -= 1
            self.start(sample)
            future.set_result(None)

    def drop_waiting(self, sample: _Sample) -> None:
        for entry in self.waiting:
            if entry[0] is sample:
                self.waiting.remove(entry)
                self.stats.queued -= 1
                entry[1].set_result(None)
                return

    def start(self, sample: _Sample) -> None:
        sample.started = time.monotonic()
        self.stats.running += 1
        self.stats.max_running = max(self.stats.max_running, self.stats.running)


class _PrefixCache:
    """Which prompts the server computed before, to count the tokens a new prompt shares with them, as
    SGLang's radix cache reuses them.

    The longest prefix a prompt shares with any earlier one is the longer of those it shares with its two
    neighbours in sorted order, so a lookup is a bisection. A request reuses at most its prompt length
    minus one token (schedule_batch.py: max_prefix_len = input_len - 1)."""

    MAX_PROMPTS = 20_000

    def __init__(self) -> None:
        self._seen: list[str] = []

    def lookup_and_insert(self, prompt: str, prompt_tokens: int) -> int:
        seen = self._seen
        index = bisect.bisect_left(seen, prompt)
        shared, other = 0, ""
        for neighbour in seen[max(index - 1, 0) : index + 1]:
            length = _common_prefix_length(prompt, neighbour)
            if length > shared:
                shared, other = length, neighbour
        if index == len(seen) or seen[index] != prompt:
            if len(seen) >= self.MAX_PROMPTS:
                seen.clear()
                index = 0
            seen.insert(index, prompt)
        if shared == 0:
            return 0
        cached = count_tokens(prompt[:shared])
        # A word cut at the end of the shared text is a different token in the two prompts.
        if _WORD.match(prompt[shared - 1]) and _WORD.match(
            prompt[shared : shared + 1] + other[shared : shared + 1]
        ):
            cached -= 1
        return min(cached, max(prompt_tokens - 1, 0))

    def clear(self) -> None:
        self._seen.clear()


def _common_prefix_length(first: str, second: str) -> int:
    low, high = 0, min(len(first), len(second))
    while low < high:
        middle = (low + high + 1) // 2
        if first[:middle] == second[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


class _RequestError(Exception):
    """A request the server refuses, answered in the flavour's error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, err_type: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.err_type = err_type


# ------------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------------


class ScriptedSGLangServer:
    """The scripted server on a real uvicorn in a background thread: `with ScriptedSGLangServer() as s:`.

    `script(**changes)` switches behaviour (see `Behaviour`), `reset()` restores the defaults and clears
    the stats and the prefix cache; `stop()` (graceful) or `kill()` (connections cut) take it down and
    `start()` brings it back on the same port. `lean=True` (benchmarks) skips the prefix cache and keeps
    counters only (`calls`, `pairs`, `samples`, `in_flight`, `running`, `queued`, aborts), no prompts or
    bodies."""

    def __init__(self, *, port: int | None = None, lean: bool = False, **behaviour: Any) -> None:
        self.behaviour = Behaviour()
        self.script(**behaviour)
        self.stats = Stats()
        self.lean = lean
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(self)
        self._cache = _PrefixCache()
        self._attempts: Counter[int] = Counter()
        self._live: dict[str, _Sample] = {}
        self._slots = _Slots(self.stats)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -----------------------------------------------------------------------------

    def script(self, **changes: Any) -> ScriptedSGLangServer:
        names = {f.name for f in fields(Behaviour)}
        unknown = set(changes) - names
        if unknown:
            raise TypeError(f"unknown scripted behaviour: {sorted(unknown)}")
        if changes.get("flavor", self.behaviour.flavor) not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}")
        if "failures" in changes:
            changes["failures"] = list(changes["failures"])
        self.behaviour = replace(self.behaviour, **changes)
        return self

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.stats.reset()
        self._cache.clear()
        self._attempts.clear()

    def flush_cache(self) -> None:
        self._cache.clear()

    def connections(self) -> list[object]:
        """The HTTP connections open now (uvicorn's connection protocols): whether clients keep them."""
        return list(self._server.server_state.connections) if self._server is not None else []

    def live_rids(self) -> list[str]:
        """Rids of the samples queued or decoding now (the GPU work a client could still free)."""
        return list(self._live)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> ScriptedSGLangServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"scripted model server did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut down as a server does: no new connections, requests under way are answered."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def kill(self) -> None:
        """Die as a crashed worker does: every open connection is cut, requests under way get no answer."""
        server = self._server
        if server is None:
            return

        def cut_connections() -> None:
            # Refuse new connections at once: uvicorn itself would only notice should_exit on its next tick.
            for listener in server.servers:
                listener.close()
            for connection in list(server.server_state.connections):
                connection.transport.abort()
            # The handlers end at once (their answers go nowhere), so the shutdown has nothing to wait for.
            for sample in list(self._live.values()):
                self._stop(sample)

        server.servers[0].get_loop().call_soon_threadsafe(cut_connections)
        self.stop()

    def __enter__(self) -> ScriptedSGLangServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- generation ----------------------------------------------------------------------------

    def _record(self, path: str, request: Request, body: Any) -> None:
        if not self.lean:
            self.stats.requests.append(Seen(path, body, {k.lower(): v for k, v in request.headers.items()}))

    def _next_failure(self, document: str) -> Failure | None:
        if self.behaviour.failures:
            scripted = self.behaviour.failures.pop(0)
            if isinstance(scripted, Failure):
                return scripted
            return Failure(drop=True) if scripted == "drop" else Failure(status=int(scripted))
        if "[[drop]]" in document:
            return Failure(drop=True)
        if "[[malformed]]" in document:
            return Failure(malformed=True)
        error = _ERROR.search(document)
        return Failure(status=int(error.group(1))) if error else None

    def _plan(self, prompt: str, path: str, n: int) -> tuple[str, str, list[_Outcome] | Failure, float]:
        """The query, the document, the samples' outcomes (or a failure) and the delay for one prompt."""
        query_match, document_match = _QUERY.search(prompt), _DOCUMENT.search(prompt)
        query = query_match.group(1) if query_match else ""
        document = document_match.group(1) if document_match else prompt
        key = hash(prompt)
        attempt = self._attempts[key]
        self._attempts[key] += 1
        slow = _SLOW.search(document)
        delay = self.behaviour.latency + (float(slow.group(1)) if slow else 0.0)
        failure = self._next_failure(document)
        if failure is not None:
            return query, document, failure, delay
        spec = self._scripted_answer(Pair(query, document, attempt, path))
        if isinstance(spec, Failure):
            return query, document, spec, delay
        if spec is None:
            marker = _SAMPLES.search(document)
            if marker is not None:
                spec = [_parse_item(item) for item in marker.group(1).replace(" ", "").split(",") if item]
            elif "[[noscore]]" in document or not query_match:
                spec = NO_SCORE
            else:
                spec = expected_score(query, document)
        specs = list(spec) if isinstance(spec, Sequence) and not isinstance(spec, str) else [spec]
        return query, document, [_outcome(specs[i % len(specs)]) for i in range(n)], delay

    def _scripted_answer(self, pair: Pair) -> AnswerSpec | None:
        answers = self.behaviour.answers
        if answers is None:
            return None
        if callable(answers):
            return answers(pair)
        return answers.get(pair.document)

    def _check_context(self, prompt_tokens: int, max_new_tokens: int | None, chat: bool) -> int | None:
        """Refuse a prompt that does not fit as the flavour does; the max_new_tokens to use otherwise."""
        context = self.behaviour.context_length
        if self.behaviour.flavor == "vllm":
            # renderers/params.py _token_len_check, TokenizeParams.__post_init__; api_utils.get_max_tokens
            # clamps max_tokens to what is left of the context instead of refusing.
            if max_new_tokens is not None and max_new_tokens > context:
                raise _RequestError(
                    400,
                    f"max_tokens={max_new_tokens} cannot be greater than max_model_len={context}. "
                    "Please request fewer output tokens.",
                    param="max_tokens",
                )
            if prompt_tokens > context:
                raise _RequestError(
                    400,
                    f"This model's maximum context length is {context} tokens. However, your prompt "
                    f"contains {prompt_tokens} input tokens, which exceeds this limit even without any "
                    "output tokens. Please reduce the length of the input prompt.",
                    param="input_tokens",
                )
            left = context - prompt_tokens
            return left if max_new_tokens is None else min(max_new_tokens, left)
        # SGLang tokenizer_manager._validate_one_request (no --allow-auto-truncate).
        if prompt_tokens >= context:
            raise _RequestError(
                400,
                f"The input ({prompt_tokens} tokens) is longer than the model's context length "
                f"({context} tokens).",
            )
        if max_new_tokens is not None and max_new_tokens + prompt_tokens > context:
            raise _RequestError(
                400,
                "Requested token count exceeds the model's maximum context length "
                f"of {context} tokens. You requested a total of {max_new_tokens + prompt_tokens} "
                f"tokens: {prompt_tokens} tokens from the input messages and "
                f"{max_new_tokens} tokens for the completion. Please reduce the number "
                "of tokens in the input messages or the completion to fit within the limit.",
            )
        if max_new_tokens is None and not chat:
            return SGLANG_DEFAULT_MAX_NEW_TOKENS
        return max_new_tokens

    async def generate(
        self,
        request: Request,
        path: str,
        prompts: list[str],
        token_prompts: list[str],
        n: int,
        max_new_tokens: int | None,
        rids: list[str | None],
    ) -> list[list[dict[str, Any]]] | Failure:
        """Generate `n` samples for each prompt; one list of SGLang output objects per prompt.

        `token_prompts` are what the server tokenizes (the chat path's templated prompt)."""
        chat = path != "/generate"
        checked = []
        for token_prompt in token_prompts:
            tokens = count_tokens(token_prompt)
            checked.append((tokens, self._check_context(tokens, max_new_tokens, chat)))
        for rid in rids:
            if rid is not None and rid in self._live:
                raise _RequestError(400, f"Duplicate request ID detected: {rid}")
        plans = [
            (*check, *self._plan(prompt, path, n)) for check, prompt in zip(checked, prompts, strict=True)
        ]
        failure = next((plan[4] for plan in plans if isinstance(plan[4], Failure)), None)
        if failure is not None:
            return failure

        samples: list[list[_Sample]] = []
        stopped = asyncio.Event()
        for (tokens, usable_max_new, query, document, outcomes, delay), rid, token_prompt in zip(
            plans, rids, token_prompts, strict=True
        ):
            cached = 0 if self.lean else self._cache.lookup_and_insert(token_prompt, tokens)
            # With n > 1 SGLang first prefills the prompt once, then gives every sample a fresh rid
            # (tokenizer_manager._handle_batch_request: regenerate_rid), so the client's rid names none.
            sample_rids = [rid or uuid.uuid4().hex] if n == 1 else [uuid.uuid4().hex for _ in range(n)]
            prompt_samples = []
            for index, (sample_rid, outcome) in enumerate(zip(sample_rids, outcomes, strict=True)):
                sample = _Sample(
                    rid=sample_rid,
                    query=query,
                    document=document,
                    outcome=outcome,
                    delay=delay,
                    prompt_tokens=tokens,
                    cached_tokens=cached if index == 0 else max(tokens - 1, 0),
                    max_new_tokens=usable_max_new,
                    stopped=stopped,
                )
                self._live[sample_rid] = sample
                prompt_samples.append(sample)
            samples.append(prompt_samples)
        every = [sample for prompt_samples in samples for sample in prompt_samples]
        self.stats.pairs += len(samples)
        self.stats.queries.update(plan[2] for plan in plans)
        self.stats.samples += len(every)
        try:
            if any(sample.delay > 0 for sample in every) or self.behaviour.capacity is not None:
                await self._run_until_done(request, every)
            else:
                for sample in every:
                    sample.started = time.monotonic()
        finally:
            for sample in every:
                self._live.pop(sample.rid, None)
        padding = self.behaviour.padding_tokens
        return [[_output(sample, padding) for sample in prompt_samples] for prompt_samples in samples]

    async def _run_until_done(self, request: Request, every: list[_Sample]) -> None:
        check = self.behaviour.disconnect_check_s
        if check is None:
            check = VLLM_DISCONNECT_CHECK_S if self.behaviour.flavor == "vllm" else SGLANG_DISCONNECT_CHECK_S
        if self.behaviour.capacity is None:
            # Every sample decodes at once: one wait for the whole request.
            for sample in every:
                self._slots.start(sample)
            try:
                await self._decode(every, request, check)
            finally:
                for _ in every:
                    self._slots.release(None)
            return
        tasks = {asyncio.ensure_future(self._decode_in_a_slot(sample)) for sample in every}
        pending = tasks
        while pending:
            _, pending = await asyncio.wait(pending, timeout=check)
            if pending and await request.is_disconnected():
                self._client_gone(every)
                await asyncio.wait(pending)
                return

    async def _decode_in_a_slot(self, sample: _Sample) -> None:
        if not await self._slots.acquire(sample, self.behaviour.capacity):
            return
        try:
            await self._decode([sample])
        finally:
            self._slots.release(self.behaviour.capacity)

    async def _decode(
        self, samples: list[_Sample], request: Request | None = None, check: float = math.inf
    ) -> None:
        """Wait until each sample has decoded for its delay or was stopped; with a `request`, stop them
        all once its client has gone (checked every `check` seconds)."""
        stopped = samples[0].stopped  # one event per request, set by any stop
        next_check = time.monotonic() + check
        while True:
            now = time.monotonic()
            ends = [
                sample.started + sample.delay
                for sample in samples
                if sample.aborted_in is None
                and sample.started is not None
                and sample.started + sample.delay > now
            ]
            if not ends:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), min(*ends, next_check) - now)
            stopped.clear()
            if request is not None and time.monotonic() >= next_check:
                if await request.is_disconnected():
                    self._client_gone(samples)
                next_check = time.monotonic() + check

    def _client_gone(self, samples: list[_Sample]) -> None:
        for sample in samples:
            if self._stop(sample):
                self.stats.disconnected.append(sample.rid)

    def _stop(self, sample: _Sample) -> bool:
        """Abort a live sample where it is (queue or decoding); False when it already finished."""
        if sample.aborted_in is not None or self._live.get(sample.rid) is not sample:
            return False
        sample.aborted_in = "running" if sample.started is not None else "queued"
        sample.stopped.set()
        if sample.started is None:
            self._slots.drop_waiting(sample)
        return True

    def abort(self, rid: str, abort_all: bool = False) -> None:
        """SGLang's abort: the rid must name a live request (tokenizer_manager.abort_request), and the
        scheduler then stops every request whose rid starts with it (scheduler.abort_request)."""
        if not abort_all and rid not in self._live:
            return
        for sample in list(self._live.values()):
            if (abort_all or sample.rid.startswith(rid)) and self._stop(sample):
                self.stats.aborted.append(sample.rid)


def _output(sample: _Sample, padding_tokens: int = 0) -> dict[str, Any]:
    """One SGLang output object: text, output_ids and meta_info (tokenizer_manager._handle_batch_output
    for finished samples, _handle_abort_req for samples aborted in the waiting queue)."""
    e2e_latency = time.monotonic() - sample.created
    if sample.aborted_in == "queued":
        return {
            "text": "",
            "output_ids": [],
            "meta_info": {
                "id": sample.rid,
                "finish_reason": {"type": "abort", "message": "Abort in waiting queue"},
                "weight_version": "default",
                "e2e_latency": e2e_latency,
                "completion_tokens": 0,
            },
        }
    full = trajectory(sample.query, sample.document, sample.outcome.score, padding_tokens)
    full_tokens = count_tokens(full)
    limit = sample.max_new_tokens
    if sample.aborted_in == "running":
        # Aborted while decoding: the text generated so far (scheduler: FINISH_ABORT()).
        decoded = time.monotonic() - (sample.started or sample.created)
        share = min(decoded / sample.delay, 1.0) if sample.delay > 0 else 0.0
        text = _cut_to_tokens(full, int(full_tokens * share))
        finish: dict[str, Any] = _abort_reason(Aborted())
    elif sample.outcome.finish == ABORT:
        text = _cut_to_tokens(full, full_tokens // 2)
        finish = _abort_reason(sample.outcome.abort or Aborted())
    elif sample.outcome.finish == LENGTH:
        # Ran to the token limit without finishing its answer.
        limit = limit if limit is not None else SGLANG_DEFAULT_MAX_NEW_TOKENS
        filler = " and so on" * limit
        text = _cut_to_tokens(full + filler, limit)
        finish = {"type": "length", "length": limit}
    elif limit is not None and full_tokens > limit:
        text = _cut_to_tokens(full, limit)
        finish = {"type": "length", "length": limit}
    else:
        text = full
        finish = {"type": "stop", "matched": QWEN3_EOS_TOKEN_ID}
    completion_tokens = full_tokens if text is full else count_tokens(text)
    return {
        "text": text,
        "output_ids": list(range(completion_tokens)),
        "meta_info": {
            "id": sample.rid,
            "finish_reason": finish,
            "prompt_tokens": sample.prompt_tokens,
            "weight_version": "default",
            "num_retractions": 0,
            "reasoning_tokens": 0,
            "completion_tokens": completion_tokens,
            "cached_tokens": sample.cached_tokens,
            "e2e_latency": e2e_latency,
        },
    }


def _parse_item(item: str) -> SampleSpec:
    return int(item) if item.isdigit() else item


def _outcome(spec: SampleSpec) -> _Outcome:
    if isinstance(spec, Aborted):
        return _Outcome(None, ABORT, spec)
    if isinstance(spec, int) and not isinstance(spec, bool):
        return _Outcome(spec, "stop")
    if spec == NO_SCORE:
        return _Outcome(None, "stop")
    if spec == LENGTH:
        return _Outcome(None, LENGTH)
    if spec == ABORT:
        return _Outcome(None, ABORT, Aborted())
    raise ValueError(f"not a scripted sample: {spec!r}")


def _abort_reason(abort: Aborted) -> dict[str, Any]:
    # schedule_batch.py FINISH_ABORT.to_json
    return {"type": "abort", "message": abort.message, "status_code": abort.status_code, "err_type": None}


def _http_abort(outputs: list[list[dict[str, Any]]]) -> Aborted | None:
    """An abort that SGLang answers as an HTTP error (a status_code of 400-599), if any sample has one."""
    for prompt_outputs in outputs:
        for output in prompt_outputs:
            reason = output["meta_info"]["finish_reason"]
            status = reason.get("status_code")
            if reason.get("type") == "abort" and status is not None and 400 <= status < 600:
                return Aborted(reason["message"], status)
    return None


# ------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------


def _not_found() -> JSONResponse:
    # FastAPI's own answer for a route a server does not have (SGLang and vLLM are FastAPI apps).
    return JSONResponse({"detail": "Not Found"}, status_code=404)


def _router_not_found() -> Response:
    # sglang-router: an unknown route answers an empty 404 (server.rs sink_handler).
    return Response(status_code=404)


def _router_error(status: int, code: str, message: str) -> JSONResponse:
    # sglang-router src/routers/error.rs create_error
    phrases = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}
    return JSONResponse(
        {"error": {"type": phrases.get(status, str(status)), "code": code, "message": message}},
        status_code=status,
        headers={"X-SMG-Error-Code": code},
    )


def _sglang_generate_error(status: int, message: str) -> JSONResponse:
    # http_server._create_error_response: what /generate answers for a ValueError.
    return JSONResponse({"error": {"message": message}}, status_code=status)


def _sglang_openai_error(status: int, message: str, err_type: str = "BadRequestError") -> JSONResponse:
    # openai/serving_base.create_error_response (ErrorResponse); HTTPExceptions carry type str(status).
    return JSONResponse(
        {"object": "error", "message": message, "type": err_type, "param": None, "code": status},
        status_code=status,
    )


def _vllm_error(status: int, message: str, err_type: str, param: str | None = None) -> JSONResponse:
    # serve/exception_handling/error_response.create_error_response (ErrorResponse{error: ErrorInfo})
    return JSONResponse(
        {"error": {"message": message, "type": err_type, "param": param, "code": status}},
        status_code=status,
    )


def _scripted_failure(
    server: ScriptedSGLangServer, request: Request, failure: Failure, chat: bool
) -> Response:
    if failure.drop:
        request.scope["scripted.drop_connection"]()
        return Response(status_code=500)  # never sent: the connection is gone
    if failure.malformed:
        return PlainTextResponse("<html>not json", status_code=200)
    message = "scripted failure"
    flavor = server.behaviour.flavor
    if flavor == "vllm":
        return _vllm_error(failure.status, message, "InternalServerError")
    if chat:
        return _sglang_openai_error(failure.status, message, str(failure.status))
    return _sglang_generate_error(failure.status, message)


def create_app(server: ScriptedSGLangServer) -> Callable[..., Awaitable[None]]:
    """The ASGI app: FastAPI routes, wrapped so that a scripted failure can drop the connection."""
    app = FastAPI(title="scripted model server")
    stats = server.stats

    def flavor() -> str:
        return server.behaviour.flavor

    def track_prompts(count: int) -> None:
        stats.in_flight += count
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)

    def router_without_workers() -> Response | None:
        # The router's answer to a generation when no worker is healthy (router.rs select_worker_for_model).
        if flavor() == "router" and server.behaviour.live_workers <= 0:
            return _router_error(
                503, "no_available_workers", "No available workers (all circuits open or unhealthy)"
            )
        return None

    @app.post("/generate")
    async def generate(request: Request) -> Response:
        if flavor() == "vllm":
            return _not_found()
        body = await request.json()
        server._record("/generate", request, body)
        texts = body.get("text")
        if flavor() == "router":
            # The router's GenerateRequest takes one string for text and for rid (protocols/generate.rs);
            # axum answers anything else with a 422 in plain text.
            for name in ("text", "rid"):
                if isinstance(body.get(name), list):
                    return PlainTextResponse(
                        "Failed to deserialize the JSON body into the target type: "
                        f"{name}: invalid type: sequence, expected a string",
                        status_code=422,
                    )
            unavailable = router_without_workers()
            if unavailable is not None:
                return unavailable
        if not isinstance(texts, str | list) or not texts:
            return _sglang_generate_error(400, "The scripted server reads `text` (a string or a list).")
        is_single = isinstance(texts, str)
        prompts = [texts] if is_single else list(texts)
        sampling = body.get("sampling_params") or {}
        sampling_list = sampling if isinstance(sampling, list) else [sampling] * len(prompts)
        n = int(sampling_list[0].get("n", 1))
        max_new = sampling_list[0].get("max_new_tokens")
        try:
            rids = _generate_rids(body.get("rid"), len(prompts), is_single, n)
        except _RequestError as error:
            return _sglang_generate_error(error.status, error.message)
        if not server.lean:
            stats.prompts.extend(prompts)
            stats.sampling.extend(sampling_list)
            stats.rids.extend(rid for rid in rids if rid is not None)
        track_prompts(len(prompts))
        try:
            outputs = await server.generate(request, "/generate", prompts, prompts, n, max_new, rids)
        except _RequestError as error:
            return _sglang_generate_error(error.status, error.message)
        finally:
            stats.in_flight -= len(prompts)
        if isinstance(outputs, Failure):
            return _scripted_failure(server, request, outputs, chat=False)
        http_abort = _http_abort(outputs)
        if http_abort is not None:
            # tokenizer_manager._handle_abort_finish_reason: 400 is a ValueError, the rest HTTPExceptions.
            if http_abort.status_code == 400:
                return _sglang_generate_error(400, http_abort.message)
            status = http_abort.status_code or 500
            return _sglang_openai_error(status, http_abort.message, str(status))
        flat = [output for prompt_outputs in outputs for output in prompt_outputs]
        # One text with n == 1 answers an object; otherwise a flat list, prompt by prompt.
        return JSONResponse(flat[0] if is_single and n == 1 else flat)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await request.json()
        server._record("/v1/chat/completions", request, body)
        behaviour = server.behaviour
        model = body.get("model")
        if flavor() == "vllm" and model and model != behaviour.served_model_name:
            # serve/engine/serving.py _check_model
            return _vllm_error(
                404,
                f"The model `{model}` does not exist. Valid aliases: {behaviour.served_model_name}.",
                "NotFoundError",
                "model",
            )
        unavailable = router_without_workers()
        if unavailable is not None:
            return unavailable
        messages = body.get("messages") or []
        if not messages:
            if flavor() == "vllm":
                return _vllm_error(400, "messages: field required", "BadRequestError")
            return _sglang_openai_error(400, "Messages cannot be empty.")
        n = int(body.get("n") or 1)
        max_new = body.get("max_completion_tokens") or body.get("max_tokens")
        template_kwargs = body.get("chat_template_kwargs") or {}
        prompt = messages[-1].get("content") or ""
        templated = chat_prompt(messages, enable_thinking=template_kwargs.get("enable_thinking", True))
        # SGLang's ChatCompletionRequest takes a rid; vLLM's and the router's do not.
        rid = body.get("rid") if flavor() == "sglang" and isinstance(body.get("rid"), str) else None
        if not server.lean:
            stats.prompts.append(prompt)
            stats.sampling.append({k: v for k, v in body.items() if k not in ("messages", "model")})
            if rid is not None:
                stats.rids.append(rid)
        track_prompts(1)
        try:
            outputs = await server.generate(
                request, "/v1/chat/completions", [prompt], [templated], n, max_new, [rid]
            )
        except _RequestError as error:
            if flavor() == "vllm":
                return _vllm_error(error.status, error.message, "BadRequestError", error.param)
            return _sglang_openai_error(error.status, error.message)
        finally:
            stats.in_flight -= 1
        if isinstance(outputs, Failure):
            return _scripted_failure(server, request, outputs, chat=True)
        http_abort = _http_abort(outputs)
        if http_abort is not None and flavor() != "vllm":
            # serving_chat: a ValueError becomes BadRequestError, an HTTPException type str(status).
            status = http_abort.status_code or 500
            err_type = "BadRequestError" if status == 400 else str(status)
            return _sglang_openai_error(status, http_abort.message, err_type)
        return JSONResponse(_chat_response(server, body, outputs[0]))

    @app.post("/abort_request")
    async def abort_request(request: Request) -> Response:
        if flavor() != "sglang":
            return missing()
        body = await request.json()
        stats.abort_requests.append(body)
        server.abort(str(body.get("rid") or ""), bool(body.get("abort_all")))
        return Response(status_code=200)

    @app.post("/flush_cache")
    async def flush_cache() -> Response:
        if flavor() != "sglang":
            return missing()
        server.flush_cache()
        return PlainTextResponse("Cache flushed.\nPlease check backend logs for more details. ")

    @app.get("/health")
    async def health() -> Response:
        if flavor() == "router":
            return PlainTextResponse("OK")  # server.rs: health is liveness
        # SGLang: 503 while starting or unhealthy (http_server.health_generate); vLLM: 503 when the engine
        # is dead (instrumentator/health.py).
        return Response(status_code=200 if server.behaviour.status == "up" else 503)

    @app.get("/health_generate")
    async def health_generate() -> Response:
        if flavor() == "vllm":
            return missing()
        if flavor() == "router":
            # Answered by the router manager from the workers it holds healthy, no worker is asked.
            if server.behaviour.live_workers > 0:
                return PlainTextResponse("At least one router has healthy workers")
            return PlainTextResponse("No routers with healthy workers available", status_code=503)
        return Response(status_code=200 if server.behaviour.status == "up" else 503)

    @app.get("/ready")
    async def ready() -> Response:
        if flavor() != "sglang":
            return missing()
        return Response(status_code=200 if server.behaviour.status == "up" else 503)

    @app.get("/liveness")
    async def liveness() -> Response:
        return PlainTextResponse("OK") if flavor() == "router" else missing()

    @app.get("/readiness")
    async def readiness() -> Response:
        if flavor() != "router":
            return missing()
        workers = server.behaviour.live_workers
        if workers > 0:
            return JSONResponse({"status": "ready", "healthy_workers": workers, "total_workers": workers})
        return JSONResponse(
            {"status": "not ready", "reason": "insufficient healthy workers"}, status_code=503
        )

    @app.get("/model_info")
    @app.get("/server_info")
    async def current_info(request: Request) -> Response:
        # SGLang 0.5.23's names; the router serves only the deprecated get_* ones.
        if flavor() != "sglang":
            return missing()
        return await deprecated_info(request)

    @app.get("/get_model_info")
    @app.get("/get_server_info")
    async def deprecated_info(request: Request) -> Response:
        behaviour = server.behaviour
        model = request.url.path.endswith("model_info")
        if flavor() == "vllm":
            return missing()
        if flavor() == "router":
            if not model:
                # The router answers about itself (router manager), not about a worker.
                workers = behaviour.live_workers
                return JSONResponse({"router_manager": True, "routers_count": 1, "workers_count": workers})
            if behaviour.live_workers <= 0:
                # router.rs proxy_get_request: the first healthy worker answers, or none.
                return _router_error(503, "no_workers", "No workers are available")
        return JSONResponse(_model_info(behaviour) if model else _server_info(behaviour))

    @app.get("/v1/models")
    async def models() -> Response:
        behaviour = server.behaviour
        if flavor() == "router":
            # The router lists the models of its registry itself: no max_model_len, whatever the workers.
            card = {"id": behaviour.served_model_name, "object": "model", "owned_by": "local"}
            return JSONResponse({"object": "list", "data": [card]})
        return JSONResponse(_model_list(behaviour))

    @app.get("/version")
    async def version() -> Response:
        return JSONResponse({"version": VLLM_VERSION}) if flavor() == "vllm" else missing()

    def missing() -> Response:
        # A route this flavour does not have: FastAPI's 404 (SGLang, vLLM), or the router's empty one.
        return _router_not_found() if flavor() == "router" else _not_found()

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        def drop_connection() -> None:
            # uvicorn's send is its RequestResponseCycle's method: close the socket under it and mark
            # the cycle disconnected (uvicorn then sends nothing more), so the client sees the
            # connection end with no answer at all.
            cycle = send.__self__
            cycle.transport.close()
            cycle.disconnected = True

        async def send_with_request_id(message: dict[str, Any]) -> None:
            # The router answers with the request's x-request-id, or one of its own (middleware.rs).
            if message["type"] == "http.response.start":
                headers = dict(scope["headers"])
                request_id = headers.get(b"x-request-id") or f"req-{uuid.uuid4().hex[:24]}".encode()
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id)]}
            await send(message)

        stats.calls[f"{scope['method']} {scope['path']}"] += 1
        scope["scripted.drop_connection"] = drop_connection
        await app(scope, receive, send_with_request_id if flavor() == "router" else send)

    return asgi


def _generate_rids(rid: Any, batch: int, is_single: bool, n: int) -> list[str | None]:
    """One rid (or None) per prompt, as GenerateReqInput normalizes them (io_struct.py _normalize_rid,
    _validate_rid_uniqueness)."""
    if rid is None:
        return [None] * batch
    if is_single and n == 1:
        if not isinstance(rid, str):
            raise _RequestError(400, "The rid should be a string or a list of strings.")
        return [rid]
    if isinstance(rid, str):
        return [rid] if is_single else [f"{rid}_{i}" for i in range(batch)]
    if isinstance(rid, list):
        if len(rid) != batch:
            raise _RequestError(
                400, "The specified rids length mismatch with the batch_size for batch processing."
            )
        duplicates = [value for value, count in Counter(rid).items() if count > 1]
        if duplicates:
            raise _RequestError(400, f"Duplicate request IDs detected within the request: {duplicates}")
        return [str(value) for value in rid]
    raise _RequestError(400, "The rid should be a string or a list of strings.")


def _chat_response(
    server: ScriptedSGLangServer, body: Mapping[str, Any], outputs: list[dict[str, Any]]
) -> dict[str, Any]:
    """A chat completion in the flavour's shape, built from SGLang-style outputs (one per choice)."""
    behaviour = server.behaviour
    vllm = behaviour.flavor == "vllm"
    field_name = behaviour.reasoning_field or ("reasoning" if vllm else "reasoning_content")
    separate = behaviour.reasoning is not None and (vllm or body.get("separate_reasoning", True))
    choices = []
    for index, output in enumerate(outputs):
        text = output["text"]
        reasoning = None
        if separate:
            cut = len(text) if behaviour.reasoning == "all" else text.find("<score>")
            cut = len(text) if cut < 0 else cut
            reasoning, text = text[:cut] or None, text[cut:]
        finish = output["meta_info"]["finish_reason"]
        # SGLang: content "" rather than null (serving_chat._build_chat_response); vLLM: null.
        message: dict[str, Any] = {"role": "assistant", "content": (text or None) if vllm else (text or "")}
        message[field_name] = reasoning
        if vllm:
            message.update(refusal=None, audio=None, function_call=None)
        choice: dict[str, Any] = {
            "index": index,
            "message": message,
            "logprobs": None,
            "finish_reason": finish["type"],
        }
        if vllm:
            choice["stop_reason"] = None
        else:
            choice["matched_stop"] = finish.get("matched")
        choices.append(choice)
    first = outputs[0]["meta_info"]
    prompt_tokens = first.get("prompt_tokens", 0)
    completion_tokens = sum(output["meta_info"].get("completion_tokens", 0) for output in outputs)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": {"cached_tokens": first.get("cached_tokens", 0)}
        if behaviour.cache_report
        else None,
    }
    if vllm:
        if usage["prompt_tokens_details"] is None:
            del usage["prompt_tokens_details"]  # exclude_if None (serve/engine/protocol.py UsageInfo)
        usage["completion_tokens_details"] = None
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or behaviour.served_model_name,
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": None,
            "usage": usage,
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "kv_transfer_params": None,
        }
    usage["reasoning_tokens"] = 0
    usage["completion_tokens_details"] = None
    return {
        "id": first["id"],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": choices,
        "usage": usage,
        "metadata": {"weight_version": "default"},
    }


def _model_info(behaviour: Behaviour) -> dict[str, Any]:
    # http_server.model_info (SGLang 0.5.23; older versions return fewer of these fields)
    qwen2 = "qwen2" in behaviour.model_path.lower() or "0923" in behaviour.model_path
    return {
        "model_path": behaviour.model_path,
        "served_model_name": behaviour.served_model_name,
        "tokenizer_path": behaviour.model_path,
        "is_generation": True,
        "preferred_sampling_params": None,
        "weight_version": "default",
        "load_format": "auto",
        "reasoning_parser": "qwen3" if behaviour.reasoning else None,
        "tool_call_parser": None,
        "disaggregation_mode": "null",
        "has_image_understanding": False,
        "has_audio_understanding": False,
        # From the checkpoint's config.json: Retro* *-0923 are Qwen2.5 models, *-0928 Qwen3.
        "model_type": "qwen2" if qwen2 else "qwen3",
        "architectures": ["Qwen2ForCausalLM" if qwen2 else "Qwen3ForCausalLM"],
    }


def _server_info(behaviour: Behaviour) -> dict[str, Any]:
    # http_server.server_info: the resolved server args plus scheduler info; a subset of its fields,
    # those the router reads (discover_metadata.rs ServerInfo) and the limits a client would read.
    return {
        "model_path": behaviour.model_path,
        "tokenizer_path": behaviour.model_path,
        "served_model_name": behaviour.served_model_name,
        "context_length": behaviour.context_length,
        "tp_size": 1,
        "dp_size": 1,
        "load_balance_method": "round_robin",
        "disaggregation_mode": "null",
        "reasoning_parser": "qwen3" if behaviour.reasoning else None,
        "enable_cache_report": behaviour.cache_report,
        "max_running_requests": behaviour.capacity,
        "max_total_num_tokens": 1_000_000,
        "max_req_input_len": behaviour.context_length - 1,
        "internal_states": [{}],
        "version": SGLANG_VERSION,
        "frontend": "python",
    }


def _model_list(behaviour: Behaviour) -> dict[str, Any]:
    name = behaviour.served_model_name
    card: dict[str, Any] = {
        "id": name,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "vllm" if behaviour.flavor == "vllm" else "sglang",
        # SGLang: root is the served name (http_server.available_models); vLLM: the model path.
        "root": behaviour.model_path if behaviour.flavor == "vllm" else name,
        "parent": None,
        "max_model_len": behaviour.context_length,
    }
    if behaviour.flavor == "vllm":
        card["permission"] = [
            {
                "id": f"modelperm-{uuid.uuid4().hex}",
                "object": "model_permission",
                "created": int(time.time()),
                "allow_create_engine": False,
                "allow_sampling": True,
                "allow_logprobs": True,
                "allow_search_indices": False,
                "allow_view": True,
                "allow_fine_tuning": False,
                "organization": "*",
                "group": None,
                "is_blocking": False,
            }
        ]
    return {"object": "list", "data": [card]}


# ------------------------------------------------------------------------------------------------
# The lean server: benchmarks' backend
# ------------------------------------------------------------------------------------------------


class LeanSGLangServer:
    """What `python -m tests.scripted_sglang --lean` runs for benchmarks: SGLang's answers in their real
    shapes at a few tens of microseconds of CPU per request, so that the backend is never what a benchmark
    measures (the FastAPI server above spends about 0.3 ms per request).

    A raw asyncio protocol over httptools (HTTP/1.1 keep-alive, idle connections closed after 5 s as
    uvicorn does) answers `POST /generate` (one text, `n` samples, `rid`, `max_new_tokens` cuts),
    `/abort_request` (accepted; nothing is tracked), the health routes, `/model_info`, `/server_info`
    (and their `/get_*` names) and `/v1/models`; anything else is a 404. Scores and `[[retrostar:...]]`
    markers as above; every sample waits `latency` seconds. The prompt's token count is an estimate (a
    token per four characters): counting it exactly costs more than the rest of the answer."""

    def __init__(self, behaviour: Behaviour, *, timeout_keep_alive: float = 5.0) -> None:
        self.behaviour = behaviour
        #: Idle connections are closed after this: uvicorn's default, SGLang's and vLLM's.
        self.timeout_keep_alive = timeout_keep_alive
        self.connections: set[_LeanConnection] = set()
        self.pairs = 0
        infos = {
            "/model_info": _model_info(behaviour),
            "/server_info": _server_info(behaviour),
            "/v1/models": _model_list(behaviour),
        }
        self._get: dict[bytes, tuple[int, bytes]] = {
            b"/health": (200, b""),
            b"/health_generate": (200, b""),
            b"/ready": (200, b""),
            **{path.encode(): (200, _json_bytes(body)) for path, body in infos.items()},
            **{
                f"/get_{path[1:]}".encode(): (200, _json_bytes(infos[path]))
                for path in ("/model_info", "/server_info")
            },
        }

    async def serve(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _LeanConnection(self), host, port, reuse_address=True)
        self._close_idle()
        async with server:
            await server.serve_forever()

    def _close_idle(self) -> None:
        # One sweep for every connection, rather than a timer per connection and request.
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self.timeout_keep_alive
        for connection in [c for c in self.connections if not c.busy and c.idle_since < cutoff]:
            connection.transport.close()
        loop.call_later(min(1.0, self.timeout_keep_alive / 2), self._close_idle)

    def answer(self, connection: _LeanConnection, method: bytes, path: bytes, body: bytes) -> None:
        if method == b"POST" and path == b"/generate":
            self._generate(connection, body)
        elif method == b"POST" and path == b"/abort_request":
            connection.respond(200, b"")
        elif method == b"GET" and path in self._get:
            connection.respond(*self._get[path])
        else:
            connection.respond(404, b'{"detail":"Not Found"}')

    def _generate(self, connection: _LeanConnection, body: bytes) -> None:
        request = json.loads(body)
        text = request.get("text")
        if not isinstance(text, str):
            connection.respond(400, b'{"error":{"message":"The lean server reads one text."}}')
            return
        sampling = request.get("sampling_params") or {}
        n = int(sampling.get("n", 1))
        query, document = (
            _between(text, "[Begin of Query]\n", "\n[End of Query]"),
            _between(text, "[Begin of Document]\n", "\n[End of Document]\n"),
        )
        marker = _SAMPLES.search(document) if "[[" in document else None
        specs: list[SampleSpec] = (
            [_parse_item(item) for item in marker.group(1).replace(" ", "").split(",") if item]
            if marker
            else [expected_score(query, document)]
        )
        rid = request.get("rid") or uuid.uuid4().hex
        outputs = [
            _output(
                _Sample(
                    rid=rid if n == 1 else uuid.uuid4().hex,
                    query=query,
                    document=document,
                    outcome=_outcome(specs[index % len(specs)]),
                    delay=self.behaviour.latency,
                    prompt_tokens=len(text) // 4,
                    cached_tokens=0,
                    max_new_tokens=sampling.get("max_new_tokens") or SGLANG_DEFAULT_MAX_NEW_TOKENS,
                ),
                self.behaviour.padding_tokens,
            )
            for index in range(n)
        ]
        self.pairs += 1
        payload = _json_bytes(outputs[0] if n == 1 else outputs)
        connection.busy = True
        if self.behaviour.latency > 0:
            asyncio.get_running_loop().call_later(self.behaviour.latency, connection.respond, 200, payload)
        else:
            connection.respond(200, payload)


class _LeanConnection(asyncio.Protocol):
    """One HTTP/1.1 connection of the lean server: requests in turn, each answered once."""

    def __init__(self, server: LeanSGLangServer) -> None:
        import httptools  # uvicorn[standard]'s parser

        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.parse_error = httptools.HttpParserError
        self.transport: asyncio.Transport
        self.url = b""
        self.body: list[bytes] = []
        self.busy = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are no asyncio.Transport
        self.idle_since = asyncio.get_running_loop().time()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self.parse_error:
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.body = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        self.server.answer(self, self.parser.get_method(), path, b"".join(self.body))

    def respond(self, status: int, body: bytes) -> None:
        if self.transport.is_closing():
            return  # the client went away (a cancelled request): nothing to stop in lean mode
        reason = _REASONS.get(status, b"Error")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (status, reason, len(body), body)
        )
        self.busy = False
        self.idle_since = asyncio.get_running_loop().time()


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}


def _between(text: str, start: str, end: str) -> str:
    begin = text.find(start)
    if begin < 0:
        return ""
    begin += len(start)
    stop = text.rfind(end) if start.startswith("[Begin of Document]") else text.find(end, begin)
    return text[begin:stop] if stop >= begin else text[begin:]


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every sample takes")
    parser.add_argument("--flavor", choices=FLAVORS, default="sglang")
    parser.add_argument("--served-model-name", default=MODEL)
    parser.add_argument("--context-length", type=int, default=DEFAULT_CONTEXT_LENGTH)
    parser.add_argument("--capacity", type=int, default=None, help="sequences decoding at once")
    parser.add_argument(
        "--lean",
        action="store_true",
        help="the lean server for benchmarks (LeanSGLangServer: flavour sglang, no capacity)",
    )
    parser.add_argument(
        "--timeout-keep-alive",
        type=float,
        default=5.0,
        help="lean: seconds before an idle connection is closed",
    )
    parser.add_argument(
        "--stats-file",
        type=Path,
        help="on shutdown, write the pair counts (in all and per query) here as JSON (not with --lean)",
    )
    args = parser.parse_args()
    if args.lean:
        behaviour = Behaviour(
            latency=args.latency, served_model_name=args.served_model_name, context_length=args.context_length
        )
        lean = LeanSGLangServer(behaviour, timeout_keep_alive=args.timeout_keep_alive)
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvicorn[standard] brings it
            asyncio.run(lean.serve(args.host, args.port))
        else:
            uvloop.run(lean.serve(args.host, args.port))
        return
    server = ScriptedSGLangServer(
        port=args.port,
        latency=args.latency,
        flavor=args.flavor,
        served_model_name=args.served_model_name,
        context_length=args.context_length,
        capacity=args.capacity,
    )
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: this handler turns that
    # into an ordinary exit, so that the stats below are written.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        uvicorn.run(server.app, host=args.host, port=args.port, log_level="warning")
    finally:
        if args.stats_file is not None:
            stats = server.stats
            counts = {"pairs": stats.pairs, "samples": stats.samples, "max_running": stats.max_running}
            args.stats_file.write_text(json.dumps({**counts, "queries": dict(stats.queries)}))


if __name__ == "__main__":
    main()
