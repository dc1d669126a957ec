"""`retrosearch serve` and the connector settings: options, environment, config file, precedence."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.mmap_dict import MmapedDict
from pydantic import ValidationError
from typer.testing import CliRunner

import connector.logs
from connector.background import free_port
from connector.settings import ENV_PREFIX, ConnectorSettings
from retrostar_search.cli import app as cli_app
from retrostar_search.cli import serve as serve_module
from retrostar_search.cli.serve import WORKER_APP, load_settings, tune_garbage_collector
from retrostar_search.scoring import Cascade
from retrostar_search.settings import BackendKind
from retrostar_search.tasks import PRESETS
from tests.scripted_sglang import ScriptedSGLangServer
from tests.serve_process import ServeProcess, wait_for_health


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture
def captured_run(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stands in for uvicorn.run: records what `serve` would have served, and returns at once. The
    process-wide logging setup is left out too: it belongs to a server process, not to the test run."""
    captured: dict[str, Any] = {}

    def run(app: Any, **kwargs: Any) -> None:
        captured.update(kwargs, app=app)

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr(connector.logs, "configure_logging", lambda settings: None)
    # The collector's settings are the server process's too; recorded, not applied to the test run.
    monkeypatch.setattr(serve_module, "tune_garbage_collector", lambda: captured.update(gc_tuned=True))
    return captured


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli_app, list(args), env={"COLUMNS": "200", **(env or {})})


# --- The CLI ----------------------------------------------------------------------------------------


def test_serve_help_lists_an_option_for_every_setting() -> None:
    result = invoke("serve", "--help")

    assert result.exit_code == 0
    for name in ConnectorSettings.model_fields:
        assert f"--{name.replace('_', '-')}" in result.output, name
    assert "RETROSEARCH_BACKEND_URL" in result.output
    assert "Samples K per pair" in result.output


def test_given_options_win_over_env_and_config_and_the_rest_fall_back(
    tmp_path: Path, captured_run: dict[str, Any]
) -> None:
    config = tmp_path / "connector.toml"
    config.write_text('port = 1111\nmax_documents = 50\ncache_size = 7\ntask = "economics"\n')

    result = invoke(
        "serve",
        *("--config", str(config), "--backend", "cpu", "--port", "9123", "--task", "biology", "--strict"),
        env={"RETROSEARCH_DEADLINE": "7", "RETROSEARCH_CACHE_SIZE": "9"},
    )

    assert result.exit_code == 0, result.output
    settings: ConnectorSettings = captured_run["app"].state.settings
    assert captured_run["port"] == 9123 and captured_run["host"] == "127.0.0.1"
    assert captured_run["gc_tuned"] is True
    assert settings.backend is BackendKind.CPU
    assert settings.task_definition() == PRESETS["biology"]  # CLI over config file
    assert settings.strict is True
    assert settings.deadline == 7.0  # environment
    assert settings.cache_size == 9  # environment over config file
    assert settings.max_documents == 50  # config file
    assert settings.samples == 1  # default


def test_bad_settings_exit_with_the_reason(captured_run: dict[str, Any], tmp_path: Path) -> None:
    bad_cascade = invoke("serve", "--cascade", "10@")
    assert bad_cascade.exit_code == 2
    assert "cascade" in bad_cascade.output

    missing_config = invoke("serve", "--config", str(tmp_path / "absent.toml"))
    assert missing_config.exit_code == 2
    assert "does not exist" in missing_config.output

    assert captured_run == {}


def test_serve_runs_a_real_connector(scripted_sglang: ScriptedSGLangServer) -> None:
    env = {"RETROSEARCH_BACKEND_URL": scripted_sglang.url, "RETROSEARCH_API_KEY": "subprocess-key"}
    with ServeProcess(env=env) as server:
        response = httpx.post(
            f"{server.url}/v1/rerank",
            json={"query": "subprocess-query-text", "documents": ["subprocess-doc-a", "subprocess-doc-b"]},
            headers={"Authorization": "Bearer subprocess-key"},
            timeout=30,
        )
        assert response.status_code == 200
        assert len(response.json()["results"]) == 2
        server.stop()
        output = server.log()
    assert f"rerank {response.json()['id']}: 2 documents" in output
    assert "subprocess-query-text" not in output and "subprocess-doc" not in output
    assert "subprocess-key" not in output


