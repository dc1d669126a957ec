"""One evaluation from start to end, for `retrosearch eval` and any other caller: what was asked, checked
and turned into a plan before an engine is contacted (`plan_evaluation`), then run (`evaluate`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

from index_tools.readers import BeirCorpus, BrightExport
from retrostar_search.errors import InvalidInput
from retrostar_search.evaluation.collection import (
    CollectionFormat,
    EvalCollection,
    load_collection,
    open_reader,
)
from retrostar_search.evaluation.legs import LegOpener, open_connector_leg, open_in_process_leg
from retrostar_search.evaluation.metrics import Metric, deepest_cutoff, parse_metrics
from retrostar_search.evaluation.runner import QueryRun, RunPlan, run_queries
from retrostar_search.evaluation.summary import EvalSummary, summarise
from retrostar_search.scoring import Cascade
from retrostar_search.settings import BackendKind, RerankerSettings
from retrostar_search.tasks import PRESETS, TaskDefinition, resolve_task

DEFAULT_CANDIDATES = 100
# First-stage depth when a metric has no cutoff (map, ndcg): BEIR's retrieval depth.
FULL_DEPTH = 1000


def default_cache_path() -> Path:
    """Where in-process scores persist between runs: the user's cache folder, shared by all evaluations
    (keys cover model, prompt, task, query, document and samples, so sharing is safe)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "retrostar-search" / "eval-scores.sqlite"


@dataclass(frozen=True)
class RerankOptions:
    """How to rerank, as asked (None: not asked). Through a running connector, or in this process with
    the reranker `retrosearch serve` would build from its settings with these overrides."""

    candidates: int | None = None
    cascade: str | None = None
    connector_url: str | None = None
    connector_api_key: str | None = None
    backend: BackendKind | None = None
    backend_url: str | None = None
    model: str | None = None
    config: Path | None = None
    cache: Path | None = None

    @property
    def given(self) -> bool:
        return any(
            getattr(self, field.name) is not None
            for field in fields(self)
            if field.name != "connector_api_key"
        )

    @property
    def in_process(self) -> bool:
        return self.connector_url is None

    def settings_overrides(self) -> dict[str, Any]:
        """The serve settings these options set for the in-process reranker; environment variables, the
        config file and the defaults fill in the rest."""
        overrides = {
            "backend": self.backend,
            "backend_url": self.backend_url,
            "model": self.model,
            "config": self.config,
            "cache_path": self.cache or default_cache_path(),
        }
        return {name: value for name, value in overrides.items() if value is not None}


@dataclass(frozen=True)
class EvalPlan:
    path: Path
    collection_format: CollectionFormat
    reader: BeirCorpus | BrightExport
    collection: EvalCollection
    metrics: list[Metric]
    run: RunPlan
    # The Retro* task, the cascade asked for (None: the reranker's own), and how to rerank (None: not).
    task: TaskDefinition
    cascade: Cascade | None
    rerank: RerankOptions | None

    def leg_opener(self, settings: RerankerSettings | None) -> LegOpener | None:
        """What opens the rerank leg inside the run's event loop; `settings` for an in-process rerank."""
        if self.rerank is None:
            return None
        if self.rerank.connector_url is not None:
            return partial(
                open_connector_leg, self.rerank.connector_url, self.rerank.connector_api_key, self.task
            )
        if settings is None:
            raise ValueError("an in-process rerank needs the reranker's settings")
        return partial(open_in_process_leg, settings, self.task, self.cascade or settings.cascade_plan())

    def summary_settings(self) -> dict[str, Any]:
        """The settings the summary records beside the figures."""
        return {
            "path": str(self.path),
            "format": self.collection_format.value,
            "candidates": self.run.candidates if self.rerank is not None else None,
            "depth": self.run.depth,
            "concurrency": self.run.concurrency,
            "queries_skipped_unjudged": self.collection.skipped_unjudged,
        }


def plan_evaluation(
    path: Path,
    collection_format: CollectionFormat,
    *,
    index: str,
    task: str | None,
    split: str,
    queries_limit: int | None,
    metrics: str,
    concurrency: int,
    rerank: bool,
    options: RerankOptions,
) -> EvalPlan:
    """Read the collection and check what was asked; raises a ValueError (InvalidInput, or a bad metric or
    cascade spec) or FileNotFoundError for anything that cannot run, before any engine or backend is
    contacted."""
    metric_list = parse_metrics(metrics)
    cascade = Cascade.parse(options.cascade) if options.cascade else None
    reader = open_reader(path, collection_format, task)
    collection = load_collection(reader, split).limited(queries_limit)
    rerank_task = _rerank_task(task or getattr(reader, "task", None), collection_format)
    if not collection.queries:
        raise InvalidInput(f"{path}: no query has a relevant judgement; nothing to evaluate")
    if not rerank and options.given:
        # Without this, a forgotten --rerank would print first-stage figures the user takes for reranked.
        raise InvalidInput("the Rerank options apply only with --rerank")
    in_process_only = (
        cascade,
        options.backend,
        options.backend_url,
        options.model,
        options.config,
        options.cache,
    )
    if not options.in_process and any(option is not None for option in in_process_only):
        raise InvalidInput(
            "--connector-url reranks with the connector's own backend, cascade and cache; "
            "--cascade, --backend, --backend-url, --model, --config and --cache are for in-process reranking"
        )
    candidates = options.candidates or _first_stage_count(cascade) or DEFAULT_CANDIDATES
    run = RunPlan(
        index=index,
        depth=max(candidates if rerank else 0, deepest_cutoff(metric_list) or FULL_DEPTH),
        candidates=candidates,
        concurrency=concurrency,
    )
    return EvalPlan(
        path=path,
        collection_format=collection_format,
        reader=reader,
        collection=collection,
        metrics=metric_list,
        run=run,
        task=rerank_task,
        cascade=cascade,
        rerank=options if rerank else None,
    )


async def evaluate(
    client: Any,
    plan: EvalPlan,
    open_leg: LegOpener | None,
    *,
    engine: str,
    on_query_done: Callable[[], None] = lambda: None,
) -> tuple[EvalSummary, list[QueryRun]]:
    """Run every query of the plan through the engine's first stage and the rerank leg, then score them."""
    started = time.perf_counter()
    # The leg is opened inside the event loop: async HTTP clients bind to the loop that uses them.
    async with open_leg() if open_leg is not None else nullcontext() as leg:
        runs = await run_queries(
            client, plan.collection.queries, plan.run, leg, on_query_done, plan.collection.excluded
        )
        rerank = leg.describe() if leg is not None else None
    summary = summarise(
        plan.collection,
        runs,
        plan.metrics,
        index=plan.run.index,
        engine=engine,
        settings={**plan.summary_settings(), "rerank": rerank},
        seconds=time.perf_counter() - started,
    )
    return summary, runs


def _first_stage_count(cascade: Cascade | None) -> int | None:
    return None if cascade is None else cascade.stages[0].candidates


def _rerank_task(name: str | None, collection_format: CollectionFormat) -> TaskDefinition:
    """The Retro* task: the preset named by --task (BRIGHT's task names are presets), else the generic one."""
    if name is None or (collection_format is CollectionFormat.BRIGHT and name not in PRESETS):
        # A BRIGHT export may hold a task Retro* has no preset for; it is still evaluable.
        return resolve_task(None)
    return resolve_task(name)
