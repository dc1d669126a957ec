"""The engine clients the explorer reads through: one per engine it can search, and one for the log.

Built at startup from the settings (building a client opens no connection) and closed at shutdown. The
engines the page offers are the explore engine and, when the rerank log is on and writes to the other
engine, the log's: every engine the connector has credentials for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.settings import ConnectorSettings
from retrostar_search.engines.connection import Engine


@dataclass(frozen=True)
class ExplorerEngines:
    search_clients: dict[Engine, Any]
    default_engine: Engine
    log_client: Any | None  # None: the rerank log is off
    log_index: str | None

    @classmethod
    def from_settings(cls, settings: ConnectorSettings) -> ExplorerEngines:
        connections = settings.explorer_connections()
        default_engine = next(iter(connections))
        log = settings.log_connection() if settings.log_enabled else None
        clients = {engine: connection.client() for engine, connection in connections.items()}
        log_client = None
        if log is not None:
            # The same cluster with the same credentials shares one client; the log's own otherwise (the
            # explore engine is the log's engine, on another URL or with other credentials).
            log_client = clients[log.engine] if connections[log.engine] == log else log.client()
        return cls(
            search_clients=clients,
            default_engine=default_engine,
            log_client=log_client,
            log_index=settings.log_index if log is not None else None,
        )

    @property
    def engines(self) -> list[Engine]:
        return list(self.search_clients)

    def close(self) -> None:
        clients = {id(client): client for client in [*self.search_clients.values(), self.log_client]}
        for client in clients.values():
            if client is not None:
                client.close()