def test_pairs_answered_before_a_crash_are_cached_after_the_restart(
    scripted_sglang: ScriptedSGLangServer, tmp_path: Path
) -> None:
    """The sqlite write completes before the answer leaves: a connector killed right after answering (no
    shutdown, nothing flushed) restarts with every pair it answered."""
    cache_path = tmp_path / "scores.sqlite"
    body = {"query": "durable query", "documents": [f"durable document {number}" for number in range(20)]}

    def answer_once() -> Any:
        port = free_port()
        command = [
            str(Path(sys.executable).parent / "retrosearch"),
            *(
                "serve",
                "--port",
                str(port),
                "--cache-path",
                str(cache_path),
                "--backend-url",
                scripted_sglang.url,
            ),
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for_health(f"http://127.0.0.1:{port}/health", process)
            return httpx.post(f"http://127.0.0.1:{port}/v1/rerank", json=body, timeout=30).json()
        finally:
            process.kill()
            process.communicate(timeout=20)

    first = answer_once()
    second = answer_once()

    assert first["meta"]["retrostar"]["pairs_scored"] == 20
    assert second["meta"]["retrostar"]["cache_hits"] == 20
    assert second["meta"]["retrostar"]["pairs_scored"] == 0
    assert len(scripted_sglang.stats.prompts) == 20
    assert second["results"] == first["results"]


def test_cache_settings_take_sizes_and_never_echo_the_url(captured_run: dict[str, Any]) -> None:
    assert ConnectorSettings(cache_bytes="16MiB", cache_reasoning_bytes="1.5MB").cache_bytes == 16 * 2**20
    assert ConnectorSettings(cache_reasoning_bytes="1.5MB").cache_reasoning_bytes == 1_500_000
    assert ConnectorSettings(cache_url="rediss://user:pw@cache:6380/1").cache_url is not None

    result = invoke("serve", "--cache-url", "http://admin:topsecret@cache:6379")

    assert result.exit_code == 2
    assert "cache_url: expected a URL starting with redis://" in result.output
    assert "topsecret" not in result.output
    assert captured_run == {}


# --- serve --workers ---------------------------------------------------------------------------------


@pytest.fixture
def restored_environment() -> Iterator[None]:
    """`serve --workers` passes its options on as environment variables: gone again after the test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_workers_get_the_given_options_and_a_metrics_folder_of_their_own(
    monkeypatch: pytest.MonkeyPatch, restored_environment: None, caplog: pytest.LogCaptureFixture
) -> None:
    captured_run: dict[str, Any] = {}
    seen: dict[str, str] = {}  # the environment the workers would start with

    def run(app: Any, **kwargs: Any) -> None:
        captured_run.update(kwargs, app=app)
        seen.update(os.environ)

    monkeypatch.setattr(uvicorn, "run", run)

    result = invoke(
        "serve",
        *("--workers", "3", "--backend", "cpu", "--cache-bytes", "16MiB", "--strict", "--api-key", "k"),
    )

    assert result.exit_code == 0, result.output
    assert (captured_run["app"], captured_run["factory"], captured_run["workers"]) == (WORKER_APP, True, 3)
    assert seen["RETROSEARCH_BACKEND"] == "cpu" and seen["RETROSEARCH_STRICT"] == "true"
    assert seen["RETROSEARCH_API_KEY"] == "k"
    folder = Path(seen["PROMETHEUS_MULTIPROC_DIR"])
    assert folder.name.startswith("retrosearch-metrics-") and not folder.exists()  # removed afterwards
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert "without --cache-url" in caplog.text
    worker_settings = load_settings({})  # what each worker reads
    assert worker_settings.backend is BackendKind.CPU and worker_settings.cache_bytes == 16 * 2**20


def test_serve_workers_answer_on_one_port_and_metrics_add_up_across_them(
    scripted_sglang: ScriptedSGLangServer, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    # A rerank log on an engine that is not there: every event is dropped, and counted by the worker
    # that took it.
    unreachable_log_engine = f"http://127.0.0.1:{free_port()}"
    command = [
        str(Path(sys.executable).parent / "retrosearch"),
        *("serve", "--workers", "2", "--port", str(port), "--cache-url", redis_url),
        *("--log-url", unreachable_log_engine, "--log-flush-interval", "0.05"),
    ]
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "RETROSEARCH_BACKEND_URL": scripted_sglang.url, "TMPDIR": str(tmp_path / "tmp")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    scripted_sglang.script(latency=0.3)  # requests overlap, so that both workers take some
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(f"{url}/health", process)
        (folder,) = (tmp_path / "tmp").glob("retrosearch-metrics-*")
        sent, per_process = 0, {}
        for _ in range(5):  # until both processes have answered some
            sent += asyncio.run(_concurrent_reranks(url, 16))
            per_process = _reranks_per_process(folder)
            if len(per_process) == 2 and all(per_process.values()):
                break
        assert len(per_process) == 2 and all(per_process.values()), per_process

        for _ in range(4):  # whichever worker answers /metrics: the sum over both
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
            assert f'retrosearch_requests_total{{route="/v1/rerank",status="200"}} {float(sent)}' in metrics
        # The rerank log's counts too (they were missing under --workers): every event, whoever took it.
        all_dropped = f'retrosearch_rerank_log_dropped_total{{reason="engine_error"}} {float(sent)}'
        give_up_at = time.monotonic() + 30
        while all_dropped not in (metrics := httpx.get(f"{url}/metrics", timeout=10).text):
            assert time.monotonic() < give_up_at, [
                line for line in metrics.splitlines() if "rerank_log" in line
            ]
            time.sleep(0.2)
        assert "retrosearch_rerank_log_queued 0.0" in metrics
        repeated = httpx.post(f"{url}/v1/rerank", json=_WORKER_RERANK, timeout=30).json()
        assert repeated["meta"]["retrostar"]["cache_hits"] == len(_WORKER_RERANK["documents"])
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert not folder.exists(), "the metrics folder outlived serve"
    assert "rerank " in output and "2 documents" in output  # the workers log like a single process


_WORKER_RERANK = {"query": "which worker answers", "documents": ["one document", "another document"]}


async def _concurrent_reranks(url: str, count: int) -> int:
    # A connection per request, all open at once: the kernel hands them to both workers.
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=httpx.Limits(max_connections=count)
    ) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/rerank", json=_WORKER_RERANK) for _ in range(count))
        )
    assert all(response.status_code == 200 for response in responses)
    return count


def _reranks_per_process(folder: Path) -> dict[str, float]:
    """Each worker's own count of answered reranks, read from its file in the multiprocess folder."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        pid = path.stem.removeprefix("counter_")
        counts[pid] = sum(
            value
            for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(path))
            if json.loads(key)[1] == "retrosearch_requests_total" and '"/v1/rerank"' in key
        )
    return counts


