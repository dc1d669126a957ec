// The explorer page: plain browser JavaScript, no build step and nothing loaded from elsewhere.
// Every piece of data (document text, reasoning, queries) reaches the DOM through textContent, never as
// markup, and the page's Content-Security-Policy allows only this script.
"use strict";

const API = "explore/api/";
const KEY_STORAGE = "retrosearch.explorer.apiKey";
const EVENTS_LIMIT = 20;
const EVENTS_POLL_MS = 5000;
// The log writes in batches and the engine makes new records searchable about a second later.
const EVENTS_AFTER_SEARCH_MS = 1500;

const state = { lastRequestId: null, ready: false };

const byId = (id) => document.getElementById(id);

class AuthRequired extends Error {}

/** An element with a class, text and children; strings become text nodes, never markup. */
function el(tag, { cls, text, title, data } = {}, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (title) node.title = title;
  for (const [name, value] of Object.entries(data || {})) node.dataset[name] = String(value);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function api(path, params = {}) {
  const url = new URL(API + path, document.baseURI);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  const key = sessionStorage.getItem(KEY_STORAGE);
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const response = await fetch(url, { headers });
  if (response.status === 401) {
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyForm(key ? "That key was refused; enter the connector's API key" : null);
    throw new AuthRequired("the API key is missing or wrong");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

function setStatus(message, kind = "") {
  const status = byId("status");
  status.textContent = message;
  status.className = `status ${kind}`;
}

function reportError(error) {
  if (!(error instanceof AuthRequired)) setStatus(error.message, "error");
}

function showKeyForm(message) {
  const form = byId("key-form");
  if (message) form.querySelector("span").textContent = message;
  form.hidden = false;
  byId("api-key").focus();
}

// --- Start: configuration, engines, indices ----------------------------------------------------------

async function loadConfig() {
  const config = await api("config");
  byId("model").textContent = `${config.backend === "cpu" ? "CPU fallback, not Retro*" : "model"} ${config.model}`;
  // The task is what Retro* judges relevance under: every score on the page means "relevant" in its sense.
  byId("task").replaceChildren(
    el("span", { cls: "task-name", text: `task ${config.task.name}` }),
    el("span", { cls: "task-definition", text: config.task.relevance_definition }),
  );
  const engines = byId("engine");
  engines.replaceChildren(...config.engines.map((name) => el("option", { text: name })));
  engines.value = config.default_engine;
  engines.disabled = config.engines.length < 2;
  const candidates = byId("candidates");
  candidates.max = config.candidates.max;
  candidates.value = Math.min(config.candidates.default, config.candidates.max);
}

async function loadIndices() {
  const select = byId("index");
  const previous = select.value;
  const { indices } = await api("indices", { engine: byId("engine").value });
  select.replaceChildren(
    ...indices.map((index) => {
      const option = el("option", { text: `${index.name} (${index.documents} docs)` });
      option.value = index.name;
      return option;
    }),
  );
  if (indices.some((index) => index.name === previous)) select.value = previous;
  if (!indices.length) setStatus("No searchable index on this engine.", "error");
}

async function start() {
  try {
    await loadConfig();
    await loadIndices();
    state.ready = true;
    setStatus("");
    await loadEvents();
  } catch (error) {
    reportError(error);
  }
}

// --- Search and the two lists --------------------------------------------------------------------------

async function search(event) {
  event.preventDefault();
  if (!state.ready) return;
  const button = byId("search");
  button.disabled = true;
  setStatus("Searching and reranking…");
  try {
    const answer = await api("search", {
      q: byId("query").value,
      index: byId("index").value,
      engine: byId("engine").value,
      candidates: byId("candidates").value,
    });
    state.lastRequestId = answer.request_id;
    renderResults(answer);
    setStatus("");
    setTimeout(loadEvents, EVENTS_AFTER_SEARCH_MS);
  } catch (error) {
    reportError(error);
  } finally {
    button.disabled = false;
  }
}

function renderResults(answer) {
  byId("results").hidden = false;
  const summary = byId("summary");
  if (!answer.first_stage.length) {
    summary.replaceChildren(`No hits for this query in ${answer.index}.`);
    byId("first-stage").replaceChildren();
    byId("reranked").replaceChildren();
    return;
  }
  const parts = [
    `${answer.first_stage.length} candidates from ${answer.index} (${answer.engine})`,
    `first stage ${answer.timings_ms.first_stage} ms`,
    `rerank ${answer.timings_ms.rerank} ms`,
    `${answer.cache_hits} cached`,
  ];
  summary.replaceChildren(
    `${parts.join(" · ")} · request `,
    el("code", { text: answer.request_id.slice(0, 12), title: answer.request_id, data: { requestId: answer.request_id } }),
  );
  const rerank = answer.rerank;
  if (answer.degraded) {
    // "none": not one document has a Retro* score, so the right-hand list is the first-stage order.
    const badge = rerank.status === "none" ? "nothing reranked" : `${rerank.unscored} of ${rerank.documents} unscored`;
    summary.append(el("span", { cls: "badge bad", text: badge }));
    byId("rerank-status").replaceChildren(el("strong", { text: rerank.message }));
  }
  byId("rerank-status").hidden = !answer.degraded;
  byId("first-stage").replaceChildren(...answer.first_stage.map(firstStageItem));
  byId("reranked").replaceChildren(...answer.reranked.map(rerankedItem));
}

function hitItem(hit, rank, side) {
  const item = el("li", { cls: "hit", data: { docId: hit.id, key: hit.first_stage_rank } });
  item.addEventListener("mouseenter", () => linkPartner(hit.first_stage_rank, true));
  item.addEventListener("mouseleave", () => linkPartner(hit.first_stage_rank, false));
  item.append(
    el(
      "div",
      { cls: "hit-head" },
      el("span", { cls: `rank ${side}`, text: rank }),
      el("span", { cls: "title", text: hit.title || hit.id }),
    ),
  );
  return item;
}

function firstStageItem(hit) {
  const item = hitItem(hit, hit.first_stage_rank, "first");
  item.querySelector(".hit-head").append(
    el("span", { cls: "moved", text: `→ #${hit.rank}`, title: "rank after the rerank" }),
    el("span", { cls: "score bm25", text: formatNumber(hit.first_stage_score, 2), title: "BM25 score" }),
  );
  item.append(meta(hit.id), el("p", { cls: "text", text: hit.text }));
  return item;
}

function rerankedItem(hit) {
  const item = hitItem(hit, hit.rank, "new");
  const score = hit.retrostar_score;
  item.querySelector(".hit-head").append(
    changeMarker(hit.rank_change, hit.first_stage_rank),
    el("span", {
      cls: `score retrostar ${score === null ? "unscored" : ""}`,
      text: score === null ? "unscored" : formatNumber(score, 1),
      title: "Retro* score (mean of the samples)",
    }),
  );
  const bar = el("div", { cls: "bar" }, el("span"));
  bar.firstChild.style.width = `${Math.max(0, Math.min(100, score || 0))}%`;
  item.append(bar, meta(hit.id, hit.cached ? "cached" : null), el("p", { cls: "text", text: hit.text }));
  item.append(reasoning(hit));
  return item;
}

function changeMarker(change, firstStageRank) {
  const title = `was #${firstStageRank} in the first stage`;
  if (change > 0) return el("span", { cls: "change up", text: `↑${change}`, title });
  if (change < 0) return el("span", { cls: "change down", text: `↓${-change}`, title });
  return el("span", { cls: "change same", text: "=", title });
}

function meta(id, ...flags) {
  return el("div", { cls: "meta" }, el("span", { text: `id ${id}` }), ...flags.filter(Boolean).map((flag) => el("span", { cls: "flag", text: flag })));
}

/** A sample's score and, when its generation did not end by itself, how it ended ("length", "abort"). */
function sampleLabel(sample) {
  const parts = [sample.score === null ? "no score" : `score ${sample.score}`];
  if (sample.finish_reason && sample.finish_reason !== "stop") parts.push(sample.finish_reason);
  return parts.concat(sample.notes || []).join(", ");
}

function reasoning(hit) {
  const explanation = hit.explanation;
  if (explanation.score === null) {
    return el("p", { cls: "unscored-reason", text: `Not scored: ${explanation.unscored_reason || "no score came back"}` });
  }
  const samples = explanation.samples;
  const label = `Reasoning · ${samples.length} sample${samples.length === 1 ? "" : "s"}: ${samples.map(sampleLabel).join(" · ")}`;
  return el(
    "details",
    { cls: "reasoning" },
    el("summary", { text: label }),
    ...samples.map((sample, i) =>
      el(
        "div",
        { cls: "sample" },
        samples.length > 1 ? el("p", { cls: "sample-head", text: `Sample ${i + 1} · ${sampleLabel(sample)}` }) : null,
        el("pre", { text: sample.reasoning || "(no reasoning text)" }),
      ),
    ),
  );
}

/** Highlights the same document in the other list while the pointer is over one. */
function linkPartner(key, on) {
  for (const node of document.querySelectorAll(`.hit[data-key="${CSS.escape(String(key))}"]`)) {
    node.classList.toggle("linked", on);
  }
}

function formatNumber(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

// --- Recent events from the rerank log ----------------------------------------------------------------

async function loadEvents() {
  if (!state.ready) return;
  const note = byId("events-note");
  try {
    const answer = await api("events", { limit: EVENTS_LIMIT });
    note.textContent = answer.enabled
      ? answer.events.length
        ? `Newest first, from ${answer.index}-*.`
        : `No events in ${answer.index}-* yet.`
      : answer.note;
    byId("events").tBodies[0].replaceChildren(...answer.events.map(eventRow));
    byId("events").hidden = !answer.events.length;
  } catch (error) {
    if (!(error instanceof AuthRequired)) note.textContent = `Could not read the rerank log: ${error.message}`;
  }
}

function eventRow(event) {
  const query = event.query
    ? el("td", { cls: "query", text: event.query })
    : el("td", { cls: "query muted", text: `not logged · ${event.query_hash}`, title: "--log-queries is off: only a hash is kept" });
  const row = el(
    "tr",
    { data: { requestId: event.request_id } },
    el("td", { text: new Date(event["@timestamp"]).toLocaleTimeString(), title: event["@timestamp"] }),
    query,
    el("td", { cls: "num", text: event.document_count }),
    el("td", { cls: "num", text: formatNumber(event.total_ms, 0) }),
    el("td", { cls: "num", text: formatNumber(event.model_ms, 0) }),
    el("td", { cls: "num", text: event.cache_hits }),
    el("td", { cls: "num", text: event.rank_shift_max }),
    el("td", {}, el("span", { cls: `badge ${event.degraded ? "bad" : "good"}`, text: event.degraded ? "degraded" : "ok" })),
    el("td", {}, el("code", { text: event.request_id.slice(0, 12), title: event.request_id })),
  );
  if (event.request_id === state.lastRequestId) row.classList.add("current");
  return row;
}

// --- Wiring ---------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  byId("search-form").addEventListener("submit", search);
  byId("engine").addEventListener("change", () => loadIndices().catch(reportError));
  byId("refresh-events").addEventListener("click", loadEvents);
  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, byId("api-key").value);
    byId("api-key").value = "";
    byId("key-form").hidden = true;
    start();
  });
  setInterval(() => {
    if (document.visibilityState === "visible") loadEvents();
  }, EVENTS_POLL_MS);
  start();
});
