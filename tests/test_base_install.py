"""The install a user gets, checked in a fresh virtual environment: docker/Dockerfile's own install steps
replayed (its COPY lines from this checkout, its `RUN pip ...` lines as written), which are README.md's
`pip install .`, no extras. Every command's and subcommand's help runs, each command does its job as far as
it can without an engine (or fails with a message, not a traceback), what needs an extra exits 4 naming it,
and the image's own command serves `/health` and `/ready`.

Marked `packaging` (`make check-install`; .ci/run runs it before starting the test nodes): building the
environment takes pip a few seconds with its cache warm, a minute or two without.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import httpx
import pytest

from retrostar_search.errors import ExitCode
from retrostar_search.extras import EXTRAS
from tests.cli_commands import command_paths
from tests.scripted_sglang import free_port

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PIP_TIMEOUT_S = 900
COMMAND_TIMEOUT_S = 120
SERVE_START_TIMEOUT_S = 60
# Nothing listens there: commands that need an engine get as far as reaching it.
UNREACHABLE = "http://127.0.0.1:9"
# ENV lines not replayed: the image keeps no pip cache, this check reuses the machine's to stay fast.
NOT_REPLAYED_ENV = {"PIP_NO_CACHE_DIR"}


# --- docker/Dockerfile, replayed --------------------------------------------------------------------------


@dataclass
class ImageSteps:
    """What the Dockerfile does to install the package, and the command the image runs."""

    copies: list[tuple[list[str], str, str]] = field(default_factory=list)  # (sources, destination, workdir)
    pip_runs: list[tuple[str, str]] = field(default_factory=list)  # (shell command, workdir)
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)  # ENTRYPOINT + CMD


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments), comments dropped and continuation lines joined."""
    logical = ""
    for line in text.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        logical += line.rstrip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        keyword, _, arguments = logical.strip().partition(" ")
        yield keyword.upper(), arguments.strip()
        logical = ""


def image_steps(text: str) -> ImageSteps:
    steps, workdir = ImageSteps(), "/"
    entrypoint: list[str] = []
    cmd: list[str] = []
    for keyword, arguments in dockerfile_instructions(text):
        if keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / arguments)
        elif keyword == "COPY":
            words = [word for word in shlex.split(arguments) if not word.startswith("--")]
            steps.copies.append((words[:-1], words[-1], workdir))
        elif keyword == "ENV":
            for word in shlex.split(arguments):
                name, _, value = word.partition("=")
                steps.env[name] = value
        elif keyword == "RUN" and _runs_pip(arguments):
            steps.pip_runs.append((arguments, workdir))
        elif keyword == "ENTRYPOINT":
            entrypoint = json.loads(arguments)
        elif keyword == "CMD":
            cmd = json.loads(arguments)
    steps.command = entrypoint + cmd
    return steps


def _runs_pip(command: str) -> bool:
    words = shlex.split(command)
    return words[:1] == ["pip"] or (words[:1] in (["python"], ["python3"]) and words[1:3] == ["-m", "pip"])


def dockerignore_patterns() -> list[str]:
    """The `**/name` patterns of the build context's ignore file: what COPY leaves out at any depth."""
    ignore = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    return [line.strip().removeprefix("**/") for line in lines if line.strip().startswith("**/")]


def replay(steps: ImageSteps, root: Path, venv: Path) -> None:
    """The image's COPY and `RUN pip` steps, with `root` standing for the image's / and `venv` first on PATH."""
    ignored = shutil.ignore_patterns(*dockerignore_patterns())
    for sources, destination, workdir in steps.copies:
        target = root / (PurePosixPath(workdir) / destination).relative_to("/")
        origins = [ROOT / source for source in sources]
        # Docker's rules: a directory's contents go into the destination; files go into it when it names a
        # directory (a trailing slash, or several sources), else become it.
        if destination.endswith("/") or len(origins) > 1 or any(origin.is_dir() for origin in origins):
            target.mkdir(parents=True, exist_ok=True)
            for origin in origins:
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=ignored, dirs_exist_ok=True)
                else:
                    shutil.copy2(origin, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origins[0], target)
    env = {**os.environ, **{k: v for k, v in steps.env.items() if k not in NOT_REPLAYED_ENV}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env.pop("PYTHONPATH", None)
    for command, workdir in steps.pip_runs:
        cwd = root / PurePosixPath(workdir).relative_to("/")
        completed = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=PIP_TIMEOUT_S
        )
        assert completed.returncode == 0, (
            f"`{command}` failed:\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}"
        )


