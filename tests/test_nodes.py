"""The local nodes: what `retrosearch node` provisions must be a working, complete engine.

Node tests run against the session's test nodes (see conftest.py); only the stop test starts a node
of its own, an Elasticsearch one because it starts in seconds.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import typer
from typer.testing import CliRunner

from retrostar_search.cli import node as node_cli
from retrostar_search.engines.connection import Engine
from retrostar_search.nodes import NodeError, ensure_node, java, maven, node_status, stop_node
from retrostar_search.nodes.home import render_settings
from retrostar_search.nodes.java import JAVA_HOME_ENV, find_java_home
from retrostar_search.nodes.maven import ResolvedArtifact, failure_reason, parse_listing
from retrostar_search.nodes.paths import node_home, node_lock_file
from retrostar_search.nodes.process import group_members, port_in_use
from retrostar_search.nodes.specs import ELASTICSEARCH, OPENSEARCH, TRANSPORT_PORT_OFFSET, VERSIONS

OPENSEARCH_3 = VERSIONS[Engine.OPENSEARCH]["3.5.0"]
ELASTICSEARCH_9 = VERSIONS[Engine.ELASTICSEARCH]["9.2.0"]

OPENSEARCH_PLUGINS = {
    "opensearch-job-scheduler",
    "opensearch-knn",
    "opensearch-ml",
    "opensearch-neural-search",
}


def _cli() -> typer.Typer:
    # An app with only the node group: these tests exercise `register` exactly as the real app calls it.
    app = typer.Typer()
    node_cli.register(app)
    return app


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _managed_port(engine: Engine, url: str, version: str | None = None) -> int:
    """The node's port, skipping when the URL points at a node that retrosearch did not start."""
    port = _port(url)
    if node_status(engine, port, version).pid is None:
        pytest.skip(f"{url} is not a node managed by retrosearch")
    return port


