"""One error style for every command that talks to an engine: the URL, what happened and what to try, never
the client's repr, and nothing printed (no analyzer note, no progress bar) before the engine is known to
answer. Against real sockets: a closed port, a name that does not resolve, the plain-http test nodes spoken
to in https, and a real TLS server (uvicorn with a self-signed certificate) spoken to in plain http."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.app import create_app
from connector.background import BackgroundServer, free_port
from connector.settings import ConnectorSettings
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.engines.errors import Problem, Service, describe_failure
from tests.search_corpus import index_documents, run_cli

TINY_BEIR = Path(__file__).parent / "data" / "eval" / "tiny-beir"
# What the clients' own messages look like; none of it may reach the terminal.
REPRS = (
    "HTTPConnection",
    "Errno",
    "ConnectionError(",
    "NewConnectionError",
    "SSLError(",
    "_ssl.c",
    "caused by",
)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real https server (the connector app on uvicorn) with a self-signed certificate: its port."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is missing on CI: .ci/run installs the Debian package 'openssl'")
        pytest.skip("openssl is not installed (apt-get install openssl); CI installs it")
    folder = tmp_path_factory.mktemp("tls")
    certificate, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-days", "1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = ConnectorSettings(backend="cpu", explore=False)
    with BackgroundServer(create_app(settings), tls=(str(certificate), str(key))) as server:
        yield f"127.0.0.1:{server.port}"


# kind -> (message, hint) every command prints for it
EXPECTED: dict[str, tuple[str, str]] = {
    "refused": ("connection refused: nothing listens there", "`retrosearch node status`"),
    "unknown-host": ("the host name does not resolve", "check the host in --url"),
    "https-to-http": ("TLS handshake failed: the server speaks plain http, not https", "use an http:// URL"),
    "http-to-https": ("the server closed the connection without answering", "use an https:// URL"),
    "untrusted": ("its TLS certificate is not trusted", "--ca-certs, or --insecure (test clusters only)"),
}


@pytest.fixture(params=list(EXPECTED))
def broken_url(
    request: pytest.FixtureRequest, opensearch_url: str, elasticsearch_url: str
) -> Callable[[str], tuple[str, str]]:
    """`broken_url(engine)`: a URL that fails the parametrized way for that engine, and the kind."""
    kind = request.param

    def url(engine: str) -> tuple[str, str]:
        node = opensearch_url if engine == "opensearch" else elasticsearch_url
        if kind == "refused":
            return f"http://127.0.0.1:{free_port()}", kind
        if kind == "unknown-host":
            return "http://no-such-host.invalid:9200", kind
        if kind == "https-to-http":
            return node.replace("http://", "https://"), kind
        tls = request.getfixturevalue("tls_server")
        return (f"http://{tls}" if kind == "http-to-https" else f"https://{tls}"), kind

    return url


def corpus(tmp_path: Path) -> str:
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"id": "a", "title": "t", "text": "x"}) + "\n")
    return str(path)


# Each command that talks to an engine, as (engine, arguments after the URL is known).
COMMANDS: dict[str, tuple[str, Callable[[str, Path], list[str]]]] = {
    "index": ("opensearch", lambda url, tmp: ["index", corpus(tmp), "--index", "x", "--url", url]),
    "search": ("elasticsearch", lambda url, tmp: ["search", "q", "--index", "x", "--engine", "elasticsearch",
                                                  "--url", url]),
    "eval": ("opensearch", lambda url, tmp: ["eval", str(TINY_BEIR), "--index", "x", "--url", url,
                                             "--out", str(tmp / "out")]),
    "setup opensearch": ("opensearch", lambda url, tmp: ["setup", "opensearch", "--url", url,
                                                         "--connector-url", "http://127.0.0.1:8000"]),
    "teardown opensearch": ("opensearch", lambda url, tmp: ["teardown", "opensearch", "--url", url]),
    "setup elasticsearch": ("elasticsearch", lambda url, tmp: ["setup", "elasticsearch", "--url", url,
                                                               "--connector-url", "http://127.0.0.1:8000"]),
}  # fmt: skip


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_says_an_unreachable_engine_the_same_way(
    command: str, broken_url: Callable[[str], tuple[str, str]], tmp_path: Path
) -> None:
    engine, arguments = COMMANDS[command]
    url, kind = broken_url(engine)
    code, output = run_cli(*arguments(url, tmp_path), columns=400)

    assert code == 1, output
    message, hint = EXPECTED[kind]
    lines = output.strip().splitlines()
    assert lines[0].startswith("error: cannot reach ") and f"cannot reach {url}: {message}" in lines[0], (
        output
    )
    assert lines[1].startswith("hint: ") and hint in lines[1], output
    assert len(lines) == 2, output  # nothing else: no note, no progress bar, no partial output
    for repr_part in REPRS:
        assert repr_part not in output


def test_index_prints_no_analyzer_note_before_it_knows_the_engine_answers(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, output = run_cli("index", corpus(tmp_path), "--index", "x", "--url", url, columns=300)
    assert code == 1
    assert "english" not in output and "note:" not in output and "indexing" not in output


def test_a_refused_login_names_the_credentials_to_check() -> None:
    # The clients' own exception for a 401, as opensearch-py raises it from a secured cluster's answer.
    from opensearchpy import AuthenticationException

    body = {"error": {"type": "security_exception", "reason": "missing authentication credentials"}}
    failure = describe_failure(AuthenticationException(401, "security_exception", body), "https://os:9200")
    assert failure.problem is Problem.UNAUTHORIZED
    assert failure.message == (
        "https://os:9200: authentication failed (HTTP 401): missing authentication credentials"
    )
    assert failure.hint is not None and "--username and --password" in failure.hint
    assert "--api-key" in failure.hint
    dashboards = describe_failure(AuthenticationException(401, "x", {}), "http://kb:5601", Service.DASHBOARDS)
    assert dashboards.hint is not None and "RETROSEARCH_DASHBOARDS_PASSWORD" in dashboards.hint


def test_a_wrong_connector_key_says_which_option_sets_it(
    elasticsearch_url: str, connector_server: Callable[..., BackgroundServer]
) -> None:
    client = EngineConnection(engine=Engine.ELASTICSEARCH, url=elasticsearch_url).client()
    index = f"rserrors-{free_port()}"
    index_documents(client, index)
    try:
        server = connector_server(api_key="the-right-key")
        code, output = run_cli(
            "search", "why do leaves change colour", "--engine", "elasticsearch", "--url", elasticsearch_url,
            "--index", index, "--connector-url", server.url, "--connector-api-key", "a-wrong-key",
            columns=300,
        )  # fmt: skip
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)
    assert code == 1
    assert f"rerank failed: the connector at {server.url} answered HTTP 401" in output
    assert "hint: give the connector's key with --connector-api-key" in output
    assert "a-wrong-key" not in output and "the-right-key" not in output
