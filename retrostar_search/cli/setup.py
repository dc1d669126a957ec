"""`retrosearch setup|teardown opensearch|elasticsearch`: wire the rerank connector into an engine, or
unwire it.

What each command changes on a cluster, and why, is in docs/opensearch.md and docs/elasticsearch.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape

from connector.settings import ConnectorSettings
from retrostar_search.cli.connection import ELASTICSEARCH, OPENSEARCH, connection_options, open_engine
from retrostar_search.cli.errors import fail, scrub
from retrostar_search.cli.options import in_panel
from retrostar_search.engines.connection import EngineConnection
from retrostar_search.engines.connector_endpoint import PlannedRequest, split_fields
from retrostar_search.engines.elasticsearch_setup import (
    ElasticsearchSetupError,
    InferenceWiring,
    create_inference_endpoint,
    delete_inference_endpoint,
    retriever_example,
)
from retrostar_search.engines.elasticsearch_setup import dry_run_plan as inference_dry_run_plan
from retrostar_search.engines.opensearch_ml import MLCommons
from retrostar_search.engines.opensearch_setup import (
    OpenSearchRerankSetup,
    RerankWiring,
    SetupError,
    SetupResult,
    TeardownPlan,
)
from retrostar_search.engines.search import pipeline_search_body

T = TypeVar("T")

CONNECTOR_PANEL = "Rerank connector"
WIRING_PANEL = "What to wire"

setup_app = typer.Typer(help="Wire the Retro* rerank connector into a search engine.", no_args_is_help=True)
teardown_app = typer.Typer(help="Remove what `retrosearch setup` made.", no_args_is_help=True)

_connector, _wiring, _other = in_panel(CONNECTOR_PANEL), in_panel(WIRING_PANEL), in_panel(None)
ConnectorUrlOpt = Annotated[
    str,
    _connector(
        "Base URL of `retrosearch serve` as the ENGINE reaches it (its /v1/rerank is called).",
        "--connector-url",
        envvar="RETROSEARCH_CONNECTOR_URL",
    ),
]
ConnectorApiKeyOpt = Annotated[
    str | None,
    _connector(
        "The connector's API key (its --api-key), stored in the engine as the connector's credential.",
        "--connector-api-key",
        envvar="RETROSEARCH_CONNECTOR_API_KEY",
        show_default=False,
    ),
]
DeadlineOpt = Annotated[
    float,
    _connector(
        "The connector's --deadline in seconds; OpenSearch's timeouts are set a few seconds above it."
    ),
]
ReadTimeoutOpt = Annotated[
    int | None,
    _connector("ML Commons read_timeout in seconds \\[default: deadline + 5].", show_default=False),
]
ConnectionTimeoutOpt = Annotated[
    int | None,
    _connector("ML Commons connection_timeout in seconds \\[default: deadline + 5].", show_default=False),
]
IndexOpt = Annotated[str | None, _wiring("Index for --default-pipeline.")]
FieldsOpt = Annotated[
    str, _wiring("Comma-separated fields whose text is reranked (concatenated, as OpenSearch does).")
]
PipelineOpt = Annotated[str, _wiring("Search pipeline name.")]
DefaultPipelineOpt = Annotated[bool, _wiring("Make the pipeline --index's index.search.default_pipeline.")]
IgnoreFailureOpt = Annotated[
    bool, _wiring("When the rerank fails, answer the BM25 order instead of an error.")
]
NameOpt = Annotated[
    str | None,
    _wiring(
        "Base name of the connector (<name>-rerank-connector) and model (<name>-rerank) "
        "\\[default: the pipeline's name]. Give the same --name to several pipelines to share them.",
        show_default=False,
    ),
]
SmokeTestOpt = Annotated[bool, _other("Finish with a _predict through the model.")]
DryRunOpt = Annotated[
    bool, _other("Print the requests instead of sending them (secrets masked).", "--dry-run")
]
InferenceIdOpt = Annotated[str, _other("Inference endpoint id.")]
TeardownNameOpt = Annotated[
    str | None,
    _other(
        "Base name given to `setup opensearch --name` \\[default: the pipeline's name].", show_default=False
    ),
]
TeardownDryRunOpt = Annotated[
    bool, _other("Print what would be removed and kept; change nothing.", "--dry-run")
]


@setup_app.command("opensearch")
@connection_options(OPENSEARCH)
def setup_opensearch(
    *,
    connector_url: ConnectorUrlOpt,
    connector_api_key: ConnectorApiKeyOpt = None,
    connector_deadline: DeadlineOpt = ConnectorSettings.model_fields["deadline"].default,
    read_timeout: ReadTimeoutOpt = None,
    connection_timeout: ConnectionTimeoutOpt = None,
    index: IndexOpt = None,
    default_pipeline: DefaultPipelineOpt = False,
    ignore_failure: IgnoreFailureOpt = False,
    fields: FieldsOpt = "title,text",
    pipeline: PipelineOpt = "retrostar",
    name: NameOpt = None,
    smoke_test: SmokeTestOpt = True,
    dry_run: DryRunOpt = False,
    connection: EngineConnection,
) -> None:
    """Connector, model and search pipeline in OpenSearch (2.19, ML Commons + neural-search)."""
    console = Console(highlight=False)
    try:
        wiring = RerankWiring.plan(
            connector_url,
            connector_api_key=connector_api_key,
            deadline_s=connector_deadline,
            read_timeout_s=read_timeout,
            connection_timeout_s=connection_timeout,
            index=index,
            default_pipeline=default_pipeline,
            ignore_failure=ignore_failure,
            pipeline=pipeline,
            name=name,
            fields=split_fields(fields),
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    target = scrub(connection.resolved_url, connection)
    if dry_run:  # works offline too: the plan is then the one for the default version
        features, plan = _opensearch_setup(connection, console).dry_run(wiring)
        console.print(
            f"# dry run: the requests `setup opensearch` sends to {escape(target)} (OpenSearch "
            f"{features.version}) on a first run"
        )
        _print_plan(console, plan)
        return
    open_engine(console, connection)
    console.print(f"wiring {escape(wiring.connector_url)} into OpenSearch at {escape(target)}")
    result = _on_opensearch(
        connection, console, "setup failed:", lambda setup: setup.apply(wiring, smoke_test=smoke_test)
    )
    _print_setup(console, wiring, result)


@teardown_app.command("opensearch")
@connection_options(OPENSEARCH)
def teardown_opensearch(
    *,
    pipeline: Annotated[str, typer.Option(help="Search pipeline name.")] = "retrostar",
    name: TeardownNameOpt = None,
    dry_run: TeardownDryRunOpt = False,
    connection: EngineConnection,
) -> None:
    """Remove the pipeline (and any index default pointing at it), its model and connector, and the
    cluster settings setup added for them; what another pipeline still uses is kept and named."""
    console = Console(highlight=False)
    open_engine(console, connection)
    plan = _on_opensearch(
        connection,
        console,
        "teardown failed:",
        lambda setup: setup.plan_teardown(pipeline, name) if dry_run else setup.teardown(pipeline, name),
    )
    _print_teardown(console, plan, dry_run)


@setup_app.command("elasticsearch")
@connection_options(ELASTICSEARCH)
def setup_elasticsearch(
    *,
    connector_url: ConnectorUrlOpt,
    connector_api_key: ConnectorApiKeyOpt = None,
    inference_id: InferenceIdOpt = "retrostar",
    field: Annotated[str, typer.Option(help="Field the retriever sends to the endpoint.")] = "text",
    dry_run: DryRunOpt = False,
    connection: EngineConnection,
) -> None:
    """A `custom` rerank inference endpoint for the text_similarity_reranker retriever (Enterprise or trial
    licence; on Basic, rerank client-side with `retrosearch search --engine elasticsearch`)."""
    console = Console(highlight=False)
    try:
        wiring = InferenceWiring(
            connector_url=connector_url,
            inference_id=inference_id,
            connector_api_key=SecretStr(connector_api_key) if connector_api_key else None,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    retriever = retriever_example(inference_id, "your query", field)
    if dry_run:
        _print_plan(console, inference_dry_run_plan(wiring))
        console.print("# then search with:")
        console.print_json(json.dumps(retriever))
        return
    target = scrub(connection.resolved_url, connection)
    open_engine(console, connection)
    try:
        create_inference_endpoint(connection.elasticsearch_client(), wiring, target)
    except ElasticsearchSetupError as error:
        fail(console, error, label="setup failed:", connection=connection)
    console.print(
        f"[green]created[/] rerank inference endpoint {inference_id!r} -> {escape(wiring.connector_url)}"
    )
    console.print("Search with the text_similarity_reranker retriever (POST /<index>/_search):")
    console.print_json(json.dumps(retriever))


@teardown_app.command("elasticsearch")
@connection_options(ELASTICSEARCH)
def teardown_elasticsearch(
    *, inference_id: InferenceIdOpt = "retrostar", connection: EngineConnection
) -> None:
    """Delete the rerank inference endpoint."""
    console = Console(highlight=False)
    target = scrub(connection.resolved_url, connection)
    open_engine(console, connection)
    try:
        removed = delete_inference_endpoint(connection.elasticsearch_client(), inference_id, target)
    except ElasticsearchSetupError as error:
        fail(console, error, label="teardown failed:", connection=connection)
    console.print(
        f"removed inference endpoint {inference_id!r}"
        if removed
        else f"no inference endpoint {inference_id!r}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(setup_app, name="setup")
    app.add_typer(teardown_app, name="teardown")


def _opensearch_setup(connection: EngineConnection, console: Console) -> OpenSearchRerankSetup:
    """The OpenSearch wiring on this cluster, printing each step it takes as an indented line."""
    ml = MLCommons(connection.opensearch_client())
    return OpenSearchRerankSetup(ml, report=lambda line: console.print(f"  {escape(line)}"))


def _on_opensearch(
    connection: EngineConnection, console: Console, label: str, step: Callable[[OpenSearchRerankSetup], T]
) -> T:
    """`step` on this cluster's wiring; a failed step ends the command, its reason printed after `label`."""
    try:
        return step(_opensearch_setup(connection, console))
    except SetupError as error:
        fail(console, error, label=label, connection=connection)


