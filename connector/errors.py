"""Error answers: always JSON `{"message": ...}` (Cohere's error shape), never a traceback, and never an echo
of the request's text (validation errors name the field, not its value)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

_LISTED_ERRORS = 5  # a body with a thousand bad documents should not produce a thousand-line message


def invalid_request(error: ValidationError) -> HTTPException:
    """A 422 that says which fields are wrong and why."""
    return _invalid(error.errors(include_input=False, include_url=False))


def _invalid(errors: Sequence[Mapping[str, Any]]) -> HTTPException:
    # Location and message only: an error's `input` would echo the request's text.
    problems = [{"loc": [str(part) for part in item["loc"]], "msg": item["msg"]} for item in errors]
    described = [
        f"{'.'.join(problem['loc'])}: {problem['msg']}" if problem["loc"] else problem["msg"]
        for problem in problems[:_LISTED_ERRORS]
    ]
    more = f" (and {len(problems) - _LISTED_ERRORS} more)" if len(problems) > _LISTED_ERRORS else ""
    return HTTPException(
        status_code=422,
        detail={"message": f"invalid request: {'; '.join(described)}{more}", "errors": problems},
    )


def _body(detail: Any) -> dict[str, Any]:
    return detail if isinstance(detail, dict) else {"message": str(detail)}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    logger.info("%s %s -> %d", request.method, request.url.path, exc.status_code)
    return JSONResponse(_body(exc.detail), status_code=exc.status_code, headers=exc.headers)


async def _invalid_parameters(request: Request, exc: Exception) -> JSONResponse:
    # Query parameters FastAPI validates (the explorer's API) answer in the same shape as a bad body.
    assert isinstance(exc, RequestValidationError)
    return await _http_error(request, _invalid(exc.errors()))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The type only: an exception's message may quote the request.
    logger.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse({"message": "internal error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_parameters)
    app.add_exception_handler(Exception, _unexpected_error)
