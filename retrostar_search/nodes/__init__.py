"""Local single-node OpenSearch and Elasticsearch, provisioned from Maven Central with `mvn`.

Public API for the CLI, the test fixtures and other code: `ensure_node`, `stop_node`, `node_status`.
"""

from retrostar_search.nodes.errors import NodeError
from retrostar_search.nodes.manager import (
    DEFAULT_HEAP,
    DEFAULT_START_TIMEOUT_S,
    NodeInfo,
    NodeStatus,
    ensure_node,
    node_log,
    node_status,
    stop_node,
)
from retrostar_search.nodes.specs import VERSIONS

__all__ = [
    "DEFAULT_HEAP",
    "DEFAULT_START_TIMEOUT_S",
    "VERSIONS",
    "NodeError",
    "NodeInfo",
    "NodeStatus",
    "ensure_node",
    "node_log",
    "node_status",
    "stop_node",
]
