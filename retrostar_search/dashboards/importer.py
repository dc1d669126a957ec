"""Posting saved objects to OpenSearch Dashboards or Kibana through the Saved Objects import API.

`POST /api/saved_objects/_import?overwrite=true` with the NDJSON as the multipart field `file`, and the
app's XSRF header. The API answers 200 even when some objects failed: `success` and `errors` say which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrostar_search.dashboards.targets import PROFILES, Target
from retrostar_search.engines.connection import ServiceConnection
from retrostar_search.engines.errors import Service, describe_failure, describe_status
from retrostar_search.errors import RetrostarError
from retrostar_search.redaction import public_url

IMPORT_PATH = "/api/saved_objects/_import"
UPLOAD_FILENAME = "retrostar-dashboards.ndjson"

if TYPE_CHECKING:
    import httpx


class DashboardsImportError(RetrostarError):
    """The import request itself failed (unreachable, refused, not the Saved Objects API); `hint` says what
    to try when that is known."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True, slots=True)
class ImportFailure:
    object_type: str
    object_id: str
    title: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    success: bool
    success_count: int
    failures: list[ImportFailure]


class DashboardsConnection(ServiceConnection):
    """The app's base URL and credentials (basic auth or an API key)."""

    url: str

    @property
    def display_url(self) -> str:
        """The URL without any `user:password@` written into it (httpx would send those as basic auth)."""
        return public_url(self.url)

    def headers(self) -> dict[str, str]:
        if self.api_key is not None:
            return {"Authorization": f"ApiKey {self.api_key.get_secret_value()}"}
        return {}

    def auth(self) -> httpx.BasicAuth | None:
        if self.username is None:
            return None
        import httpx

        return httpx.BasicAuth(self.username, self.password.get_secret_value() if self.password else "")

    def verify(self) -> bool | str:
        if not self.verify_certs:
            return False
        return self.ca_certs or True


def import_saved_objects(connection: DashboardsConnection, target: Target, ndjson: str) -> ImportResult:
    """Import (overwriting objects with the same ids) and report per object; raises only when the request
    as a whole failed."""
    import httpx

    url = connection.url.rstrip("/") + IMPORT_PATH
    headers = {PROFILES[target].xsrf_header: "true", **connection.headers()}
    try:
        response = httpx.post(
            url,
            params={"overwrite": "true"},
            headers=headers,
            files={"file": (UPLOAD_FILENAME, ndjson.encode("utf-8"), "application/ndjson")},
            auth=connection.auth(),
            verify=connection.verify(),
            timeout=connection.request_timeout,
        )
    except httpx.HTTPError as error:
        failure = describe_failure(error, connection.display_url, Service.DASHBOARDS)
        raise DashboardsImportError(failure.message, failure.hint) from None
    body = _json_or_none(response)
    if response.status_code != httpx.codes.OK or not isinstance(body, dict) or "success" not in body:
        hint = describe_status(response.status_code, connection.display_url, Service.DASHBOARDS).hint
        raise DashboardsImportError(_describe_refusal(response, body), hint)
    return ImportResult(
        success=bool(body["success"]),
        success_count=int(body.get("successCount", 0)),
        failures=[_failure(error) for error in body.get("errors", [])],
    )


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe_refusal(response: httpx.Response, body: Any) -> str:
    # Both apps answer errors as {"statusCode", "error", "message"}.
    message = body.get("message") if isinstance(body, dict) else None
    detail = message or response.reason_phrase or "not a Saved Objects import response"
    return f"the import was refused: HTTP {response.status_code}: {detail}"


def _failure(error: dict[str, Any]) -> ImportFailure:
    detail = error.get("error", {})
    kind = detail.get("type", "unknown")
    if kind == "missing_references":
        missing = ", ".join(f"{ref.get('type')}/{ref.get('id')}" for ref in detail.get("references", []))
        reason = f"missing references: {missing}"
    elif detail.get("message"):
        reason = f"{kind}: {detail['message']}"
    else:
        reason = kind
    return ImportFailure(
        object_type=str(error.get("type", "?")),
        object_id=str(error.get("id", "?")),
        title=str(error.get("title") or error.get("meta", {}).get("title") or ""),
        reason=reason,
    )
