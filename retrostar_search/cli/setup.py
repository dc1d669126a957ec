"""`retrosearch setup|teardown opensearch|elasticsearch`: wire the rerank connector into an engine, or
unwire it.

What each command changes on a cluster, and why, is in docs/opensearch.md and docs/elasticsearch.md.
"""

from __future__ import annotations

import json
from typing import Annotated, NoReturn

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape

from connector.settings import ConnectorSettings
from retrostar_search.cli.common import (
    ApiKeyOpt,
    CaCertsOpt,
    InsecureOpt,
    PasswordOpt,
    UrlOpt,
    UsernameOpt,
    engine_connection,
    scrub,
)
from retrostar_search.engines.connection import Engine, EngineConnection
from retrostar_search.engines.elasticsearch_setup import (
    ElasticsearchSetupError,
    InferenceWiring,
    LicenceError,
    create_inference_endpoint,
    delete_inference_endpoint,
    inference_endpoint_body,
    retriever_example,
)
from retrostar_search.engines.opensearch_ml import MLCommons
from retrostar_search.engines.opensearch_setup import (
    OLDEST_FEATURES,
    OpenSearchRerankSetup,
    PlannedRequest,
    RerankWiring,
    SetupError,
    TeardownPlan,
    dry_run_plan,
    timeout_for_deadline,
)
from retrostar_search.engines.search import pipeline_search_body

EXIT_FAILED = 1
EXIT_LICENCE = 3
CONNECTOR_PANEL = "Rerank connector"
WIRING_PANEL = "What to wire"

setup_app = typer.Typer(help="Wire the Retro* rerank connector into a search engine.", no_args_is_help=True)
teardown_app = typer.Typer(help="Remove what `retrosearch setup` made.", no_args_is_help=True)

ConnectorUrlOpt = Annotated[
    str,
    typer.Option(
        "--connector-url",
        envvar="RETROSEARCH_CONNECTOR_URL",
        help="Base URL of `retrosearch serve` as the ENGINE reaches it (its /v1/rerank is called).",
        rich_help_panel=CONNECTOR_PANEL,
    ),
]
ConnectorApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--connector-api-key",
        envvar="RETROSEARCH_CONNECTOR_API_KEY",
        help="The connector's API key (its --api-key), stored in the engine as the connector's credential.",
        show_default=False,
        rich_help_panel=CONNECTOR_PANEL,
    ),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the requests instead of sending them (secrets masked).")
]