def _print_setup(console: Console, wiring: RerankWiring, result: SetupResult) -> None:
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if wiring.default_pipeline:
        console.print(
            "[yellow]note:[/] every search of "
            f"{escape(str(wiring.index))} now goes through the pipeline: one without "
            '"ext": {"rerank": {"query_context": ...}}, with size 0 or with track_total_hits false fails in '
            "OpenSearch 2.19"
            + (" (answered un-reranked with --ignore-failure)" if wiring.ignore_failure else "")
        )
    index = escape(wiring.index or "<index>")
    console.print(
        f'[green]ready.[/] Search with: retrosearch search "your query" --index {index}'
        f" --pipeline {escape(wiring.pipeline)}\n"
        f"or any client: POST /{index}/_search?search_pipeline={escape(wiring.pipeline)}"
    )
    example = pipeline_search_body("why do leaves change colour in autumn", wiring.fields, 10)
    console.print_json(json.dumps(example))


def _print_teardown(console: Console, plan: TeardownPlan, dry_run: bool) -> None:
    if dry_run:
        console.print(f"# dry run: teardown of pipeline {plan.pipeline!r} would")
        for line in plan.lines():
            console.print(f"  {escape(line if line.startswith('plugins.') else 'remove ' + line)}")
    for kept in plan.kept:
        console.print(
            f"  [yellow]{'would keep' if dry_run else 'kept'}[/] {escape(kept.what)}: {escape(kept.reason)}"
        )
    for note in plan.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if plan.empty and not plan.kept:
        console.print(
            f"nothing to remove: no pipeline {plan.pipeline!r}, connector or model named {plan.name!r}"
        )
    elif not dry_run:
        console.print("done.")


def _print_plan(console: Console, plan: list[PlannedRequest]) -> None:
    for request in plan:
        console.print(f"\n# {escape(request.purpose)}\n{request.method} {escape(request.path)}")
        if request.body is not None:
            console.print(escape(json.dumps(request.body, indent=2, ensure_ascii=False)), soft_wrap=True)
