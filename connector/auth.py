"""The optional bearer API key on the rerank routes (health, readiness and metrics stay open for probes)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from connector.settings import ConnectorSettings

# auto_error=False: a missing header must get our 401 and message, not the scheme's default.
_bearer = HTTPBearer(auto_error=False, description="The connector's API key, when one is configured.")


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    # async although it awaits nothing: FastAPI runs a plain `def` dependency in a worker thread, a thread
    # hop on every rerank request.
    settings: ConnectorSettings = request.app.state.settings
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    # Constant-time comparison: response timing must not reveal how much of a guessed key matched.
    if not hmac.compare_digest(given, expected):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
