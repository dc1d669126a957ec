"""Waiting in async tests for something another thread or process does (the scripted server's counters,
a worker's state): poll every 10 ms, fail the test after `timeout` seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(
    condition: Callable[[], bool], failure: str = "condition not met in time", timeout: float = 5.0
) -> None:
    give_up_at = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up_at, failure
        await asyncio.sleep(0.01)
