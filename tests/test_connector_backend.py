"""The connector over what the model server serves: the model its answers name, a configured model the
server does not serve stopping it at start-up, and /ready saying why the backend is not ready."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from connector.background import free_port
from retrostar_search.backends._discovery import ModelNotServed
from retrostar_search.errors import ExitCode
from tests.scripted_sglang import MODEL, ScriptedSGLangServer

CHECKPOINT_8B = "ljw13/retro-star-qwen3-8b-0928"
ClientFactory = Callable[..., TestClient]
DOCUMENTS = ["Chlorophyll breaks down in autumn. [[retrostar:80]]", "A soup recipe. [[retrostar:5]]"]


@pytest.mark.parametrize("backend", ["sglang", "openai"])
def test_answers_name_the_served_model(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer, backend: str
) -> None:
    # Before, the connector named (and, on the chat API, sent) its default 14b whatever the server served.
    scripted_sglang.script(
        flavor="vllm" if backend == "openai" else "sglang", served_model_name=CHECKPOINT_8B
    )
    scripted_sglang.script(model_path=CHECKPOINT_8B)
    client = connector_client(backend=backend)
    response = client.post("/v1/rerank", json={"query": "why do leaves fall", "documents": DOCUMENTS})
    assert response.status_code == 200 and response.json()["degraded"] is False
    assert response.json()["model"] == CHECKPOINT_8B
    assert [result["index"] for result in response.json()["results"]] == [0, 1]
    ready = client.get("/ready").json()
    assert (ready["status"], ready["backend"], ready["model"]) == ("ready", backend, CHECKPOINT_8B)


def test_a_model_the_server_does_not_serve_stops_the_connector_at_startup(
    connector_client: ClientFactory,
) -> None:
    with pytest.raises(ModelNotServed, match=f"serves '{MODEL}', not the configured model '{CHECKPOINT_8B}'"):
        connector_client(model=CHECKPOINT_8B)


def test_serve_exits_with_the_reason_when_the_server_serves_another_model(
    scripted_sglang: ScriptedSGLangServer,
) -> None:
    command = [
        str(Path(sys.executable).parent / "retrosearch"), "serve", "--backend-url", scripted_sglang.url,
        "--model", CHECKPOINT_8B, "--port", str(free_port()), "--no-explore",
    ]  # fmt: skip
    env = {name: value for name, value in os.environ.items() if not name.startswith("RETROSEARCH_")}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    # Before, the connector's start-up found it: uvicorn's traceback, then its exit code 3 (INCOMPLETE's).
    assert completed.returncode == ExitCode.FAILED
    message = " ".join(completed.stderr.split())  # one message, wrapped to the terminal's width
    assert message.startswith("error: ") and f"not the configured model '{CHECKPOINT_8B}'" in message
    assert "Traceback" not in message


def test_ready_says_why_the_backend_is_not_ready(
    connector_client: ClientFactory, scripted_sglang: ScriptedSGLangServer
) -> None:
    scripted_sglang.script(flavor="router", live_workers=0)
    client = connector_client()
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert (
        response.json()["message"]
        == f"the sglang backend at {scripted_sglang.url} answered HTTP 503 to /readiness"
    )
    scripted_sglang.script(live_workers=1)
    assert client.get("/ready").status_code == 200
