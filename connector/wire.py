"""The request on the wire: its body, read under the size and time limits before the request is admitted,
and the client's hang-up, noticed while the work for it runs (which is then cancelled, freeing its slot and
its backend work). Refusals are the core's domain errors, answered by connector/errors.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from connector.limits import read_body
from connector.settings import LimitSettings
from retrostar_search.errors import ClientDisconnected, ClientTooSlow

ResultT = TypeVar("ResultT")


async def read_request_body(request: Request, limits: LimitSettings) -> bytes:
    """The whole body, within `body_timeout` and `max_body_bytes`. A client trickling its body holds a
    socket until the timeout, never a rerank slot."""
    try:
        async with asyncio.timeout(limits.body_timeout):
            return await read_body(
                request.stream(), request.headers.get("content-length"), limits.max_body_bytes
            )
    except TimeoutError:
        raise ClientTooSlow(
            f"the request body did not arrive within body_timeout ({limits.body_timeout:g} s)"
        ) from None
    except ClientDisconnect:
        raise ClientDisconnected("the client closed the connection while sending the body") from None


async def until_disconnected(work: Coroutine[Any, Any, ResultT], receive: Receive, what: str) -> ResultT:
    """`work`'s result; if the client hangs up first, `work` is cancelled (and awaited, so whatever it held
    is released) and ClientDisconnected names `what` was cancelled. Call it once the body has been read:
    the server's next message is then the disconnect."""
    started = time.monotonic()
    working = asyncio.create_task(work)
    hang_up = asyncio.create_task(_hang_up(receive))
    try:
        done, _ = await asyncio.wait((working, hang_up), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also when this request is cancelled itself (server shutdown): nothing outlives it.
        hang_up.cancel()
        if not working.done():
            working.cancel()
            await asyncio.gather(working, return_exceptions=True)
    if working in done:
        return working.result()
    raise ClientDisconnected(
        f"the client closed the connection after {time.monotonic() - started:.2f} s; {what} cancelled"
    )


async def _hang_up(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass  # an empty body part (a GET's): the disconnect comes next
