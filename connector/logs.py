"""The connector's log: one line per rerank at the default level, and no secret in any line.

The HTTP and engine clients log every request at INFO (httpx's "HTTP Request: POST ...", the engine
clients' "POST http://...:9200/_bulk [status:200 ...]"): one line per (query, document) pair would bury
the rerank lines (gigabytes a day at a few hundred pairs a second), so they show at debug only, and so do
the engine clients' warnings (a traceback per failed attempt). Every handler masks credentials written
into URLs and the configured secrets, whichever library logged the line; Python warnings go through the
same handlers.
"""

from __future__ import annotations

import logging

from pydantic import SecretStr

from connector.settings import ConnectorSettings, LogLevel
from retrostar_search.redaction import RedactingFilter

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Libraries that log a line per request at INFO; their warnings and errors still show.
PER_REQUEST_LOGGERS = ("httpx", "httpcore", "aiohttp", "urllib3")
# The engine clients (the rerank log's, the explorer's) also log every failed attempt as a warning with its
# traceback, about 45 lines, for each retry; the rerank-log writer and the explorer say what failed
# themselves (the writer once per change of the engine's health), so only their errors show.
ENGINE_CLIENT_LOGGERS = ("opensearch", "elasticsearch", "elastic_transport")


def configure_logging(settings: ConnectorSettings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    logging.captureWarnings(True)
    debug = settings.log_level is LogLevel.DEBUG
    for name in PER_REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.WARNING)
    for name in ENGINE_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.ERROR)
    # Every key and password the settings hold (the connector's, the backend's, the engines').
    secrets = [getattr(settings, name) for name in type(settings).model_fields]
    redacting = RedactingFilter(secret for secret in secrets if isinstance(secret, SecretStr))
    for handler in logging.getLogger().handlers:
        handler.addFilter(redacting)