# --- Settings sources -------------------------------------------------------------------------------


def test_settings_defaults_match_the_reference() -> None:
    settings = ConnectorSettings()

    assert settings.model is None  # whatever the server serves
    assert (settings.temperature, settings.top_k, settings.max_new_tokens) == (0.6, 40, 4096)
    assert settings.deadline < 30  # under Elasticsearch's rerank timeout
    assert settings.truncate_tokens is None and settings.truncate_chars is None
    assert settings.cascade_plan() == Cascade.single(1)


def test_exposure_defaults_keep_the_explorer_off_and_idle_connections_past_the_engines_reuse() -> None:
    settings = ConnectorSettings()

    assert settings.explore is False
    assert settings.host == "127.0.0.1" and settings.api_key is None
    # OpenSearch ML Commons (AWS SDK Netty client) and Elasticsearch (Apache HttpAsyncClient) reuse an idle
    # connection for up to 60 s: the connector must not close one first (docs/connector.md, keep-alive).
    assert settings.keep_alive > 60


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "gpu-host.internal"])
def test_listening_beyond_loopback_needs_an_api_key(host: str) -> None:
    with pytest.raises(ValidationError, match="needs --api-key"):
        ConnectorSettings(host=host)
    assert ConnectorSettings(host=host, api_key="k").host == host
    assert ConnectorSettings(host=host, allow_unauthenticated=True).api_key is None
    # The explorer searches the engine with the connector's credentials: never without a key off loopback.
    with pytest.raises(ValidationError, match=r"the explorer on .* needs --api-key"):
        ConnectorSettings(host=host, explore=True, allow_unauthenticated=True)
    assert ConnectorSettings(host=host, explore=True, api_key="k").explore is True


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_needs_no_key_even_with_the_explorer(host: str) -> None:
    assert ConnectorSettings(host=host, explore=True).api_key is None


