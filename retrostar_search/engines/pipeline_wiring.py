"""What an OpenSearch search pipeline reranks with, read back from the cluster: pipeline → its rerank
processor's model → the model's connector → the URL that connector calls.

`retrosearch search` asks that URL (not the one on its own command line) who scores and how a rerank went,
and `retrosearch doctor` walks the same chain link by link.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from retrostar_search.engines.connector_endpoint import RERANK_PATH
from retrostar_search.engines.opensearch_ml import MLCommons, MLCommonsError
from retrostar_search.errors import EngineError

DEPLOYED = "DEPLOYED"


class PipelineWiringError(EngineError):
    """A link of the chain is missing or not what `setup opensearch` makes; the message names it."""

    def __init__(self, message: str, link: str) -> None:
        super().__init__(message)
        self.link = link  # "pipeline", "model" or "connector"


@dataclass(frozen=True)
class RerankProcessor:
    """The `rerank` response processor of a search pipeline."""

    model_id: str
    document_fields: tuple[str, ...]
    ignore_failure: bool


@dataclass(frozen=True)
class PipelineWiring:
    """A search pipeline's rerank wiring: its processor, the model's state and connector, and the URL the
    connector's predict action calls (`rerank_url`) with its base (`connector_url`)."""

    pipeline: str
    processor: RerankProcessor
    model_state: str | None
    connector_id: str | None  # None: the model holds its connector inline
    rerank_url: str

    @property
    def connector_url(self) -> str:
        """The connector's base URL (its rerank path taken off), as the engine reaches it."""
        return self.rerank_url.rstrip("/").removesuffix(RERANK_PATH)

    @property
    def deployed(self) -> bool:
        return self.model_state == DEPLOYED


def rerank_processor(pipeline: str, body: Mapping[str, Any] | None) -> RerankProcessor:
    """The pipeline's ML Commons `rerank` processor; PipelineWiringError when the pipeline is missing or
    has none."""
    if body is None:
        raise PipelineWiringError(f"no search pipeline {pipeline!r}", "pipeline")
    for processor in body.get("response_processors") or []:
        rerank = processor.get("rerank") if isinstance(processor, Mapping) else None
        if not isinstance(rerank, Mapping):
            continue
        model_id = rerank.get("ml_opensearch", {}).get("model_id")
        if model_id:
            fields = (rerank.get("context") or {}).get("document_fields") or []
            return RerankProcessor(str(model_id), tuple(fields), bool(rerank.get("ignore_failure", False)))
    raise PipelineWiringError(f"search pipeline {pipeline!r} has no ML Commons rerank processor", "pipeline")


def read_pipeline_wiring(ml: MLCommons, pipeline: str) -> PipelineWiring:
    """Walk the chain on the cluster; an ML Commons error keeps its own message (and status), a broken
    link raises PipelineWiringError naming it."""
    processor = rerank_processor(pipeline, ml.get_pipeline(pipeline))
    model = _existing(ml.get_model, processor.model_id, f"the pipeline's model {processor.model_id}", "model")
    connector_id = model.get("connector_id")
    if connector_id:
        connector = _existing(
            ml.get_connector, str(connector_id), f"the model's connector {connector_id}", "connector"
        )
    else:
        connector = model.get("connector") or {}
    return PipelineWiring(
        pipeline=pipeline,
        processor=processor,
        model_state=model.get("model_state"),
        connector_id=str(connector_id) if connector_id else None,
        rerank_url=_predict_url(connector, processor.model_id),
    )


def _existing(read: Callable[[str], dict[str, Any]], object_id: str, what: str, link: str) -> dict[str, Any]:
    """`read(object_id)`; a 404 is the broken `link` of the chain, named as `what`."""
    try:
        return read(object_id)
    except MLCommonsError as error:
        if error.status == 404:
            raise PipelineWiringError(f"{what} does not exist", link) from None
        raise


def _predict_url(connector: Mapping[str, Any], model_id: str) -> str:
    actions = [action for action in connector.get("actions") or [] if isinstance(action, Mapping)]
    predict = [action for action in actions if action.get("action_type", "").lower() == "predict"]
    for action in predict or actions:
        if action.get("url"):
            return str(action["url"])
    raise PipelineWiringError(f"the connector of model {model_id} has no predict URL", "connector")
