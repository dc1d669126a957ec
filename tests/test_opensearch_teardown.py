"""Setup and teardown on the real OpenSearch 2.19 node, when several pipelines share a cluster: names
follow `--pipeline`, nothing of another pipeline is changed or deleted, `--dry-run` changes nothing, and
the cluster-wide `private_ip_enabled` goes back to what it was once no connector needs it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch

from retrostar_search.engines.opensearch_ml import MLCommons
from retrostar_search.engines.opensearch_setup import (
    PRIVATE_IP_ENABLED,
    TRUSTED_ENDPOINTS,
    connector_name,
    model_name,
    private_endpoint_status,
    trusted_endpoint_regex,
)
from retrostar_search.engines.search import search_through_pipeline
from retrostar_search.errors import ExitCode
from tests.conftest import RestartableConnector
from tests.search_corpus import DOCUMENTS, QUERY, index_documents, run_cli

RUN = uuid.uuid4().hex[:8]
INDEX = f"rstest-own-{RUN}"


def cli(*args: str) -> tuple[int, str]:
    code, output = run_cli(*args)
    return code, " ".join(output.split())


def persistent(client: OpenSearch, key: str) -> object:
    return client.cluster.get_settings(flat_settings=True)["persistent"].get(key)


@pytest.fixture(scope="module")
def cluster(
    opensearch_url: str, opensearch_client: OpenSearch, live_connector: RestartableConnector
) -> Iterator[tuple[str, OpenSearch, str]]:
    """The node, with no connector on it that could need private addresses (so this module decides what
    private_ip_enabled is), and the corpus indexed."""
    ml = MLCommons(opensearch_client)
    needing = [
        connector.source.get("name", connector.id)
        for connector in ml.all_connectors()
        for action in connector.source.get("actions") or []
        if private_endpoint_status(str(action.get("url", ""))) is not False
    ]
    assert not needing, f"tear down the connectors {needing} on {opensearch_url} first"
    # A leftover of an older teardown, which never took it back: nothing needs it (checked above).
    opensearch_client.cluster.put_settings(body={"persistent": {PRIVATE_IP_ENABLED: None}})
    index_documents(opensearch_client, INDEX)
    yield opensearch_url, opensearch_client, live_connector.url
    teardown_all(opensearch_url)
    opensearch_client.indices.delete(index=INDEX, ignore_unavailable=True)


def teardown_all(url: str) -> None:
    """Whatever the tests of this module set up, in an order that leaves nothing shared behind."""
    for pipeline, name in [
        (f"a-{RUN}", None), (f"b-{RUN}", f"a-{RUN}"), (f"b-{RUN}", None), (f"c-{RUN}", None),
        (f"d-{RUN}", f"c-{RUN}"), (f"e-{RUN}", None), (f"f-{RUN}", None),
    ]:  # fmt: skip
        cli(
            "teardown",
            "opensearch",
            "--url",
            url,
            "--pipeline",
            pipeline,
            *(["--name", name] if name else []),
        )


def setup(url: str, connector_url: str, *args: str) -> tuple[int, str]:
    return cli(
        "setup", "opensearch", "--url", url, "--connector-url", connector_url, "--no-smoke-test", *args
    )


def test_names_follow_the_pipeline_and_shared_objects_outlive_one_pipeline(
    cluster: tuple[str, OpenSearch, str],
) -> None:
    url, client, connector_url = cluster
    ml = MLCommons(client)
    first, second = f"a-{RUN}", f"b-{RUN}"

    code, output = setup(url, connector_url, "--pipeline", first)
    assert code == 0, output
    # No --name: connector and model are the pipeline's own, never the shared `retrostar-*` ones.
    (model,) = ml.find_models(model_name(first))
    assert len(ml.find_connectors(connector_name(first))) == 1
    assert ml.find_models(model_name("retrostar")) == []

    # A second pipeline shares them on purpose (--name).
    code, output = setup(url, connector_url, "--pipeline", second, "--name", first)
    assert code == 0, output
    assert [m.id for m in ml.find_models(model_name(first))] == [model.id]

    # --dry-run says what teardown would do, and changes nothing.
    code, output = cli("teardown", "opensearch", "--url", url, "--pipeline", first, "--dry-run")
    assert code == 0, output
    assert f"remove search pipeline '{first}'" in output
    assert (
        f"would keep model '{model_name(first)}' ({model.id}): search pipeline(s) '{second}' still use it"
        in output
    )
    assert ml.get_pipeline(first) is not None and ml.find_models(model_name(first))

    # Teardown of the first pipeline keeps what the second one uses, naming it; the second still reranks.
    code, output = cli("teardown", "opensearch", "--url", url, "--pipeline", first)
    assert code == 0, output
    assert (
        f"kept model '{model_name(first)}' ({model.id}): search pipeline(s) '{second}' still use it" in output
    )
    assert ml.get_pipeline(first) is None
    hits = search_through_pipeline(client, INDEX, QUERY, len(DOCUMENTS), pipeline=second)
    assert hits[0].id == "volcano-7"

    # The last pipeline using them takes them along.
    code, output = cli("teardown", "opensearch", "--url", url, "--pipeline", second, "--name", first)
    assert code == 0, output
    assert ml.find_models(model_name(first)) == [] and ml.find_connectors(connector_name(first)) == []


def test_setup_refuses_to_change_another_pipelines_model(cluster: tuple[str, OpenSearch, str]) -> None:
    url, client, connector_url = cluster
    owner, newcomer = f"d-{RUN}", f"c-{RUN}"
    # `owner` took the names `newcomer` would get by default.
    code, output = setup(url, connector_url, "--pipeline", owner, "--name", newcomer)
    assert code == 0, output
    (model,) = MLCommons(client).find_models(model_name(newcomer))

    code, output = setup(url, connector_url, "--pipeline", newcomer, "--read-timeout", "3")
    assert code == 1
    assert f"model '{model_name(newcomer)}' ({model.id}) belongs to search pipeline(s) '{owner}'" in output
    assert "--name" in output
    (connector,) = MLCommons(client).find_connectors(connector_name(newcomer))
    assert connector.source["client_config"]["read_timeout"] != 3  # untouched
    assert MLCommons(client).get_pipeline(newcomer) is None


def test_teardown_gives_back_private_ip_enabled_when_nothing_needs_it(
    cluster: tuple[str, OpenSearch, str],
) -> None:
    url, client, connector_url = cluster
    teardown_all(url)  # the other tests' wirings: this one starts from a cluster without them
    first, second = f"e-{RUN}", f"f-{RUN}"
    assert persistent(client, PRIVATE_IP_ENABLED) is None

    for pipeline in (first, second):
        code, output = setup(url, connector_url, "--pipeline", pipeline)
        assert code == 0, output
    assert persistent(client, PRIVATE_IP_ENABLED) == "true"

    # The second pipeline's connector (same loopback URL) still needs private access and the entry.
    code, output = cli("teardown", "opensearch", "--url", url, "--pipeline", first)
    assert code == 0, output
    assert f"{PRIVATE_IP_ENABLED} stays true" in output
    assert persistent(client, PRIVATE_IP_ENABLED) == "true"
    assert trusted_endpoint_regex(connector_url) in persistent(client, TRUSTED_ENDPOINTS)  # type: ignore[operator]

    # The last one puts back what the first setup found: unset, i.e. the default false.
    code, output = cli("teardown", "opensearch", "--url", url, "--pipeline", second)
    assert code == 0, output
    assert f"{PRIVATE_IP_ENABLED} back to its default (false)" in output
    assert persistent(client, PRIVATE_IP_ENABLED) is None
    assert trusted_endpoint_regex(connector_url) not in persistent(client, TRUSTED_ENDPOINTS)  # type: ignore[operator]


def test_setup_and_teardown_on_a_cluster_without_ml_commons_say_what_to_do(opensearch3_url: str) -> None:
    for command in (
        ("setup", "opensearch", "--connector-url", "http://127.0.0.1:8000"),
        ("teardown", "opensearch"),
    ):
        code, output = cli(*command, "--url", opensearch3_url)
        assert code == ExitCode.UNAVAILABLE, output
        assert "has no opensearch-ml or opensearch-neural-search plugin" in output
        assert "retrosearch search --client-side" in output