@setup_app.command("opensearch")
def setup_opensearch(
    connector_url: ConnectorUrlOpt,
    connector_api_key: ConnectorApiKeyOpt = None,
    connector_deadline: Annotated[
        float,
        typer.Option(
            help="The connector's --deadline in seconds; OpenSearch's timeouts are set a few seconds above it.",
            rich_help_panel=CONNECTOR_PANEL,
        ),
    ] = ConnectorSettings.model_fields["deadline"].default,
    read_timeout: Annotated[
        int | None,
        typer.Option(
            help="ML Commons read_timeout in seconds \\[default: deadline + 5].",
            show_default=False,
            rich_help_panel=CONNECTOR_PANEL,
        ),
    ] = None,
    connection_timeout: Annotated[
        int | None,
        typer.Option(
            help="ML Commons connection_timeout in seconds \\[default: deadline + 5].",
            show_default=False,
            rich_help_panel=CONNECTOR_PANEL,
        ),
    ] = None,
    index: Annotated[
        str | None, typer.Option(help="Index for --default-pipeline.", rich_help_panel=WIRING_PANEL)
    ] = None,
    fields: Annotated[
        str,
        typer.Option(
            help="Comma-separated fields whose text is reranked (concatenated, as OpenSearch does).",
            rich_help_panel=WIRING_PANEL,
        ),
    ] = "title,text",
    pipeline: Annotated[
        str, typer.Option(help="Search pipeline name.", rich_help_panel=WIRING_PANEL)
    ] = "retrostar",
    default_pipeline: Annotated[
        bool,
        typer.Option(
            help="Make the pipeline --index's index.search.default_pipeline.", rich_help_panel=WIRING_PANEL
        ),
    ] = False,
    ignore_failure: Annotated[
        bool,
        typer.Option(
            help="When the rerank fails, answer the BM25 order instead of an error.",
            rich_help_panel=WIRING_PANEL,
        ),
    ] = False,
    name: Annotated[
        str | None,
        typer.Option(
            help="Base name of the connector (<name>-rerank-connector) and model (<name>-rerank) "
            "\\[default: the pipeline's name]. Give the same --name to several pipelines to share them.",
            show_default=False,
            rich_help_panel=WIRING_PANEL,
        ),
    ] = None,
    smoke_test: Annotated[bool, typer.Option(help="Finish with a _predict through the model.")] = True,
    dry_run: DryRunOpt = False,
    url: UrlOpt = None,
    username: UsernameOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaCertsOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Connector, model and search pipeline in OpenSearch (2.19, ML Commons + neural-search)."""
    console = Console(highlight=False)
    connection = engine_connection(Engine.OPENSEARCH, url, username, password, api_key, ca_certs, insecure)
    default_timeout = timeout_for_deadline(connector_deadline)
    try:
        wiring = RerankWiring(
            connector_url=connector_url,
            connector_api_key=SecretStr(connector_api_key) if connector_api_key else None,
            read_timeout_s=default_timeout if read_timeout is None else read_timeout,
            connection_timeout_s=default_timeout if connection_timeout is None else connection_timeout,
            fields=_split_fields(fields),
            pipeline=pipeline,
            name=name,
            index=index,
            default_pipeline=default_pipeline,
            ignore_failure=ignore_failure,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    target = scrub(connection.resolved_url, connection)
    if dry_run:
        try:  # reading the version changes nothing; an unreachable cluster gets the oldest version's plan
            features = _opensearch_setup(connection, console).features()
        except SetupError:
            features = OLDEST_FEATURES
        console.print(
            f"# dry run: the requests `setup opensearch` sends to {escape(target)} (OpenSearch "
            f"{features.version}) on a first run"
        )
        _print_plan(console, dry_run_plan(wiring, features))
        return

    console.print(f"wiring {escape(wiring.connector_url)} into OpenSearch at {escape(target)}")
    try:
        result = _opensearch_setup(connection, console).apply(wiring, smoke_test=smoke_test)
    except SetupError as error:
        _fail(console, "setup failed:", error, connection)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if default_pipeline:
        console.print(
            "[yellow]note:[/] every search of "
            f"{escape(str(index))} now goes through the pipeline: one without "
            '"ext": {"rerank": {"query_context": ...}}, with size 0 or with track_total_hits false fails in '
            "OpenSearch 2.19" + (" (answered un-reranked with --ignore-failure)" if ignore_failure else "")
        )
    example = pipeline_search_body("why do leaves change colour in autumn", wiring.fields, 10)
    console.print(
        f'[green]ready.[/] Search with: retrosearch search "your query" --index {escape(index or "<index>")}'
        f" --pipeline {escape(wiring.pipeline)}\n"
        f"or any client: POST /{escape(index or '<index>')}/_search?search_pipeline={escape(wiring.pipeline)}"
    )
    console.print_json(json.dumps(example))


@teardown_app.command("opensearch")
def teardown_opensearch(
    pipeline: Annotated[str, typer.Option(help="Search pipeline name.")] = "retrostar",
    name: Annotated[
        str | None,
        typer.Option(
            help="Base name given to `setup opensearch --name` \\[default: the pipeline's name].",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be removed and kept; change nothing.")
    ] = False,
    url: UrlOpt = None,
    username: UsernameOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaCertsOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Remove the pipeline (and any index default pointing at it), its model and connector, and the
    cluster settings setup added for them; what another pipeline still uses is kept and named."""
    console = Console(highlight=False)
    connection = engine_connection(Engine.OPENSEARCH, url, username, password, api_key, ca_certs, insecure)
    wiring = _opensearch_setup(connection, console)
    try:
        plan = wiring.plan_teardown(pipeline, name) if dry_run else wiring.teardown(pipeline, name)
    except SetupError as error:
        _fail(console, "teardown failed:", error, connection)
    _print_teardown(console, plan, dry_run)


@setup_app.command("elasticsearch")
def setup_elasticsearch(
    connector_url: ConnectorUrlOpt,
    connector_api_key: ConnectorApiKeyOpt = None,
    inference_id: Annotated[str, typer.Option(help="Inference endpoint id.")] = "retrostar",
    field: Annotated[str, typer.Option(help="Field the retriever sends to the endpoint.")] = "text",
    dry_run: DryRunOpt = False,
    url: UrlOpt = None,
    username: UsernameOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaCertsOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """A `custom` rerank inference endpoint for the text_similarity_reranker retriever (Enterprise or trial
    licence; on Basic, rerank client-side with `retrosearch search --engine elasticsearch`)."""
    console = Console(highlight=False)
    connection = engine_connection(Engine.ELASTICSEARCH, url, username, password, api_key, ca_certs, insecure)
    try:
        wiring = InferenceWiring(
            connector_url=connector_url,
            inference_id=inference_id,
            connector_api_key=SecretStr(connector_api_key) if connector_api_key else None,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    target = scrub(connection.resolved_url, connection)
    retriever = retriever_example(inference_id, "your query", field)
    if dry_run:
        _print_plan(
            console,
            [
                PlannedRequest(
                    "create the rerank inference endpoint (replaced if it exists)",
                    "PUT",
                    f"/_inference/rerank/{inference_id}",
                    inference_endpoint_body(wiring, mask_secrets=True),
                )
            ],
        )
        console.print("# then search with:")
        console.print_json(json.dumps(retriever))
        return
    try:
        create_inference_endpoint(connection.elasticsearch_client(), wiring, target)
    except LicenceError as error:
        _fail(console, "licence:", error, connection, EXIT_LICENCE)
    except ElasticsearchSetupError as error:
        _fail(console, "setup failed:", error, connection)
    console.print(
        f"[green]created[/] rerank inference endpoint {inference_id!r} -> {escape(wiring.connector_url)}"
    )
    console.print("Search with the text_similarity_reranker retriever (POST /<index>/_search):")
    console.print_json(json.dumps(retriever))


@teardown_app.command("elasticsearch")
def teardown_elasticsearch(
    inference_id: Annotated[str, typer.Option(help="Inference endpoint id.")] = "retrostar",
    url: UrlOpt = None,
    username: UsernameOpt = None,
    password: PasswordOpt = None,
    api_key: ApiKeyOpt = None,
    ca_certs: CaCertsOpt = None,
    insecure: InsecureOpt = False,
) -> None:
    """Delete the rerank inference endpoint."""
    console = Console(highlight=False)
    connection = engine_connection(Engine.ELASTICSEARCH, url, username, password, api_key, ca_certs, insecure)
    target = scrub(connection.resolved_url, connection)
    try:
        removed = delete_inference_endpoint(connection.elasticsearch_client(), inference_id, target)
    except ElasticsearchSetupError as error:
        _fail(console, "teardown failed:", error, connection)
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


def _fail(
    console: Console, label: str, error: Exception, connection: EngineConnection, code: int = EXIT_FAILED
) -> NoReturn:
    """Print the failure (the engine's own reason, with the connection's secrets scrubbed) and exit."""
    console.print(f"[red]{label}[/] {escape(scrub(str(error), connection))}")
    raise typer.Exit(code) from None


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


def _split_fields(fields: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in fields.split(",") if name.strip())


def _print_plan(console: Console, plan: list[PlannedRequest]) -> None:
    for request in plan:
        console.print(f"\n# {escape(request.purpose)}\n{request.method} {escape(request.path)}")
        if request.body is not None:
            console.print(escape(json.dumps(request.body, indent=2, ensure_ascii=False)), soft_wrap=True)