def _free_port() -> int:
    """A free port whose transport twin (port + 100) is free too."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + TRANSPORT_PORT_OFFSET <= 65535 and not port_in_use(port + TRANSPORT_PORT_OFFSET):
            return port
    raise RuntimeError("no free port pair")


# --- OpenSearch test node ------------------------------------------------------------------------


def test_opensearch_node_has_the_four_plugins_and_the_rebuilt_modules(opensearch_client) -> None:
    plugins = {row["component"] for row in opensearch_client.cat.plugins(format="json")}
    assert plugins >= OPENSEARCH_PLUGINS
    (node,) = opensearch_client.nodes.info(node_id="_local", metric="plugins")["nodes"].values()
    assert {"lang-painless", "analysis-common"} <= {module["name"] for module in node["modules"]}
    assert node["version"] == OPENSEARCH.version


def test_opensearch_english_analyzer_stems(opensearch_client) -> None:
    reply = opensearch_client.indices.analyze(body={"analyzer": "english", "text": "The leaves were running"})
    assert [token["token"] for token in reply["tokens"]] == ["leav", "were", "run"]


def test_opensearch_painless_runs(opensearch_client) -> None:
    # k-NN extends lang-painless; a script proving the rebuilt module (and its security policy) works.
    reply = opensearch_client.transport.perform_request(
        "POST",
        "/_scripts/painless/_execute",
        body={"script": {"source": "params.a * 2", "params": {"a": 21}}},
    )
    assert reply["result"] == "42"


def test_opensearch_cluster_is_green_and_on_loopback(opensearch_client) -> None:
    assert opensearch_client.cluster.health(wait_for_status="yellow")["status"] in {"green", "yellow"}
    (node,) = opensearch_client.nodes.info(node_id="_local", metric="http")["nodes"].values()
    assert node["http"]["publish_address"].startswith("127.0.0.1:")


def test_start_on_a_running_node_is_idempotent(opensearch_url: str) -> None:
    port = _managed_port(Engine.OPENSEARCH, opensearch_url)
    before = node_status(Engine.OPENSEARCH, port)
    again = ensure_node(Engine.OPENSEARCH, port)
    assert not again.started_by_us and before.info is not None and again.pid == before.info.pid

    result = CliRunner().invoke(_cli(), ["node", "start", "--engine", "opensearch", "--port", str(port)])
    assert result.exit_code == 0, result.output
    assert "already running" in result.output


def test_status_reports_version_and_plugins(opensearch_url: str) -> None:
    port = _managed_port(Engine.OPENSEARCH, opensearch_url)
    result = CliRunner().invoke(_cli(), ["node", "status", "--port", str(port)])
    assert result.exit_code == 0, result.output
    assert "running" in result.output and OPENSEARCH.version in result.output
    assert "opensearch-neural-search" in result.output


# --- Elasticsearch test node ---------------------------------------------------------------------


def test_elasticsearch_node_serves_bm25_without_security(elasticsearch_client) -> None:
    (node,) = elasticsearch_client.nodes.info(node_id="_local")["nodes"].values()
    assert node["version"].startswith("8.19.")
    index = "retrostar-test-nodes"
    elasticsearch_client.options(ignore_status=404).indices.delete(index=index)
    elasticsearch_client.index(index=index, id="1", document={"text": "leaves change colour"}, refresh=True)
    hits = elasticsearch_client.search(index=index, query={"match": {"text": "colour"}})["hits"]["hits"]
    assert [hit["_id"] for hit in hits] == ["1"]
    elasticsearch_client.indices.delete(index=index)


# --- OpenSearch 3.5 and Elasticsearch 9.2 test nodes ----------------------------------------------


def test_opensearch3_node_is_the_bare_zip_with_its_own_modules(opensearch3_client) -> None:
    (node,) = opensearch3_client.nodes.info(node_id="_local", metric="plugins")["nodes"].values()
    assert node["version"] == OPENSEARCH_3.version
    modules = {module["name"] for module in node["modules"]}
    assert {"lang-painless", "analysis-common", "search-pipeline-common"} <= modules
    assert node["plugins"] == []  # Central serves no 3.x ML Commons / neural-search zips
    reply = opensearch3_client.indices.analyze(
        body={"analyzer": "english", "text": "The leaves were running"}
    )
    assert [token["token"] for token in reply["tokens"]] == ["leav", "were", "run"]
    assert not OPENSEARCH_3.search_pipeline and OPENSEARCH.search_pipeline


def test_elasticsearch9_node_answers_nodes_info_but_not_the_root(elasticsearch9_url: str) -> None:
    # What the issue says of the 9.2 zip, checked: no info action (GET / is 405), no `english` analyzer.
    assert httpx.get(elasticsearch9_url).status_code == 405
    nodes = httpx.get(f"{elasticsearch9_url}/_nodes/_local").json()["nodes"]
    assert [node["version"] for node in nodes.values()] == [ELASTICSEARCH_9.version]
    analyzed = httpx.post(
        f"{elasticsearch9_url}/_analyze", json={"analyzer": "english", "text": "leaves"}
    ).json()
    assert "failed to find global analyzer [english]" in analyzed["error"]["reason"]


def test_status_without_version_reports_the_version_on_the_port(opensearch3_url: str) -> None:
    port = _managed_port(Engine.OPENSEARCH, opensearch3_url, OPENSEARCH_3.version)
    result = CliRunner().invoke(_cli(), ["node", "status", "--port", str(port)])
    assert result.exit_code == 0, result.output
    assert f"opensearch {OPENSEARCH_3.version}" in result.output


def test_start_of_another_version_on_a_busy_port_names_the_running_one(opensearch3_url: str) -> None:
    port = _managed_port(Engine.OPENSEARCH, opensearch3_url, OPENSEARCH_3.version)
    result = CliRunner().invoke(
        _cli(), ["node", "start", "--port", str(port), "--version", OPENSEARCH.version]
    )
    assert result.exit_code == 1
    assert f"opensearch {OPENSEARCH_3.version} already runs on port {port}" in result.output
    # Without --version, the node that runs there is the one meant.
    again = CliRunner().invoke(_cli(), ["node", "start", "--port", str(port)])
    assert again.exit_code == 0 and "already running" in again.output


def test_an_unknown_version_names_the_provisioned_ones() -> None:
    result = CliRunner().invoke(_cli(), ["node", "start", "--engine", "elasticsearch", "--version", "9.5.6"])
    assert result.exit_code == 1
    assert "elasticsearch 9.5.6 is not one retrosearch provisions" in result.output
    assert all(version in result.output for version in ("8.19.7", "9.0.0", "9.1.0", "9.2.0"))


def _fake_jdk(folder: Path, major: int) -> Path:
    """A JDK folder as the finder reads it: `bin/java` and the `release` file every JDK ships."""
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "java").write_text("#!/bin/sh\nexit 1\n")
    (folder / "release").write_text(f'JAVA_VERSION="{major}.0.2"\n')
    return folder


def test_each_version_gets_a_jdk_from_its_own_range(monkeypatch, tmp_path: Path) -> None:
    jdk17 = _fake_jdk(tmp_path / "jvm" / "a-jdk-17", 17)
    jdk25 = _fake_jdk(tmp_path / "jvm" / "b-temurin-25", 25)
    monkeypatch.delenv(JAVA_HOME_ENV, raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(java, "JVM_DIRS", (tmp_path / "jvm",))
    assert find_java_home(OPENSEARCH.java_majors) == jdk17  # 2.19 needs the SecurityManager: not 25
    assert find_java_home(OPENSEARCH_3.java_majors) == jdk25
    assert find_java_home(ELASTICSEARCH_9.java_majors) == jdk25
    # JAVA_HOME is looked at first, but only where its Java fits the version.
    monkeypatch.setenv("JAVA_HOME", str(jdk25))
    assert find_java_home(OPENSEARCH.java_majors) == jdk17


def test_a_missing_java_21_names_what_to_install(monkeypatch, tmp_path: Path) -> None:
    _fake_jdk(tmp_path / "jvm" / "jdk-17", 17)
    monkeypatch.delenv(JAVA_HOME_ENV, raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(java, "JVM_DIRS", (tmp_path / "jvm",))
    with pytest.raises(NodeError) as missing:
        find_java_home(ELASTICSEARCH_9.java_majors)
    message = str(missing.value)
    assert message.startswith("no Java 21-25 found; found only ")
    assert "(Java 17)" in message and "install a JDK 21 to 25" in message and JAVA_HOME_ENV in message


# --- Process control and errors --------------------------------------------------------------------


@pytest.fixture
def throwaway_port() -> Iterator[int]:
    """A free port for an Elasticsearch node of the test's own; its folder and lock go afterwards."""
    port = _free_port()
    yield port
    shutil.rmtree(node_home(ELASTICSEARCH, port), ignore_errors=True)
    node_lock_file(ELASTICSEARCH, port).unlink(missing_ok=True)


