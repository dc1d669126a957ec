"""The HTTP client of the model-server backends: one aiohttp keep-alive pool for generations, a small
one for control requests, per-request timeouts without a timer per request, and one retry for a
request that met a connection the server had already closed.

Why aiohttp: its pool hands a burst of N requests N connections, idle ones first, so a warm burst of 100
pairs costs one backend latency; httpx's (httpcore 1.0) pool handed every request of a burst the idle
connections and the losers waited for a later completion, 3-4.5 backend latencies (docs/connector.md,
"Overhead").
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import aiohttp
from yarl import URL

from retrostar_search.errors import BackendError

logger = logging.getLogger(__name__)

#: Idle connections are dropped after this, under the 5 s after which uvicorn (SGLang, vLLM) closes them.
KEEPALIVE_SECONDS = 4.0
#: Connections for discovery, readiness and aborts, which must never wait behind generations.
CONTROL_CONNECTIONS = 8
CONTROL_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 10.0

# Whether the connection of the request being sent came from the pool (set by _PoolConnector.connect,
# read by the same task after a failure).
_reused_connection: ContextVar[bool] = ContextVar("retrostar_reused_connection", default=False)


class RequestTimedOut(BackendError):
    """A request ran past the backend's request timeout."""


class _StaleConnection(Exception):
    """The server had closed the pooled connection a request was sent on, before answering."""


class _PoolConnector(aiohttp.TCPConnector):
    """A TCPConnector that tells the request being sent whether its connection was used before."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._used: weakref.WeakSet[Any] = weakref.WeakSet()

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        _reused_connection.set(protocol in self._used)
        self._used.add(protocol)
        return connection


class _Expiry:
    """Request timeouts at the cost of one timer per `resolution` seconds of request starts, whatever the
    number of requests: a burst of 1000 pairs arms one timer, which cancels those still running when it
    fires (at most `resolution` after their own timeout)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.resolution = min(1.0, timeout / 10) if timeout else 1.0
        self._due: dict[int, set[asyncio.Task[Any]]] = {}
        self.expired: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def watch(self, task: asyncio.Task[Any]) -> set[asyncio.Task[Any]] | None:
        """Start timing `task`; the returned set must have it discarded when the request ends."""
        if self.timeout is None:
            return None
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + self.timeout) / self.resolution)
        tasks = self._due.get(slot)
        if tasks is None:
            tasks = self._due[slot] = set()
            loop.call_at(slot * self.resolution, self._expire, slot)
        tasks.add(task)
        return tasks

    def _expire(self, slot: int) -> None:
        for task in self._due.pop(slot, ()):
            self.expired.add(task)
            task.cancel()


class PooledClient:
    """POSTs JSON to one server over a bounded keep-alive pool; GETs for control on a pool of their own."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        max_connections: int,
        request_timeout: float | None,
    ) -> None:
        given = URL(base_url.rstrip("/"))
        # Credentials in the URL are sent as basic auth (a proxy in front), unless a bearer key is given:
        # one Authorization header holds one of them. The URL itself never carries them into messages.
        if given.user is not None and "Authorization" not in headers:
            credentials = base64.b64encode(f"{given.user}:{given.password or ''}".encode()).decode()
            headers = {**headers, "Authorization": f"Basic {credentials}"}
        self.base_url = given.with_user(None)
        self.display_url = str(self.base_url)
        self._headers = dict(headers)
        self._max_connections = max_connections
        # Made on first use, inside the event loop that uses them (aiohttp binds a pool to its loop).
        self._session: aiohttp.ClientSession | None = None
        self._control: aiohttp.ClientSession | None = None
        self._closed = False
        self._expiry = _Expiry(request_timeout)
        self._background: set[asyncio.Task[Any]] = set()
        #: Requests retried because their pooled connection had been closed by the server.
        self.stale_retries = 0

    def _sessions(self) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        """The generation pool and the control pool."""
        if self._closed:
            raise RuntimeError("the backend's HTTP client is closed")
        if self._session is None or self._control is None:
            # No total or read timeout on generations: aiohttp arms a timer per request (and per read) for
            # those. The request timeout is _Expiry's, the caller's deadline the rest.
            no_timers = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS)
            self._session = aiohttp.ClientSession(
                connector=_PoolConnector(limit=self._max_connections, keepalive_timeout=KEEPALIVE_SECONDS),
                headers={"Content-Type": "application/json", **self._headers},
                timeout=no_timers,
            )
            self._control = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=CONTROL_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS
                ),
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=CONTROL_TIMEOUT_SECONDS),
            )
        return self._session, self._control

    def url(self, path: str) -> URL:
        return self.base_url.with_path(self.base_url.path.rstrip("/") + path, encoded=False)

    async def post(
        self, url: URL, body: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """POST `body` (JSON) to `url`; the status and the body. Raises RequestTimedOut past the request
        timeout and BackendError when the server cannot be reached or drops the request.

        A request whose pooled connection turns out closed before any answer came back is sent once more
        on a new connection: the server closed that connection while idle, so it never saw the request."""
        session = self._session if self._session is not None else self._sessions()[0]
        task = asyncio.current_task()
        assert task is not None
        watched = self._expiry.watch(task)
        try:
            try:
                return await self._send(session, url, body, headers)
            except _StaleConnection:
                self.stale_retries += 1
                logger.debug(
                    "a pooled connection to %s was closed by the server; sent again", self.display_url
                )
                return await self._send(session, url, body, headers, retry_stale=False)
        except asyncio.CancelledError:
            if task in self._expiry.expired and task.uncancel() == 0:
                raise RequestTimedOut(f"timed out after {self._expiry.timeout:g} s") from None
            raise
        finally:
            if watched is not None:
                watched.discard(task)
                self._expiry.expired.discard(task)  # the task may send more requests, not timed out

    async def _send(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        body: bytes,
        headers: Mapping[str, str] | None,
        retry_stale: bool = True,
    ) -> tuple[int, bytes]:
        answered = False
        try:
            async with session.post(url, data=body, headers=headers) as response:
                answered = True
                return response.status, await response.read()
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # A connection error is not a closed connection: the server is not listening.
            closed = not isinstance(exc, aiohttp.ClientConnectorError)
            if retry_stale and closed and not answered and _reused_connection.get():
                raise _StaleConnection from None
            raise BackendError(f"is unreachable ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"is unreachable ({type(exc).__name__})") from None

    async def get_json(self, path: str, timeout: float | None = None) -> tuple[int, Any]:
        """GET `path` on the control pool: the status and the JSON body (None when not JSON). Raises
        BackendError when the server cannot be reached."""
        try:
            async with self._sessions()[1].get(
                self.url(path), timeout=aiohttp.ClientTimeout(total=timeout) if timeout else None
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendError(f"is unreachable ({type(exc).__name__})") from None
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def post_in_background(self, path: str, payload: Mapping[str, Any]) -> None:
        """Send a control POST (an abort) without waiting for it; failures are only logged."""
        task = asyncio.get_running_loop().create_task(self._post_control(path, payload))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _post_control(self, path: str, payload: Mapping[str, Any]) -> None:
        try:
            async with self._sessions()[1].post(self.url(path), json=payload) as response:
                await response.read()
                if response.status >= 400:
                    logger.debug("%s%s answered HTTP %s", self.display_url, path, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("%s%s failed: %s", self.display_url, path, type(exc).__name__)

    async def aclose(self) -> None:
        if self._background:
            # Aborts under way get a moment to reach the server: they free its GPU.
            await asyncio.wait(self._background, timeout=2.0)
        self._closed = True
        for session in (self._session, self._control):
            if session is not None:
                await session.close()
