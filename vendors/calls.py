"""Independent Cloudflare calls made at once in threads, each retried briefly, each answer noted for the receipt.

The threads only talk to Cloudflare; all database work stays in the calling task's own thread.
"""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from integrations.cloudflare import CloudflareError, CloudflareNotFound, CloudflareTransient

# Short, quick retries inside a step for a single failed call among many; longer waits are the task's business.
_CALL_RETRIES = (0.25, 0.75)
_MAX_INLINE_WAIT = 2.0
_MAX_THREADS = 32


@dataclass
class Call:
    """One Cloudflare call to make in a worker thread, with what the receipt says about it."""

    name: str
    target: str
    fn: Callable[[], Any]
    missing_ok: bool = False
    # What the receipt says about the answer; lists are counted, anything else is "ok" unless said here.
    describe: Callable[[Any], str] | None = None


def _attempt(call: Call) -> tuple[str, Any]:
    for delay in (*_CALL_RETRIES, None):
        try:
            return "ok", call.fn()
        except CloudflareNotFound:
            if call.missing_ok:
                return "already gone", None
            raise
        except CloudflareTransient as exc:
            if delay is None or (exc.retry_after or 0) > _MAX_INLINE_WAIT:
                raise
            time.sleep(max(delay, exc.retry_after or 0))
    raise AssertionError("unreachable")


class Notebook(Protocol):
    def note(self, call: str, target: str, answer: str) -> None: ...


def run_concurrently(ctx: Notebook, calls: list[Call]) -> list[Any]:
    """Make independent calls at once; note each answer; re-raise the first error once all have finished."""
    if not calls:
        return []
    with ThreadPoolExecutor(max_workers=min(_MAX_THREADS, len(calls))) as pool:
        futures = [pool.submit(_attempt, call) for call in calls]
    results: list[Any] = []
    first_error: CloudflareError | None = None
    for call, future in zip(calls, futures, strict=True):
        try:
            answer, value = future.result()
        except CloudflareError as exc:
            ctx.note(call.name, call.target, f"error: {exc.message}")
            first_error = first_error or exc
            results.append(None)
            continue
        if answer != "ok":
            summary = answer
        elif call.describe is not None:
            summary = call.describe(value)
        elif isinstance(value, list):
            summary = f"{len(value)} item(s)"
        else:
            summary = answer
        ctx.note(call.name, call.target, summary)
        results.append(value)
    if first_error is not None:
        raise first_error
    return results