@pytest.fixture
def listener(throwaway_port: int) -> Iterator[int]:
    """A plain socket holding a port, as any unrelated program might."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", throwaway_port))
        sock.listen()
        yield throwaway_port


def test_start_on_a_port_held_by_another_program_fails_naming_the_port(listener: int) -> None:
    result = CliRunner().invoke(
        _cli(), ["node", "start", "--engine", "elasticsearch", "--port", str(listener)]
    )
    assert result.exit_code == 1
    assert f"port {listener}" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.elasticsearch
def test_stop_leaves_no_process(throwaway_port: int) -> None:
    info = ensure_node(Engine.ELASTICSEARCH, throwaway_port, heap="512m")
    try:
        assert info.started_by_us and group_members(info.pid)
    finally:
        assert stop_node(Engine.ELASTICSEARCH, throwaway_port)
    assert group_members(info.pid) == []
    assert not port_in_use(throwaway_port)
    assert node_status(Engine.ELASTICSEARCH, throwaway_port).pid is None
    assert not stop_node(Engine.ELASTICSEARCH, throwaway_port)  # stopping a stopped node is fine


# --- Pure helpers ----------------------------------------------------------------------------------


def test_parse_listing_reads_paths_with_and_without_module_suffix() -> None:
    text = """
The following files have been resolved:
   org.ow2.asm:asm:jar:9.7:compile:/m2/org/ow2/asm/asm/9.7/asm-9.7.jar -- module org.objectweb.asm
   org.opensearch.plugin:opensearch-knn:zip:2.19.1.0:compile:/m2/knn.zip
   io.netty:netty-tcnative:jar:linux-x86_64:2.0.1:runtime:/m2/tcnative.jar
"""
    assert parse_listing(text) == [
        ResolvedArtifact("org.ow2.asm", "asm", "9.7", "jar", Path("/m2/org/ow2/asm/asm/9.7/asm-9.7.jar")),
        ResolvedArtifact("org.opensearch.plugin", "opensearch-knn", "2.19.1.0", "zip", Path("/m2/knn.zip")),
        ResolvedArtifact("io.netty", "netty-tcnative", "2.0.1", "jar", Path("/m2/tcnative.jar")),
    ]


def test_maven_reason_keeps_only_the_cause() -> None:
    output = (
        "\x1b[0m[ERROR] Failed to execute goal on project node-artifacts: Could not resolve dependencies for "
        "project local.retrostar-search:node-artifacts:pom:0: Could not find artifact "
        "org.opensearch.plugin:opensearch-neural-search:zip:2.19.1.0 in central "
        "(https://repo.maven.apache.org/maven2) -> [Help 1]\n[ERROR] \n"
    )
    assert failure_reason(output) == (
        "Could not find artifact org.opensearch.plugin:opensearch-neural-search:zip:2.19.1.0 in central "
        "(https://repo.maven.apache.org/maven2)"
    )


def test_settings_bind_loopback_single_node_with_separate_transport_port() -> None:
    text = render_settings(OPENSEARCH, Path("/nodes/os 1"), 9250)
    assert "discovery.type: single-node\n" in text
    assert "network.host: 127.0.0.1\n" in text
    assert "http.port: 9250\n" in text and "transport.port: 9350\n" in text
    assert 'path.data: "/nodes/os 1/data"\n' in text  # quoted because of the space
    assert "cluster.routing.allocation.disk.threshold_enabled: false\n" in text


def test_a_forced_java_home_without_a_jdk_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(JAVA_HOME_ENV, str(tmp_path))
    with pytest.raises(NodeError, match=f"{JAVA_HOME_ENV}=.* must be a Java 11-21 JDK .no JDK there."):
        find_java_home(OPENSEARCH.java_majors)


def test_missing_mvn_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(maven.shutil, "which", lambda name: None)
    with pytest.raises(NodeError, match=r"mvn .* is not on PATH"):
        maven.resolve([OPENSEARCH.distribution], transitive=False)