@pytest.fixture(scope="session")
def steps() -> ImageSteps:
    return image_steps(DOCKERFILE.read_text())


@pytest.fixture(scope="session")
def image_env(steps: ImageSteps, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding what the image installs; returns the venv."""
    assert steps.pip_runs, f"no `RUN pip ...` step in {DOCKERFILE}: this check replays the image's install"
    base = tmp_path_factory.mktemp("image")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=PIP_TIMEOUT_S)
    replay(steps, base / "root", venv)
    return venv


@pytest.fixture(scope="session")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment commands run in: no RETROSEARCH_* settings from the caller, a home of their own."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("RETROSEARCH_")}
    env.pop("PYTHONPATH", None)
    return {**env, "HOME": str(tmp_path_factory.mktemp("home")), "COLUMNS": "120"}


def run(
    venv: Path, env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "retrosearch"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or venv,  # not the checkout, whose packages would shadow the installed ones
        timeout=COMMAND_TIMEOUT_S,
    )


# --- The replay itself ------------------------------------------------------------------------------------


def test_the_dockerfile_is_read_as_the_image_builds() -> None:
    steps = image_steps(
        'FROM python:3.11\nENV A=1 \\\n    B="two words"\nWORKDIR /src\n# a comment\nCOPY pyproject.toml README.md ./\n'
        "COPY retrostar_search ./retrostar_search\nRUN pip install \\\n    .\nRUN useradd someone\n"
        'ENTRYPOINT ["retrosearch"]\nCMD ["serve", "--port", "8000"]\n'
    )
    assert steps.copies == [
        (["pyproject.toml", "README.md"], "./", "/src"),
        (["retrostar_search"], "./retrostar_search", "/src"),
    ]
    assert [(shlex.split(command), workdir) for command, workdir in steps.pip_runs] == [
        (["pip", "install", "."], "/src")
    ]
    assert steps.env == {"A": "1", "B": "two words"}
    assert steps.command == ["retrosearch", "serve", "--port", "8000"]


def test_the_image_installs_the_package_and_no_extra(image_env: Path, steps: ImageSteps) -> None:
    probe = "import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None for m in %r}))"
    modules = [module for modules in EXTRAS.values() for module in modules]
    completed = subprocess.run(
        [str(image_env / "bin" / "python"), "-c", probe % modules],
        capture_output=True,
        text=True,
        cwd=image_env,
        check=True,
    )
    assert json.loads(completed.stdout) == dict.fromkeys(modules, False)
    assert steps.command[0] == "retrosearch" and (image_env / "bin" / "retrosearch").exists()


# --- Commands in the plain install ------------------------------------------------------------------------


@pytest.mark.parametrize("path", command_paths(), ids=lambda path: " ".join(path) or "retrosearch")
def test_every_help_runs(image_env: Path, user_env: dict[str, str], path: list[str]) -> None:
    completed = run(image_env, user_env, *path, "--help")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Usage: retrosearch" in completed.stdout
    assert "Traceback" not in completed.stdout + completed.stderr


SMALL_CORPUS = str(ROOT / "tests" / "data" / "indexing" / "small.jsonl")
TINY_BEIR = str(ROOT / "tests" / "data" / "eval" / "tiny-beir")
CONNECTOR = "http://connector:8000"
# (arguments, exit code, what the output says): each command as far as it goes without an engine or a GPU.
WITHOUT_EXTRAS = [
    (["--version"], ExitCode.OK, "retrosearch 0.1.0"),
    (["dashboards", "export"], ExitCode.OK, '"type":"index-pattern"'),
    (["setup", "opensearch", "--connector-url", CONNECTOR, "--dry-run"], ExitCode.OK, "PUT "),
    (["setup", "elasticsearch", "--connector-url", CONNECTOR, "--dry-run"], ExitCode.OK, "PUT "),
    (["node", "status", "--port", "9399"], ExitCode.INCOMPLETE, "stopped opensearch"),
    (["index", SMALL_CORPUS, "--index", "x", "--url", UNREACHABLE], ExitCode.FAILED, "error: cannot reach"),
    (
        ["index", SMALL_CORPUS, "-i", "x", "--engine", "elasticsearch", "--url", UNREACHABLE],
        ExitCode.FAILED,
        "error: cannot reach",
    ),
    (["search", "leaves", "--index", "x", "--url", UNREACHABLE], ExitCode.FAILED, "error: cannot reach"),
    (
        ["setup", "elasticsearch", "--connector-url", CONNECTOR, "--url", UNREACHABLE],
        ExitCode.FAILED,
        "error: cannot reach",
    ),
]
# (arguments, the extra they need).
NEEDING_EXTRAS = [
    (["eval", TINY_BEIR, "--index", "x", "--url", UNREACHABLE], "eval"),
    (["index", "{parquet_export}", "--index", "x", "--url", UNREACHABLE], "parquet"),
    (["serve", "--backend", "engine"], "sglang"),
    (["serve", "--truncate-tokens", "512", "--tokenizer", "/models/qwen3"], "tokenizer"),
]


def _ids(cases: list[tuple[list[str], object]] | list[tuple[list[str], object, object]]) -> list[str]:
    return [" ".join(word for word in case[0][:4] if "/" not in word and "{" not in word) for case in cases]


@pytest.mark.parametrize(("args", "code", "says"), WITHOUT_EXTRAS, ids=_ids(WITHOUT_EXTRAS))
def test_commands_that_need_no_extra_run(
    image_env: Path, user_env: dict[str, str], args: list[str], code: ExitCode, says: str
) -> None:
    completed = run(image_env, user_env, *args)
    output = completed.stdout + completed.stderr
    assert completed.returncode == code, output[-3000:]
    assert says in output and "Traceback" not in output


@pytest.fixture(scope="session")
def parquet_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bright")
    (folder / "documents").mkdir()
    (folder / "documents" / "biology-00000-of-00001.parquet").write_bytes(b"")
    return folder


@pytest.mark.parametrize(("args", "extra"), NEEDING_EXTRAS, ids=_ids(NEEDING_EXTRAS))
def test_what_needs_an_extra_names_it_and_exits_unavailable(
    image_env: Path, user_env: dict[str, str], parquet_export: Path, args: list[str], extra: str
) -> None:
    completed = run(image_env, user_env, *(arg.format(parquet_export=parquet_export) for arg in args))
    output = completed.stdout + completed.stderr
    assert completed.returncode == ExitCode.UNAVAILABLE, output[-3000:]
    assert f"needs the '{extra}' extra: pip install 'retrostar-search[{extra}]'" in " ".join(output.split())
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("options", "answers"),
    [
        # As the image runs it: the default backend (SGLang's native API), its server not up (yet).
        (["--backend-url", UNREACHABLE], {"/health": 200, "/ready": 503}),
        # The CPU fallback needs no server, so the connector is ready.
        (["--backend", "cpu"], {"/health": 200, "/ready": 200}),
    ],
    ids=["sglang backend down", "cpu backend"],
)
def test_the_images_command_serves_health_and_ready(
    image_env: Path, user_env: dict[str, str], steps: ImageSteps, options: list[str], answers: dict[str, int]
) -> None:
    """The image's ENTRYPOINT + CMD, listening on a free local port instead of 0.0.0.0:8000."""
    port = free_port()
    command = _with_option(
        _with_option([*steps.command[1:], *options], "--host", "127.0.0.1"), "--port", str(port)
    )
    server = subprocess.Popen(
        [str(image_env / "bin" / steps.command[0]), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=user_env,
        cwd=image_env,
    )
    try:
        answered = _wait_for(f"http://127.0.0.1:{port}", tuple(answers), server)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert answered == answers, output[-3000:]
    assert "Traceback" not in output


def _with_option(command: list[str], option: str, value: str) -> list[str]:
    if option not in command:
        return [*command, option, value]
    at = command.index(option)
    return [*command[:at], option, value, *command[at + 2 :]]


def _wait_for(base_url: str, paths: tuple[str, ...], server: subprocess.Popen[str]) -> dict[str, int]:
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            return {path: httpx.get(base_url + path, timeout=5).status_code for path in paths}
        except httpx.TransportError:
            time.sleep(0.2)
    return {}
