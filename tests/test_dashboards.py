"""Dashboards / Kibana saved objects: the NDJSON against the Saved Objects format, the charts' aggregations
against the real log mapping, and the import request as a real HTTP endpoint receives it."""

from __future__ import annotations

import asyncio
import base64
import email.parser
import email.policy
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from connector.rerank_log import RerankLogSettings, RerankLogWriter
from retrostar_search.cli import app
from retrostar_search.dashboards import DEFAULT_INDEX_PATTERN, Target, saved_objects, to_ndjson
from retrostar_search.dashboards.index_pattern import field_types
from retrostar_search.dashboards.saved_objects import INDEX_REF_NAME
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.errors import ExitCode
from retrostar_search.rerank_log.schema import MAPPING_PROPERTIES, retention_policy_name, template_name
from tests.test_rerank_log import free_port, make_event

TARGETS = list(Target)


def parse_ndjson(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(params=TARGETS, ids=lambda target: target.value)
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return parse_ndjson(to_ndjson(saved_objects(request.param)))


def of_type(objects: list[dict[str, Any]], object_type: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["type"] == object_type]


# ------------------------------------------------------------------------------------------------
# The NDJSON against the Saved Objects format
# ------------------------------------------------------------------------------------------------


def test_every_object_has_type_id_attributes_and_a_unique_id(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        assert isinstance(obj["type"], str) and isinstance(obj["id"], str) and obj["id"]
        assert isinstance(obj["attributes"], dict) and obj["attributes"]["title"]
        assert obj["migrationVersion"].keys() == {obj["type"]}
    assert len({(obj["type"], obj["id"]) for obj in objects}) == len(objects)
    assert [len(of_type(objects, kind)) for kind in ("index-pattern", "visualization", "dashboard")] == [
        1,
        7,
        1,
    ]


def test_every_reference_resolves_to_an_object_in_the_file(objects: list[dict[str, Any]]) -> None:
    present = {(obj["type"], obj["id"]) for obj in objects}
    for obj in objects:
        for reference in obj["references"]:
            assert (reference["type"], reference["id"]) in present, reference
        names = [reference["name"] for reference in obj["references"]]
        assert len(names) == len(set(names))


def test_every_visualization_points_at_the_index_pattern_through_its_reference(
    objects: list[dict[str, Any]],
) -> None:
    (pattern,) = of_type(objects, "index-pattern")
    for vis in of_type(objects, "visualization"):
        search_source = json.loads(vis["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert "index" not in search_source  # ids live in references only
        assert search_source["indexRefName"] == INDEX_REF_NAME
        assert {"name": INDEX_REF_NAME, "type": "index-pattern", "id": pattern["id"]} in vis["references"]
        assert search_source["query"]["query"] in ("kind:event", "kind:document")


def test_dashboard_panels_reference_every_visualization_without_overlap(
    objects: list[dict[str, Any]],
) -> None:
    (dashboard,) = of_type(objects, "dashboard")
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    by_name = {reference["name"]: reference for reference in dashboard["references"]}
    shown = {by_name[panel["panelRefName"]]["id"] for panel in panels}
    assert shown == {vis["id"] for vis in of_type(objects, "visualization")}
    assert all(by_name[panel["panelRefName"]]["type"] == "visualization" for panel in panels)
    cells = [
        (x, y)
        for panel in panels
        for x in range(panel["gridData"]["x"], panel["gridData"]["x"] + panel["gridData"]["w"])
        for y in range(panel["gridData"]["y"], panel["gridData"]["y"] + panel["gridData"]["h"])
    ]
    assert len(cells) == len(set(cells)) and max(x for x, _ in cells) < 48
    assert len({panel["panelIndex"] for panel in panels}) == len(panels)


def test_index_pattern_fields_match_the_log_mapping(objects: list[dict[str, Any]]) -> None:
    (pattern,) = of_type(objects, "index-pattern")
    attributes = pattern["attributes"]
    assert attributes["title"] == DEFAULT_INDEX_PATTERN
    assert MAPPING_PROPERTIES[attributes["timeFieldName"]]["type"] == "date"
    fields = {spec["name"]: spec for spec in json.loads(attributes["fields"])}
    assert set(MAPPING_PROPERTIES) <= set(fields)
    assert fields["query.keyword"]["subType"] == {"multi": {"parent": "query"}}
    assert fields["reasoning"]["aggregatable"] is False and fields["total_ms"]["type"] == "number"


# Which dashboards field types each aggregation accepts (what the visualization editor offers).
_AGG_FIELD_TYPES = {
    "avg": {"number"},
    "max": {"number"},
    "histogram": {"number"},
    "date_histogram": {"date"},
    "terms": {"string", "number", "boolean"},
}


def test_visualization_aggregations_name_aggregatable_fields_of_the_right_type(
    objects: list[dict[str, Any]],
) -> None:
    types = field_types()
    aggregatable = {
        spec["name"]
        for spec in json.loads(of_type(objects, "index-pattern")[0]["attributes"]["fields"])
        if spec["aggregatable"]
    }
    for vis in of_type(objects, "visualization"):
        state = json.loads(vis["attributes"]["visState"])
        assert state["title"] == vis["attributes"]["title"]
        metric_ids = {agg["id"] for agg in state["aggs"] if agg["schema"] == "metric"}
        assert metric_ids, vis["id"]
        for agg in state["aggs"]:
            name = agg["params"].get("field")
            if name is None:
                assert agg["type"] == "count"
                continue
            assert name in aggregatable, (vis["id"], name)
            assert types[name] in _AGG_FIELD_TYPES[agg["type"]], (vis["id"], name, agg["type"])
            if agg["type"] == "terms":
                assert agg["params"]["orderBy"] in metric_ids
        for series in state["params"].get("seriesParams", []):
            assert series["data"]["id"] in metric_ids


def test_targets_differ_only_where_the_apps_do() -> None:
    osd = saved_objects(Target.OPENSEARCH_DASHBOARDS)
    kibana = saved_objects(Target.KIBANA)
    assert [obj["id"] for obj in osd] == [obj["id"] for obj in kibana]
    assert osd[:-1] == kibana[:-1]  # index pattern and visualizations are the same objects
    osd_panels = json.loads(osd[-1]["attributes"]["panelsJSON"])
    kibana_panels = json.loads(kibana[-1]["attributes"]["panelsJSON"])
    assert {panel["version"] for panel in osd_panels} == {"2.19.0"}
    assert {panel["version"] for panel in kibana_panels} == {"7.10.0"}


def test_a_custom_index_pattern_gets_its_own_ids() -> None:
    objects = saved_objects(Target.KIBANA, "team-a-log*")
    assert objects[0]["attributes"]["title"] == "team-a-log*"
    assert all(obj["id"].startswith("team-a-log-") for obj in objects)


def test_export_writes_the_same_ndjson_to_a_file_and_to_stdout(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "objects.ndjson"
    to_file = runner.invoke(app, ["dashboards", "export", "--target", "kibana", "--out", str(out)])
    to_stdout = runner.invoke(app, ["dashboards", "export", "--target", "kibana"])
    assert to_file.exit_code == 0 and to_stdout.exit_code == 0
    assert out.read_text() == to_stdout.stdout == to_ndjson(saved_objects(Target.KIBANA))


# ------------------------------------------------------------------------------------------------
# The charts' aggregations, run on real log data in both engines
# ------------------------------------------------------------------------------------------------


def engine_aggregation(aggs: list[dict[str, Any]]) -> dict[str, Any]:
    """The engine request a visualization's aggs stand for: buckets nested in order, metrics innermost,
    and a terms bucket ordered by a metric carrying that metric itself (the shape the dashboards' own
    request builder sends, reduced to the agg types these charts use)."""
    metrics = {
        agg["id"]: {agg["type"]: {"field": agg["params"]["field"]}}
        for agg in aggs
        if agg["schema"] == "metric" and agg["type"] != "count"
    }
    tree: dict[str, Any] = metrics
    for agg in reversed([agg for agg in aggs if agg["schema"] != "metric"]):
        params = agg["params"]
        if agg["type"] == "date_histogram":
            body: dict[str, Any] = {"field": params["field"], "fixed_interval": "1h", "min_doc_count": 1}
        elif agg["type"] == "histogram":
            body = {"field": params["field"], "interval": params["interval"], "min_doc_count": 0}
            if params["has_extended_bounds"]:
                body["extended_bounds"] = params["extended_bounds"]
        else:
            body = {"field": params["field"], "size": params["size"]}
            if params["orderBy"] in metrics:
                body["order"] = {params["orderBy"]: params["order"]}
                tree = {**tree, params["orderBy"]: metrics[params["orderBy"]]}
            if params["missingBucket"]:
                body["missing"] = "__missing__"
        tree = {agg["id"]: {agg["type"]: body, **({"aggs": tree} if tree else {})}}
    return tree


@pytest.fixture(params=[Engine.OPENSEARCH, Engine.ELASTICSEARCH], ids=lambda engine: engine.value)
def logged_engine(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str, str]]:
    """A real node holding a few rerank-log events written by the real writer, under a prefix of its own."""
    engine: Engine = request.param
    url = request.getfixturevalue("opensearch_url" if engine is Engine.OPENSEARCH else "elasticsearch_url")
    prefix = f"test-dashboards-{uuid.uuid4().hex[:8]}"

    async def write() -> None:
        writer = RerankLogWriter(
            RerankLogSettings(log_url=url, log_engine=engine, log_index=prefix, log_queries=True)
        )
        await writer.start()
        for number in range(4):
            writer.submit(make_event(f"req-{number}", documents=3 + number, degraded=number == 3))
        await writer.stop()
        assert writer.counters().written == 4

    asyncio.run(write())
    yield engine, url, prefix
    client = EngineConnection(engine=engine, url=url).client()
    for index in client.indices.get(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True):
        client.indices.delete(index=index)
    client.indices.delete_index_template(name=template_name(prefix))
    try:
        if engine is Engine.OPENSEARCH:
            client.index_management.delete_policy(policy=retention_policy_name(prefix))
        else:
            client.ilm.delete_lifecycle(name=retention_policy_name(prefix))
    except Exception:  # the test nodes have no retention API
        pass
    client.close()


def test_every_chart_aggregation_runs_on_the_real_log(logged_engine: tuple[Engine, str, str]) -> None:
    engine, url, prefix = logged_engine
    client = EngineConnection(engine=engine, url=url).client()
    client.indices.refresh(index=f"{prefix}-*")
    for vis in saved_objects(Target.OPENSEARCH_DASHBOARDS, f"{prefix}*"):
        if vis["type"] != "visualization":
            continue
        state = json.loads(vis["attributes"]["visState"])
        kind = json.loads(vis["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        body = {
            "size": 0,
            "query": {"term": {"kind": kind.removeprefix("kind:")}},
            "aggs": engine_aggregation(state["aggs"]),
        }
        response = client.search(index=f"{prefix}*", body=body)
        assert response["hits"]["total"]["value"] > 0, vis["id"]
        (top,) = response["aggregations"].values()
        assert top["buckets"], (vis["id"], response["aggregations"])
    client.close()


# ------------------------------------------------------------------------------------------------
# The import request, as a real HTTP endpoint receives it
# ------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingEndpoint:
    """A local HTTP server that records each request and answers with a preset status and JSON body."""

    status: int = 200
    reply: dict[str, Any] = field(default_factory=lambda: {"success": True, "successCount": 9})
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                parts = urlsplit(self.path)
                endpoint.requests.append(
                    RecordedRequest(
                        method="POST",
                        path=parts.path,
                        query=parse_qs(parts.query),
                        headers={name.lower(): value for name, value in self.headers.items()},
                        body=self.rfile.read(length),
                    )
                )
                payload = json.dumps(endpoint.reply).encode()
                self.send_response(endpoint.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[RecordingEndpoint]:
    recording = RecordingEndpoint()
    yield recording
    recording.close()


def multipart_files(request: RecordedRequest) -> dict[str, tuple[str | None, bytes]]:
    """Form field name -> (filename, content), parsed by the standard library's MIME parser."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    assert message.is_multipart()
    return {
        part.get_param("name", header="content-disposition"): (
            part.get_filename(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    }


@pytest.mark.parametrize(
    ("target", "xsrf_header"), [(Target.OPENSEARCH_DASHBOARDS, "osd-xsrf"), (Target.KIBANA, "kbn-xsrf")]
)
def test_import_posts_the_ndjson_as_multipart_file_with_the_xsrf_header(
    endpoint: RecordingEndpoint, target: Target, xsrf_header: str
) -> None:
    result = CliRunner().invoke(
        app,
        ["dashboards", "import", "--url", endpoint.url + "/", "--target", target.value],
        env={"RETROSEARCH_DASHBOARDS_USERNAME": "admin", "RETROSEARCH_DASHBOARDS_PASSWORD": "pw-secret"},
    )
    assert result.exit_code == 0, result.output
    assert "imported 9 saved objects" in result.stdout
    (request,) = endpoint.requests
    assert request.path == "/api/saved_objects/_import"
    assert request.query == {"overwrite": ["true"]}
    assert request.headers[xsrf_header] == "true"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"admin:pw-secret").decode()
    files = multipart_files(request)
    assert list(files) == ["file"]
    filename, content = files["file"]
    assert filename is not None and filename.endswith(".ndjson")
    assert content.decode() == to_ndjson(saved_objects(target))
    assert "pw-secret" not in result.output


def test_import_sends_an_api_key_and_an_exported_file_as_is(endpoint: RecordingEndpoint, tmp_path) -> None:
    exported = tmp_path / "custom.ndjson"
    exported.write_text(to_ndjson(saved_objects(Target.KIBANA, "other-log*")))
    result = CliRunner().invoke(
        app,
        ["dashboards", "import", "--url", endpoint.url, "--target", "kibana", "--file", str(exported)],
        env={"RETROSEARCH_DASHBOARDS_API_KEY": "key-123"},
    )
    assert result.exit_code == 0, result.output
    (request,) = endpoint.requests
    assert request.headers["authorization"] == "ApiKey key-123"
    assert multipart_files(request)["file"][1].decode() == exported.read_text()


def test_import_reports_each_object_the_api_rejected(endpoint: RecordingEndpoint) -> None:
    endpoint.reply = {
        "success": False,
        "successCount": 7,
        "errors": [
            {
                "id": "retrostar-log-score-distribution",
                "type": "visualization",
                "title": "Retro* score distribution",
                "meta": {"title": "Retro* score distribution", "icon": "visualizeApp"},
                "error": {
                    "type": "missing_references",
                    "references": [{"type": "index-pattern", "id": "retrostar-log-index-pattern"}],
                },
            },
            {
                "id": "retrostar-log-dashboard",
                "type": "dashboard",
                "title": "Retro* rerank log",
                "error": {"type": "unknown", "message": "version conflict", "statusCode": 409},
            },
        ],
    }
    result = CliRunner().invoke(app, ["dashboards", "import", "--url", endpoint.url])
    assert result.exit_code == ExitCode.INCOMPLETE
    output = " ".join(result.output.split())
    assert "missing references: index-pattern/retrostar-log-index-pattern" in output
    assert "unknown: version conflict" in output
    assert "2 saved objects failed, 7 imported" in output


def test_import_reports_a_refused_request(endpoint: RecordingEndpoint) -> None:
    endpoint.status = 400
    endpoint.reply = {"statusCode": 400, "error": "Bad Request", "message": "Invalid file extension .txt"}
    result = CliRunner().invoke(app, ["dashboards", "import", "--url", endpoint.url, "--target", "kibana"])
    assert result.exit_code == 1
    assert "HTTP 400: Invalid file extension .txt" in " ".join(result.output.split())


def test_import_reports_an_unreachable_app_without_a_traceback() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["dashboards", "import", "--url", url])
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert f"error: cannot reach {url}: connection refused: nothing listens there" in flat
    assert "hint: is the app running there? Check --url" in flat
    assert "Traceback" not in result.output and "ConnectError" not in result.output


def test_import_refuses_two_kinds_of_credentials(endpoint: RecordingEndpoint) -> None:
    result = CliRunner().invoke(
        app, ["dashboards", "import", "--url", endpoint.url, "--username", "u", "--api-key", "k"]
    )
    assert result.exit_code == 2 and not endpoint.requests
