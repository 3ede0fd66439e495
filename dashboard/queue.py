"""Sending Celery tasks so that losing the broker is an outage of the queue, not of the console.

What a request saved stays saved when the broker cannot be reached: the task is not sent, a warning is logged (the
task's name and the error's type only: a broker URL carries a password), and the request is told, so the page says
what happens instead. A run of the operation engine is sent again by its resume pass once the queue is back; a
refresh is left to beat's schedule. Every request and service sends its tasks through `send` or `send_on_commit`.
"""

import logging
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

from celery import Task
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from kombu.exceptions import OperationalError

log = logging.getLogger(__name__)

# A click must not wait on a broker that is gone. Celery's defaults retry a publish three times on a pooled
# connection that has no read timeout, so a broker that accepts and never answers holds the request for good; a
# connection of our own with these timeouts and one retry costs at most about two seconds.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 1.0
RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}

RESUMED = "Saved; it runs when the queue is back."


@dataclass
class _RequestState:
    request: Any
    unsent: list[str] = field(default_factory=list)
    told: set[str] = field(default_factory=set)


_current: ContextVar[_RequestState | None] = ContextVar("gatehouse_queue_request", default=None)


@contextmanager
def request_scope(request):
    """While a request is served: tasks it cannot send are noted on it (see `unsent`), and after the first failure
    the broker is not tried again (one wait per click, not one per task)."""
    token = _current.set(_RequestState(request))
    try:
        yield
    finally:
        _current.reset(token)


def unsent(request) -> list[str]:
    """The names of the tasks this request could not send (empty when every one went)."""
    state = _current.get()
    return list(state.unsent) if state and state.request is request else []


def send(task: Task, *args: Any, countdown: float = 0.0, unsent_message: str | None = RESUMED, **kwargs: Any) -> bool:
    """Send `task` now; False when the broker could not be reached. Within a request, `unsent_message` (when
    given) is shown to the user once; None keeps it quiet (a page nobody clicked on, a webhook)."""
    state = _current.get()
    if state is None or not state.unsent:
        error = _publish(task, args, kwargs, countdown)
        if error is None:
            return True
        log.warning("task %s not sent: the broker is unreachable (%s)", task.name, type(error).__name__)
    else:
        log.warning("task %s not sent: the broker was unreachable earlier in this request", task.name)
    if state is not None:
        state.unsent.append(task.name)
        if unsent_message and unsent_message not in state.told:
            state.told.add(unsent_message)
            messages.warning(state.request, unsent_message)
    return False


def send_on_commit(
    task: Task,
    *args: Any,
    countdown: float = 0.0,
    unsent_message: str | None = RESUMED,
    if_unsent: Callable[[], None] | None = None,
    **kwargs: Any,
) -> None:
    """Send `task` once the current transaction commits (at once outside one), as `send` does; `if_unsent` runs
    when it could not be, for work nothing else would send again (it undoes the waiting state it left)."""

    def go() -> None:
        if not send(task, *args, countdown=countdown, unsent_message=unsent_message, **kwargs) and if_unsent:
            if_unsent()

    transaction.on_commit(go)


def _publish(task: Task, args: tuple, kwargs: dict, countdown: float) -> BaseException | None:
    """None once sent; otherwise the error of a broker that could not be reached: kombu's own, or one of the
    transport's connection errors (redis-py's)."""
    transport_options = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}
    with task.app.connection_for_write(connect_timeout=CONNECT_TIMEOUT, transport_options=transport_options) as conn:
        unreachable: tuple[type[BaseException], ...] = (OperationalError, *conn.connection_errors)
        try:
            task.apply_async(  # type: ignore[call-arg]  # stubs: Celery hands `connection` on to the producer
                args, kwargs, countdown=countdown, connection=conn, retry=True, retry_policy=RETRY_POLICY
            )
        except unreachable as exc:
            return exc
    return None


def refresh_unsent(beat_entry: str) -> str:
    """What to tell someone whose refresh could not be sent: beat's entry `beat_entry` runs it on its schedule."""
    seconds = cast(float, settings.CELERY_BEAT_SCHEDULE[beat_entry]["schedule"])
    minutes = seconds / 60
    return (
        "The queue is unreachable, so this refresh was not sent; the scheduled refresh (every "
        f"{minutes:g} minutes) runs once the queue is back."
    )
