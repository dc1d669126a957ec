"""The connector's pages in a real browser: Debian's headless Chromium driven by Playwright, against a
connector on uvicorn over the scripted SGLang server and the OpenSearch test node: the explorer, and the
API docs with nothing outside the connector reachable.

`RETROSEARCH_SCREENSHOT=1` also saves the page to docs/img/explorer.png (the README's screenshot).
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch
from playwright.sync_api import Browser, Page, Route, expect

from connector.background import BackgroundServer
from retrostar_search.engines.search import search_first_stage
from retrostar_search.tasks import PRESETS
from tests.scripted_sglang import Failure, ScriptedSGLangServer
from tests.search_corpus import index_documents

pytestmark = pytest.mark.browser

# Read at import: the connector fixtures clear every RETROSEARCH_* variable before a test runs.
SAVE_SCREENSHOT = os.environ.get("RETROSEARCH_SCREENSHOT") == "1"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "explorer.png"
API_KEY = "explorer-test-key"
QUERY = "why do leaves change colour in autumn"
# id -> (title, text, scripted Retro* score). The documents that repeat the query's words lead the BM25
# list but answer nothing; Retro* puts the explanations first. Each `[[retrostar:N]]` marker sits at the end
# of a text longer than the page's three-line excerpt, so the screenshot shows prose, not markers.
CORPUS: dict[str, tuple[str, str, int]] = {
    "leaf-colour-faq": (
        "Autumn leaf colour: frequently asked questions",
        "Why do leaves change colour in autumn? Leaves change colour in autumn every year, and autumn "
        "colour in leaves is the question we are asked most in autumn. This page collects questions about "
        "autumn leaves and leaf colour from our readers and will be answered in a later issue. "
        "[[retrostar:22]]",
        22,
    ),
    "chlorophyll": (
        "Chlorophyll breakdown unmasks yellow pigments",
        "As days shorten, trees stop making chlorophyll and break down what is left to recover its "
        "nitrogen. The green fades and the yellow and orange carotenoids, present in the leaf all summer, "
        "show through. That is why birches and maples turn gold before their leaves fall. [[retrostar:96]]",
        96,
    ),
    "anthocyanins": (
        "Where the reds come from",
        "Red and purple leaves are not unmasked but made: in autumn many trees build anthocyanins from "
        "sugars trapped in the leaf once the veins start to close. Sunny days and cool nights favour them, "
        "which is why some autumns are redder than others. [[retrostar:89]]",
        89,
    ),
    "day-length": (
        "Day length sets the calendar of leaf fall",
        "Deciduous trees track the length of the night. When it passes a threshold they grow an abscission "
        "layer at the base of each leaf stalk, cut the flow of water and sugars, and begin to reclaim the "
        "leaf's nutrients before the leaves drop. [[retrostar:74]]",
        74,
    ),
    "festival": (
        "Autumn leaves festival this weekend",
        "Celebrate autumn with guided walks among the changing leaves, colour photography workshops and "
        "hot cider by the lake. Tickets for the autumn colour walk are on sale now; children under twelve "
        "go free and dogs on leads are welcome. [[retrostar:6]]",
        6,
    ),
    "paint": (
        "Choosing a warm paint colour for autumn",
        "Why do rust and ochre walls feel right in autumn? Our designers explain how to pick a paint colour "
        "that echoes autumn leaves without darkening a small room, and which finishes hold up best in "
        "hallways and kitchens, with a swatch card to take home. [[retrostar:3]]",
        3,
    ),
}
# A document whose title and text are markup: the page must show them as text and run none of it. Its
# words share nothing with QUERY, so the main search never returns it.
MARKUP_DOCUMENT = {
    "markup-8": (
        '<img src="x" onerror="window.injected = 1">Volcanic <b>glass</b>',
        "Obsidian forms when lava cools fast. <script>window.injected = 1</script> [[retrostar:40]]",
        40,
    )
}
# Events reach the page after the log's flush, the engine's refresh and the page's next poll.
EVENT_TIMEOUT_MS = 20_000


@pytest.fixture
def corpus_index(opensearch_client: OpenSearch) -> Iterator[str]:
    index = f"explorer-corpus-{uuid.uuid4().hex[:8]}"
    index_documents(opensearch_client, index, {**CORPUS, **MARKUP_DOCUMENT})
    yield index
    opensearch_client.indices.delete(index=index, ignore_unavailable=True)


def expected_order(first_stage: list[str]) -> list[str]:
    """Best scripted score first; ties keep the first-stage order, as the reranker does."""
    return sorted(first_stage, key=lambda doc_id: (-CORPUS[doc_id][2], first_stage.index(doc_id)))


def rank_marker(first_stage_rank: int, new_rank: int) -> str:
    change = first_stage_rank - new_rank
    return f"↑{change}" if change > 0 else f"↓{-change}" if change < 0 else "="


def save_screenshot(page: Page) -> None:
    """The whole page as a PNG of 128 colours: the page is flat UI, so the palette loses nothing visible
    and the file is about a third of the full-colour one."""
    from PIL import Image

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    full_colour = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    palette = full_colour.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette.save(SCREENSHOT, optimize=True)


def search(page: Page, query: str) -> None:
    page.fill("#query", query)
    page.click("#search")


def test_explorer_shows_both_lists_rank_changes_reasoning_and_the_logged_event(
    browser: Browser,
    # Before connector_server: the server stops (writing its queued events) before the log is removed.
    opensearch_log_index: str,
    corpus_index: str,
    connector_server: Callable[..., BackgroundServer],
    opensearch_url: str,
    opensearch_client: OpenSearch,
) -> None:
    rerank_log = {"log_url": opensearch_url, "log_index": opensearch_log_index, "log_queries": True}
    server = connector_server(api_key=API_KEY, explore=True, log_flush_interval=0.1, **rerank_log)
    first_stage = [hit.id for hit in search_first_stage(opensearch_client, corpus_index, QUERY, size=20)]
    reranked = expected_order(first_stage)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{server.url}/explore")

    # The API answers 401 until the page is given the key, which it keeps for the tab.
    expect(page.locator("#key-form")).to_be_visible()
    page.fill("#api-key", API_KEY)
    page.click("#key-form button")
    expect(page.locator(f'#index option[value="{corpus_index}"]')).to_have_count(1)
    page.select_option("#index", corpus_index)
    search(page, QUERY)

    expect(page.locator("#reranked li.hit")).to_have_count(len(reranked))
    doc_ids = "nodes => nodes.map(node => node.dataset.docId)"
    assert page.locator("#first-stage li.hit").evaluate_all(doc_ids) == first_stage
    assert page.locator("#reranked li.hit").evaluate_all(doc_ids) == reranked
    assert page.locator("#reranked .change").all_text_contents() == [
        rank_marker(first_stage.index(doc_id) + 1, new_rank)
        for new_rank, doc_id in enumerate(reranked, start=1)
    ]
    assert page.locator("#reranked .score").all_text_contents() == [
        f"{CORPUS[doc_id][2]:.1f}" for doc_id in reranked
    ]
    assert page.locator("#first-stage .moved").all_text_contents() == [
        f"→ #{reranked.index(doc_id) + 1}" for doc_id in first_stage
    ]

    best = page.locator("#reranked li.hit").first.locator("details.reasoning")
    expect(best.locator("pre")).to_be_hidden()
    best.locator("summary").click()
    expect(best.locator("pre")).to_be_visible()
    expect(best.locator("pre")).to_contain_text("Relevance Annotation")

    request_id = page.locator("#summary code").get_attribute("data-request-id")
    event = page.locator(f'#events tr[data-request-id="{request_id}"]')
    expect(event).to_be_visible(timeout=EVENT_TIMEOUT_MS)
    expect(event).to_contain_text(QUERY)
    expect(event).to_have_class("current")
    if SAVE_SCREENSHOT:
        save_screenshot(page)

    # Markup in a document is shown as text and never runs.
    search(page, "obsidian lava")
    markup = page.locator('#reranked li.hit[data-doc-id="markup-8"]')
    expect(markup.locator(".title")).to_have_text(MARKUP_DOCUMENT["markup-8"][0])
    expect(markup.locator(".text")).to_contain_text("<script>window.injected = 1</script>")
    assert page.locator("#results img, #results script, #results b").count() == 0
    assert page.evaluate("window.injected") is None


def test_a_rerank_that_scored_nothing_says_so_and_each_hit_says_why_under_the_task(
    browser: Browser,
    corpus_index: str,
    connector_server: Callable[..., BackgroundServer],
    opensearch_url: str,
    scripted_sglang: ScriptedSGLangServer,
) -> None:
    scripted_sglang.script(answers=lambda pair: Failure(503))
    server = connector_server(explore=True, explore_url=opensearch_url, task="biology")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{server.url}/explore")

    # The header names the task every score on the page is judged under.
    expect(page.locator("#task")).to_contain_text("task biology")
    expect(page.locator("#task")).to_contain_text(PRESETS["biology"].relevance_definition)
    expect(page.locator(f'#index option[value="{corpus_index}"]')).to_have_count(1)
    page.select_option("#index", corpus_index)
    search(page, QUERY)

    expect(page.locator("#reranked li.hit")).to_have_count(len(CORPUS))
    expect(page.locator("#summary .badge.bad")).to_have_text("nothing reranked")
    status = page.locator("#rerank-status")
    expect(status).to_be_visible()
    expect(status).to_contain_text(
        f"nothing was reranked: none of the {len(CORPUS)} documents got a Retro* score"
    )
    expect(status).to_contain_text("HTTP 503")
    # Every hit says why it has no score, instead of an empty "Reasoning · 0 samples".
    reasons = page.locator("#reranked .unscored-reason").all_text_contents()
    assert len(reasons) == len(CORPUS)
    assert all(reason.startswith("Not scored: the model backend failed") for reason in reasons)
    assert page.locator("#reranked details.reasoning").count() == 0


def test_the_api_docs_render_with_every_request_outside_the_connector_refused(
    browser: Browser, connector_server: Callable[..., BackgroundServer]
) -> None:
    server = connector_server()
    page = browser.new_page()
    outside: list[str] = []

    def only_the_connector(route: Route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_connector)
    page.goto(f"{server.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Retro* rerank connector")
    expect(page.locator(".opblock-summary-path", has_text="/v1/rerank")).to_have_count(1)
    assert outside == []

    page.goto(server.url)
    page.click("text=API docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Retro* rerank connector")
