"""docker/: what can be checked without a Docker engine. The compose files parse, describe every service
the setup needs with health checks and start conditions, pin their images, reserve the GPU, and only use
commands, options and environment variables that the retrosearch CLI and connector really read."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from typer.testing import CliRunner

import connector.logs
from connector.rerank_log import RerankLogSettings
from connector.settings import ENV_PREFIX, ConnectorSettings
from retrostar_search.cli import app
from tests.cli_commands import find_command
from tests.sglang_router import RECOMMENDED_FLAGS

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
MODEL = "ljw13/retro-star-qwen3-14b-0928"
# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}`, `${NAME?message}`.
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DOCKER / name).read_text())


def resolve(value: Any) -> Any:
    """A value as compose sees it with docker/.env unset: defaults taken, required values stubbed."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m["arg"] if m["op"] in ("-", ":-") else "<set>", value)
    if isinstance(value, list):
        return [resolve(item) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def opensearch_stack() -> dict[str, Any]:
    return load("compose.yml")["services"]


@pytest.fixture(scope="module")
def elastic_stack() -> dict[str, Any]:
    return load("compose.elastic.yml")["services"]


def service(stack: dict[str, Any], name: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A service with `extends` from compose.yml applied (mappings merged, as compose does)."""
    spec = stack[name]
    if "extends" not in spec:
        return spec
    assert spec["extends"]["file"] == "compose.yml"
    parent = dict((base or load("compose.yml")["services"])[spec["extends"]["service"]])
    merged = {**parent, **{key: value for key, value in spec.items() if key != "extends"}}
    if "environment" in parent and "environment" in spec:
        merged["environment"] = {**parent["environment"], **spec["environment"]}
    return merged


# ------------------------------------------------------------------------------------------------
# Shape of the deployment
# ------------------------------------------------------------------------------------------------


GPU_SERVICES = ["sglang-0", "sglang-1", "router", "redis", "connector"]


def test_both_files_parse_and_name_the_services_setup_needs(opensearch_stack, elastic_stack) -> None:
    assert set(opensearch_stack) == {
        "opensearch",
        "opensearch-dashboards",
        *GPU_SERVICES,
        "setup",
        "dashboards-import",
        "warm",
    }
    assert set(elastic_stack) == {
        "elasticsearch",
        "kibana-password",
        "kibana",
        *GPU_SERVICES,
        "setup",
        "dashboards-import",
    }


@pytest.mark.parametrize(
    ("file", "long_running"),
    [
        ("compose.yml", ["opensearch", "opensearch-dashboards", *GPU_SERVICES]),
        ("compose.elastic.yml", ["elasticsearch", "kibana", *GPU_SERVICES]),
    ],
)
def test_every_long_running_service_has_a_health_check(file: str, long_running: list[str]) -> None:
    stack = load(file)["services"]
    for name in long_running:
        check = service(stack, name)["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] > 0, name


@pytest.mark.parametrize(
    ("file", "engine"), [("compose.yml", "opensearch"), ("compose.elastic.yml", "elasticsearch")]
)
def test_setup_runs_once_after_engine_model_and_connector_are_healthy(file: str, engine: str) -> None:
    setup = load(file)["services"]["setup"]
    assert setup["restart"] == "no"
    assert setup["command"][:2] == ["setup", engine]
    # The router is healthy once a worker behind it serves the model.
    assert {name: dep["condition"] for name, dep in setup["depends_on"].items()} == {
        engine: "service_healthy",
        "router": "service_healthy",
        "connector": "service_healthy",
    }


def test_dashboards_are_imported_once_the_app_is_healthy(opensearch_stack, elastic_stack) -> None:
    for stack, app_service, target in (
        (opensearch_stack, "opensearch-dashboards", "opensearch-dashboards"),
        (elastic_stack, "kibana", "kibana"),
    ):
        job = stack["dashboards-import"]
        assert job["depends_on"] == {app_service: {"condition": "service_healthy"}}
        assert job["command"][:2] == ["dashboards", "import"]
        assert job["command"][job["command"].index("--target") + 1] == target


def _workers(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: resolve(spec) for name, spec in stack.items() if name.startswith("sglang-")}


def test_each_worker_serves_retrostar_on_a_gpu_of_its_own(opensearch_stack) -> None:
    workers = _workers(opensearch_stack)
    assert len(workers) >= 2
    gpus = []
    for name, worker in workers.items():
        command = worker["command"]
        assert command[:3] == ["python3", "-m", "sglang.launch_server"], name
        assert command[command.index("--model-path") + 1] == MODEL
        assert command[command.index("--host") + 1] == "0.0.0.0"
        assert command[command.index("--port") + 1] == "30000"
        (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert "count" not in device and len(device["device_ids"]) == 1, name  # one GPU each
        gpus += device["device_ids"]
        assert "localhost:30000/health" in " ".join(worker["healthcheck"]["test"])
        assert "hf-cache:/root/.cache/huggingface" in worker["volumes"]
        assert "ports" not in worker, name  # no authentication: never published
    assert len(set(gpus)) == len(gpus)  # no GPU shared by two workers


def test_router_runs_the_documented_invocation_in_front_of_every_worker(opensearch_stack) -> None:
    router = resolve(opensearch_stack["router"])
    command = router["command"]
    urls = command[command.index("--worker-urls") + 1 :]
    urls = urls[: next((i for i, arg in enumerate(urls) if arg.startswith("--")), len(urls))]
    assert urls == [f"http://{name}:30000" for name in _workers(opensearch_stack)]
    flags = _flag_values(command)
    assert _flag_values(list(RECOMMENDED_FLAGS)).items() <= flags.items()
    assert flags["--host"] == "0.0.0.0" and flags["--port"] == "30000"
    assert "/readiness" in " ".join(router["healthcheck"]["test"])  # its /health is liveness only
    assert "ports" not in router
    assert {name for name in router["depends_on"]} == set(_workers(opensearch_stack))


def test_router_image_pins_the_router_version_the_tests_run() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pinned,) = [
        spec for spec in pyproject["project"]["optional-dependencies"]["test"] if "sglang-router" in spec
    ]
    dockerfile = (DOCKER / "Dockerfile.router").read_text()
    assert re.search(rf"^RUN pip install {re.escape(pinned)}$", dockerfile, re.MULTILINE), pinned
    assert 'ENTRYPOINT ["python", "-m", "sglang_router.launch_router"]' in dockerfile
    # The build context sends nothing (docker/ holds .env and its secrets).
    assert (DOCKER / "Dockerfile.router.dockerignore").read_text().splitlines()[-1] == "*"
    router = load("compose.yml")["services"]["router"]
    assert router["build"] == {"context": ".", "dockerfile": "Dockerfile.router"}
    assert router["image"].endswith(":" + pinned.split("==")[1])


def test_connector_replicas_share_the_redis_cache_behind_the_router(opensearch_stack) -> None:
    connector = resolve(opensearch_stack["connector"])
    command = connector["command"]
    assert command[command.index("--backend-url") + 1] == "http://router:30000"
    assert int(connector["deploy"]["replicas"]) >= 2 and "container_name" not in connector
    cache_url = connector["environment"]["RETROSEARCH_CACHE_URL"]
    assert cache_url.startswith("redis://redis:6379/")
    assert "RETROSEARCH_CACHE_PATH" not in connector["environment"]  # one cache, not one per replica
    assert connector["depends_on"]["redis"] == {"condition": "service_healthy"}
    redis = resolve(opensearch_stack["redis"])
    command = redis["command"]
    assert command[0] == "redis-server" and "ports" not in redis
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"  # bounded, evicts old scores
    warm = resolve(opensearch_stack["warm"])
    assert warm["environment"]["RETROSEARCH_CACHE_URL"] == cache_url
    assert warm["env_file"] == connector["env_file"]  # the same task, cascade and model as the connector
    assert warm["profiles"] == ["warm"]


def _flag_values(command: list[str]) -> dict[str, str | None]:
    """`--flag value` pairs of a command (None for a flag without a value)."""
    flags: dict[str, str | None] = {}
    for index, arg in enumerate(command):
        if arg.startswith("--"):
            following = command[index + 1] if index + 1 < len(command) else "--"
            flags[arg] = None if following.startswith("--") else following
    return flags


def test_opensearch_is_the_secured_full_distribution_with_ml_commons_settings(opensearch_stack) -> None:
    node = opensearch_stack["opensearch"]
    environment = node["environment"]
    assert node["image"].startswith("opensearchproject/opensearch:2.19.")
    assert "OPENSEARCH_INITIAL_ADMIN_PASSWORD" in environment
    assert not {"DISABLE_SECURITY_PLUGIN", "plugins.security.disabled"} & set(environment)
    assert environment["plugins.ml_commons.only_run_on_ml_node"] == "false"
    assert environment["plugins.ml_commons.connector.private_ip_enabled"] == "true"
    dashboards = opensearch_stack["opensearch-dashboards"]
    assert dashboards["image"].split(":")[1] == node["image"].split(":")[1]  # same version


def test_elastic_variant_logs_to_elasticsearch_and_reuses_the_gpu_services(elastic_stack) -> None:
    for name in GPU_SERVICES:
        assert elastic_stack[name]["extends"] == {"file": "compose.yml", "service": name}
    connector = service(elastic_stack, "connector")
    assert connector["environment"]["RETROSEARCH_LOG_URL"] == "http://elasticsearch:9200"
    assert connector["environment"]["RETROSEARCH_LOG_ENGINE"] == "elasticsearch"
    versions = {elastic_stack[name]["image"].split(":")[1] for name in ("elasticsearch", "kibana")}
    assert len(versions) == 1
    assert elastic_stack["elasticsearch"]["environment"]["xpack.license.self_generated.type"] == "trial"


# ------------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------------


def _all_images() -> list[tuple[str, str]]:
    images = []
    for file in ("compose.yml", "compose.elastic.yml"):
        for name, spec in load(file)["services"].items():
            if "image" in spec:
                images.append((f"{file}:{name}", resolve(spec["image"])))
    for dockerfile in sorted(DOCKER.glob("Dockerfile*")):
        images += [
            (dockerfile.name, line.split()[1])
            for line in dockerfile.read_text().splitlines()
            if line.startswith("FROM ")
        ]
    return images


@pytest.mark.parametrize(("where", "image"), _all_images())
def test_every_image_tag_is_pinned(where: str, image: str) -> None:
    repository, _, tag = image.rpartition(":")
    assert repository and "/" not in tag, f"{where}: {image} has no tag"
    assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{where}: {image} is not pinned to a version"


def test_the_built_image_is_tagged_with_the_package_version(opensearch_stack) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in ("connector", "setup", "dashboards-import", "warm"):
        assert opensearch_stack[name]["image"] == f"retrostar-search:{version}"
        assert opensearch_stack[name]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}


# ------------------------------------------------------------------------------------------------
# The Dockerfile installs the package the way a user does
# ------------------------------------------------------------------------------------------------


def test_dockerfile_pip_installs_the_checkout_with_everything_the_build_needs() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install \.$", dockerfile, re.MULTILINE)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {
        part.rstrip("/").removeprefix("./")
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    }
    assert packages | {"pyproject.toml", pyproject["project"]["readme"]} <= copied
    allowed = {
        line[1:]
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert copied <= allowed


def test_readme_installs_the_package_the_same_way() -> None:
    readme = (ROOT / "README.md").read_text()
    installs = re.findall(r"pip install\s+(?:-e\s+)?['\"]?(\.(?:\[[\w,-]+\])?)['\"]?", readme)
    assert installs, "README.md has no `pip install .` of the checkout"


# ------------------------------------------------------------------------------------------------
# Commands and environment variables the services use exist in the CLI and the connector settings
# ------------------------------------------------------------------------------------------------


def _environment_options(command: Any) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        envvar = getattr(param, "envvar", None)
        names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


JOBS = [
    ("compose.yml", "connector"),
    ("compose.yml", "setup"),
    ("compose.yml", "dashboards-import"),
    ("compose.yml", "warm"),
    ("compose.elastic.yml", "connector"),
    ("compose.elastic.yml", "setup"),
    ("compose.elastic.yml", "dashboards-import"),
]


@pytest.mark.parametrize(("file", "job"), JOBS)
def test_service_commands_parse_with_the_real_cli(file: str, job: str) -> None:
    spec = resolve(service(load(file)["services"], job))
    command, remaining = find_command(spec["command"])
    # Parsing (not running) checks every option exists and takes the value given; the environment
    # stands in for the secrets compose passes.
    environment = {name: str(value) for name, value in spec.get("environment", {}).items()}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        command.make_context(command.name, remaining, resilient_parsing=False)


def _connector_setting_names() -> set[str]:
    # The rerank-log settings are defined to be embedded in ConnectorSettings (same RETROSEARCH_ prefix).
    fields = set(ConnectorSettings.model_fields) | set(RerankLogSettings.model_fields)
    return {f"{ENV_PREFIX}{field.upper()}" for field in fields}


@pytest.mark.parametrize("file", ["compose.yml", "compose.elastic.yml"])
def test_connector_environment_names_are_connector_settings(file: str) -> None:
    environment = service(load(file)["services"], "connector")["environment"]
    assert set(environment) <= _connector_setting_names()


@pytest.mark.parametrize(("file", "job"), [(file, job) for file, job in JOBS if job != "connector"])
def test_job_environment_names_are_read_by_their_command(file: str, job: str) -> None:
    spec = load(file)["services"][job]
    command, _ = find_command(resolve(spec["command"]))
    read = _environment_options(command)
    if job == "warm":  # it builds the connector's reranker from the connector's settings
        read |= _connector_setting_names()
    assert set(spec["environment"]) <= read, job


def test_the_images_default_command_needs_an_api_key_to_listen_on_every_interface(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 10: the image served 0.0.0.0 without a key (and with the explorer on).
    dockerfile = (DOCKER / "Dockerfile").read_text()
    [command] = [
        json.loads(line[len("CMD ") :]) for line in dockerfile.splitlines() if line.startswith("CMD ")
    ]
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options, app=app))
    monkeypatch.setattr(connector.logs, "configure_logging", lambda settings: None)
    for name in [name for name in os.environ if name.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)

    without_key = CliRunner().invoke(app, command, env={"COLUMNS": "200"})
    with_key = CliRunner().invoke(app, command, env={"COLUMNS": "200", "RETROSEARCH_API_KEY": "k"})

    assert without_key.exit_code == 2 and "needs --api-key" in without_key.output
    assert with_key.exit_code == 0, with_key.output
    assert served["host"] == "0.0.0.0"
    assert served["app"].state.settings.explore is False
