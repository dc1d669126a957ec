"""The rerank log's layout and settings, shared by the connector that writes it and the dashboards that
show it. The writer itself is the connector's (`connector.rerank_log`); docs/observability.md describes
the log."""