def test_serve_refuses_to_start_exposed_and_passes_the_keep_alive_on(captured_run: dict[str, Any]) -> None:
    refused = invoke("serve", "--host", "0.0.0.0", "--explore", "--allow-unauthenticated")
    assert refused.exit_code == 2
    assert "explorer on 0.0.0.0 needs --api-key" in refused.output
    assert captured_run == {}

    served = invoke("serve", "--host", "0.0.0.0", env={"RETROSEARCH_API_KEY": "k"})
    assert served.exit_code == 0, served.output
    assert captured_run["timeout_keep_alive"] == 75
    assert captured_run["log_config"] is None  # uvicorn's lines go through the connector's masked handlers


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETROSEARCH_BACKEND", "openai")
    monkeypatch.setenv("RETROSEARCH_API_KEY", "env-key")
    monkeypatch.setenv("RETROSEARCH_STRICT", "true")
    monkeypatch.setenv("RETROSEARCH_CASCADE", "100@1,30@16")
    monkeypatch.setenv("RETROSEARCH_TEST_OPENSEARCH_URL", "http://unrelated")  # other prefixed vars are fine

    settings = ConnectorSettings()

    assert settings.backend is BackendKind.OPENAI
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "env-key"
    assert "env-key" not in repr(settings)
    assert settings.strict is True
    assert str(settings.cascade_plan()) == "100@1,30@16"


def test_settings_from_a_toml_file_named_by_env_or_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "connector.toml"
    config.write_text('backend_url = "http://gpu-host:30000"\ndeadline = 12.5\nsamples = 4\n')

    assert ConnectorSettings(config=config).backend_url == "http://gpu-host:30000"
    monkeypatch.setenv("RETROSEARCH_CONFIG", str(config))
    monkeypatch.setenv("RETROSEARCH_SAMPLES", "2")
    settings = ConnectorSettings(deadline=3)
    assert settings.deadline == 3  # argument over file
    assert settings.samples == 2  # environment over file
    assert settings.cascade_plan() == Cascade.single(2)
    assert settings.backend_url == "http://gpu-host:30000"


def test_config_file_typos_and_bad_toml_are_errors(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text("dedline = 5\n")
    with pytest.raises(ValidationError, match="dedline"):
        ConnectorSettings(config=typo)

    broken = tmp_path / "broken.toml"
    broken.write_text("deadline = = 5\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        ConnectorSettings(config=broken)


def test_task_settings(tmp_path: Path) -> None:
    custom = ConnectorSettings(query_type="bug report", doc_type="commit message").task_definition()
    assert (custom.query_type, custom.doc_type) == ("bug report", "commit message")
    assert "(bug report)" in custom.relevance_definition

    task_file = tmp_path / "task.json"
    task_file.write_text('{"task": "pony", "relevance_definition": "Useful for Pony."}')
    from_file = ConnectorSettings(task_file=task_file).task_definition()
    assert from_file.relevance_definition == "Useful for Pony."
    assert from_file.query_type == PRESETS["pony"].query_type

    with pytest.raises(ValidationError, match="task_file replaces"):
        ConnectorSettings(task_file=task_file, task="biology")
    with pytest.raises(ValidationError, match="unknown task"):
        ConnectorSettings(task="astrology")
    with pytest.raises(ValidationError, match="task_file"):
        ConnectorSettings(task_file=tmp_path / "absent.json")


def test_truncation_by_tokens_needs_a_tokenizer() -> None:
    with pytest.raises(ValidationError, match="tokenizer"):
        ConnectorSettings(truncate_tokens=512)


@pytest.mark.parametrize(
    ("server", "requested", "effective"),
    [(25.0, None, 25.0), (25.0, 5.0, 5.0), (25.0, 40.0, 25.0), (0.0, None, None), (0.0, 5.0, 5.0)],
)
def test_request_deadline_is_capped_by_the_server(
    server: float, requested: float | None, effective: float | None
) -> None:
    assert ConnectorSettings(deadline=server).deadline_seconds(requested) == effective


def test_the_server_process_leaves_its_lasting_objects_out_of_the_collector() -> None:
    threshold = gc.get_threshold()
    try:
        tune_garbage_collector()
        assert gc.get_freeze_count() > 10_000  # the web stack, the schemas, the settings
        assert gc.get_threshold()[0] == 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
