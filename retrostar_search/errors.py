"""One exception hierarchy for the whole project, and the exit codes the command line gives each kind.

httpx's habit: one root that a caller can catch, and subclasses that say what kind of thing went wrong,
so each adapter maps kinds (not individual classes) to its own answer: the connector to an HTTP status
(``connector/errors.py``), ``retrosearch`` to an exit code (``exit_code_for`` below). Messages are meant
for the person who reads them and never carry secrets, prompts or documents::

    RetrostarError
    ├── InvalidInput (a ValueError)   a request field, an option, a file, a record: 422 / exit 2
    │   └── InputTooLarge             over a configured limit: 413
    ├── Unavailable                   what is asked for does not exist here: exit 4
    │   └── MissingExtra              an optional dependency is not installed
    ├── BackendError                  the model backend failed: 502
    ├── DeadlineExceeded              the deadline passed before every document was scored: 504
    ├── Overloaded                    too many rerank requests in flight: 429
    ├── ClientTooSlow                 the client did not send its request in time: 408
    ├── ClientDisconnected            the client went away before its answer: 499, never sent
    ├── EngineError                   an OpenSearch or Elasticsearch operation failed: 502
    └── SearchError                   the rerank connector could not rerank (its client's error)

Domain classes live with their code and subclass these: ``UnknownTaskError`` (InvalidInput), the
readers' format errors (InvalidInput), ``MLCommonsError`` and the setup errors (EngineError),
``LicenceError`` (EngineError and Unavailable), ``NodeError``, ``DashboardsImportError``, the indexing
errors. The engine clients' own exceptions are described in one place, ``engines/errors.py``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class RetrostarError(Exception):
    """The root: everything this project raises on purpose."""


class InvalidInput(RetrostarError, ValueError):
    """Input that cannot be used as given. `problems` lists each invalid field (location and message)
    when there are several."""

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems


class InputTooLarge(InvalidInput):
    """Input over a configured limit; the message names the limit and its value."""


class Unavailable(RetrostarError):
    """What the command needs is not available here: a licence, an engine API, an optional extra."""


class MissingExtra(Unavailable):
    """An optional dependency is not installed; the message says which extra to install."""


class BackendError(RetrostarError):
    """The backend could not produce samples for a prompt (unreachable, error status, malformed reply).

    Messages name the backend and the status, never the prompt text or credentials. `transient` is False
    for an answer that asking again would only repeat (a 4xx: the prompt or the model name is refused),
    which the reranker then does not retry."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class DeadlineExceeded(RetrostarError, TimeoutError):
    """The deadline passed before every document was scored (and the caller asked to be strict)."""


class Overloaded(RetrostarError):
    """Too much work in flight to take more now; try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClientTooSlow(RetrostarError, TimeoutError):
    """The client did not send its whole request within the time allowed; the message names the limit."""


class ClientDisconnected(RetrostarError):
    """The client closed its connection before the answer (while sending its body, or while the rerank
    ran); the work done for it is cancelled. Nobody is left to answer: it is counted and logged."""


class EngineError(RetrostarError):
    """An operation on OpenSearch or Elasticsearch failed; the message carries the engine's reason."""


class SearchError(RetrostarError):
    """A rerank through the connector that failed; the message is safe to print (no secrets, no document
    text), and `hint` says what to try when that is known."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ExitCode(IntEnum):
    """What every `retrosearch` command returns (README.md, "Exit codes")."""

    OK = 0
    # Nothing, or not all, could be done: an engine, a backend or the connector failed or refused.
    FAILED = 1
    # A bad option, file or input, found before anything was changed (typer's own code for usage errors).
    USAGE = 2
    # The command finished, but not everything is as asked: records rejected, reranks degraded, saved
    # objects refused; for `node status`, the node is not running (the LSB status convention).
    INCOMPLETE = 3
    # What the command needs is not available here: a licence, an engine API, an optional extra.
    UNAVAILABLE = 4


def exit_code_for(error: BaseException) -> ExitCode:
    if isinstance(error, Unavailable):
        return ExitCode.UNAVAILABLE
    if isinstance(error, InvalidInput):
        return ExitCode.USAGE
    return ExitCode.FAILED
