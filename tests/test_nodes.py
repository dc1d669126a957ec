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

import pytest
import typer
from typer.testing import CliRunner

from retrostar_search.cli import node as node_cli
from retrostar_search.engines.connection import Engine
from retrostar_search.nodes import NodeError, ensure_node, maven, node_status, stop_node
from retrostar_search.nodes.home import render_settings
from retrostar_search.nodes.java import JAVA_HOME_ENV, find_java_home
from retrostar_search.nodes.maven import ResolvedArtifact, failure_reason, parse_listing
from retrostar_search.nodes.paths import node_home, node_lock_file
from retrostar_search.nodes.process import group_members, port_in_use
from retrostar_search.nodes.specs import ELASTICSEARCH, OPENSEARCH, TRANSPORT_PORT_OFFSET

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


def _managed_port(engine: Engine, url: str) -> int:
    """The node's port, skipping when the URL points at a node that retrosearch did not start."""
    port = _port(url)
    if node_status(engine, port).pid is None:
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
