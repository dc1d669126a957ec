"""Error answers: always JSON `{"message": ...}` (Cohere's error shape), never a traceback, and never an echo
of the request's text (validation errors name the field, not its value).

The service layer raises the core's domain errors (`retrostar_search.errors`); the table below is the one
place that turns each kind into an HTTP status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from retrostar_search.errors import (
    BackendError,
    ClientDisconnected,
    ClientTooSlow,
    DeadlineExceeded,
    EngineError,
    InputTooLarge,
    InvalidInput,
    Overloaded,
    RetrostarError,
)
from retrostar_search.redaction import redact

logger = logging.getLogger(__name__)

# Each kind of domain error and its status; a subclass answers its nearest listed ancestor's.
HTTP_STATUS: dict[type[RetrostarError], int] = {
    InvalidInput: 422,
    InputTooLarge: 413,  # Content Too Large
    Overloaded: 429,
    ClientTooSlow: 408,  # Request Timeout: the body did not arrive in time
    # nginx's "client closed request": nobody receives it, but it counts as the client's doing (4xx).
    ClientDisconnected: 499,
    BackendError: 502,  # strict: the backend failed for some documents
    EngineError: 502,  # the explorer: the engine failed
    DeadlineExceeded: 504,  # strict: the deadline passed before every document was scored
}

# OpenSearch's ML Commons retries a remote call only when the reply carries this header (with its
# connector's max_retry_times); Cohere's SDK and other clients go by Retry-After.
THROTTLED_ERROR_TYPE = {"x-amzn-ErrorType": "ThrottlingException"}

_LISTED_ERRORS = 5  # a body with a thousand bad documents should not produce a thousand-line message


def http_status(error: RetrostarError) -> int | None:
    """The status for `error`'s kind; None for a kind the API never answers with (a bug: 500)."""
    for kind in type(error).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return None


def invalid_request(error: ValidationError) -> InvalidInput:
    """A 422 that says which fields are wrong and why."""
    return _invalid(error.errors(include_input=False, include_url=False))


def _invalid(errors: Sequence[Mapping[str, Any]]) -> InvalidInput:
    # Location and message only: an error's `input` would echo the request's text.
    problems = [{"loc": [str(part) for part in item["loc"]], "msg": item["msg"]} for item in errors]
    described = [
        f"{'.'.join(problem['loc'])}: {problem['msg']}" if problem["loc"] else problem["msg"]
        for problem in problems[:_LISTED_ERRORS]
    ]
    more = f" (and {len(problems) - _LISTED_ERRORS} more)" if len(problems) > _LISTED_ERRORS else ""
    return InvalidInput(f"invalid request: {'; '.join(described)}{more}", problems)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RetrostarError)
    status = http_status(exc)
    if status is None:
        return await _unexpected_error(request, exc)
    # Messages never quote credentials; a backend URL written with user:password@ is masked all the same.
    message = redact(str(exc))
    body: dict[str, Any] = {"message": message}
    if isinstance(exc, InvalidInput) and exc.problems is not None:
        body["errors"] = exc.problems
    headers = None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(exc.retry_after), **THROTTLED_ERROR_TYPE}
    if isinstance(exc, ClientTooSlow):
        headers = {"Connection": "close"}  # the rest of a slow body is not worth reading
    # What the client did (hung up, too slow) is worth its message in the log; our own messages hold no
    # request text. Other refusals log the route and status only.
    reason = message if isinstance(exc, ClientDisconnected | ClientTooSlow) else None
    return _answer(request, body, status, headers, reason)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's own (404, 405) and the bearer check's 401.
    assert isinstance(exc, StarletteHTTPException)
    body = exc.detail if isinstance(exc.detail, dict) else {"message": str(exc.detail)}
    return _answer(request, body, exc.status_code, exc.headers)


def _answer(
    request: Request,
    body: dict[str, Any],
    status: int,
    headers: Mapping[str, str] | None,
    reason: str | None = None,
) -> JSONResponse:
    if reason is None:
        logger.info("%s %s -> %d", request.method, request.url.path, status)
    else:
        logger.info("%s %s -> %d: %s", request.method, request.url.path, status, reason)
    return JSONResponse(body, status_code=status, headers=headers)


async def _invalid_parameters(request: Request, exc: Exception) -> JSONResponse:
    # Query parameters FastAPI validates (the explorer's API) answer in the same shape as a bad body.
    assert isinstance(exc, RequestValidationError)
    return await _domain_error(request, _invalid(exc.errors()))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The type only: an exception's message may quote the request.
    logger.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse({"message": "internal error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RetrostarError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_parameters)
    app.add_exception_handler(Exception, _unexpected_error)
