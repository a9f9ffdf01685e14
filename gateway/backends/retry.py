"""The one retry helper: backoff on connection errors only, never after output has started."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


async def retry_connect(
    attempt: Callable[[], Awaitable[T]],
    is_connection_error: Callable[[BaseException], bool],
    *,
    retries: int = 2,
    backoff_s: float = 0.1,
    what: str = "backend",
) -> T:
    """Run `attempt`; on a connection error wait backoff_s, 2*backoff_s, ... and try again, up to `retries` more times.

    Other errors (bad request, server error after the request was accepted) are raised at once:
    repeating them would only repeat the failure or generate twice.
    """
    for n in range(retries + 1):
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - filtered just below
            if not is_connection_error(exc) or n == retries:
                raise
            delay_s = backoff_s * (2**n)
            log.info("%s: connection failed (%s); retry %d/%d in %.2f s", what, type(exc).__name__, n + 1, retries, delay_s)
            await asyncio.sleep(delay_s)
    raise AssertionError("unreachable")
