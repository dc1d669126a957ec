"""The few engine calls indexing needs, the same for OpenSearch and Elasticsearch.

The two official clients agree on the bulk helpers but differ in small ways (``body=`` against
``settings=``/``mappings=``, plain dicts against response objects, exception classes); this is the one
place that knows, so the indexing code has a single path parametrised by the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from retrostar_search.engines.connection import Engine, EngineConnection

# Statuses worth another try after a pause: overload (429) and gateways or nodes briefly unavailable.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class EngineOps:
    """A client and which engine it talks to; every engine call indexing makes goes through here."""

    def __init__(self, client: Any, engine: Engine) -> None:
        self.client = client
        self.engine = engine
        if engine is Engine.OPENSEARCH:
            import opensearchpy
            from opensearchpy import helpers as opensearch_helpers

            self._helpers: Any = opensearch_helpers
            self._serializer: Any = client.transport.serializer
            self._serialization_error: type[Exception] = opensearchpy.SerializationError
            self._http_error: type[Exception] = opensearchpy.TransportError
            self._connection_errors: tuple[type[Exception], ...] = (opensearchpy.ConnectionError,)
            self._tls_errors: tuple[type[Exception], ...] = (opensearchpy.SSLError,)
        else:
            import elasticsearch
            from elasticsearch import helpers as elasticsearch_helpers

            self._helpers = elasticsearch_helpers
            self._serializer = client.transport.serializers.get_serializer("application/json")
            self._serialization_error = elasticsearch.SerializationError
            self._http_error = elasticsearch.ApiError
            self._connection_errors = (elasticsearch.ConnectionError, elasticsearch.ConnectionTimeout)
            self._tls_errors = (elasticsearch.SSLError,)

    @classmethod
    def connect(cls, connection: EngineConnection) -> EngineOps:
        return cls(connection.client(), connection.engine)

    def is_transient(self, error: BaseException) -> bool:
        """True for failures that may pass on their own: overload, timeouts, a node restarting."""
        if isinstance(error, self._tls_errors):
            return False  # a certificate problem will not fix itself between retries
        if isinstance(error, self._connection_errors):
            return True
        return isinstance(error, self._http_error) and getattr(error, "status_code", None) in RETRY_STATUSES

    def is_serialization_error(self, error: BaseException) -> bool:
        """True when the client could not turn an action into JSON (what the JSON module raises, too)."""
        return isinstance(error, self._serialization_error | TypeError | ValueError | RecursionError)

    def unserialisable(self, action: dict[str, Any]) -> str | None:
        """Why the client cannot serialise ``action`` as it would in a bulk request, or None."""
        try:
            self._serializer.dumps(action)
        except (self._serialization_error, TypeError, ValueError, RecursionError) as error:
            # Both clients wrap the JSON module's error; its message names the value, theirs the whole dict.
            causes = [
                cause
                for cause in (*error.args, *getattr(error, "errors", ()))
                if isinstance(cause, Exception)
            ]
            return str(causes[0] if causes else error)
        return None

    def streaming_bulk(self, actions: Iterable[dict[str, Any]], **kwargs: Any) -> Iterator[tuple[bool, Any]]:
        return self._helpers.streaming_bulk(self.client, actions, **kwargs)

    def exists(self, index: str) -> bool:
        return bool(self.client.indices.exists(index=index))

    def create(self, index: str, body: dict[str, Any]) -> None:
        if self.engine is Engine.OPENSEARCH:
            self.client.indices.create(index=index, body=body)
        else:
            self.client.indices.create(index=index, settings=body["settings"], mappings=body["mappings"])

    def delete(self, index: str) -> None:
        self.client.indices.delete(index=index)

    def mapping(self, index: str) -> dict[str, Any]:
        """The mapping of ``index`` (an alias resolves to the one index behind it)."""
        response = _as_dict(self.client.indices.get_mapping(index=index))
        mappings = [entry.get("mappings", {}) for entry in response.values()]
        if len(mappings) != 1:
            raise ValueError(f"{index} resolves to {len(mappings)} indices; name one index")
        return mappings[0]

    def has_analyzer(self, name: str) -> bool:
        """Whether the cluster knows a built-in analyzer (a minimal node may lack `english`). Only the
        engine's refusal means no: an engine that cannot be reached raises."""
        try:
            if self.engine is Engine.OPENSEARCH:
                self.client.indices.analyze(body={"analyzer": name, "text": "probe"})
            else:
                self.client.indices.analyze(analyzer=name, text="probe")
        except self._http_error as error:
            if isinstance(error, self._connection_errors):  # opensearch-py's are TransportErrors too
                raise
            return False
        return True

    def refresh(self, index: str) -> None:
        self.client.indices.refresh(index=index)

    def count(self, index: str) -> int:
        return int(_as_dict(self.client.count(index=index))["count"])


def _as_dict(response: Any) -> dict[str, Any]:
    # Elasticsearch answers with an ObjectApiResponse; its `.body` is the plain dict OpenSearch returns.
    return response.body if hasattr(response, "body") else response
