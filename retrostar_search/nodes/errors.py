"""The one error a node operation raises."""

from __future__ import annotations

from retrostar_search.errors import RetrostarError


class NodeError(RetrostarError):
    """A node could not be provisioned, started, stopped or inspected.

    The message is one line meant for a person (the CLI prints it as is): what failed and, where it
    helps, what to do about it."""
