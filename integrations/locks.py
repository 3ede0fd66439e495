"""Locks shared by every process of one deployment, around a read-modify-write of a Cloudflare object.

Cloudflare replaces an Access application's whole policy list on each PUT and offers no version check, so two
workers changing one application at once (two vendors revoked together) would each write back what they read and
undo the other's change. Holding the application's lock from the read to the write makes the changes take turns.

Each lock also counts the changes made under it (its generation). A caller that notes the generation before it
reads, and finds it unchanged once it holds the lock, knows no change made under the lock came after its read, and
may write from what it read instead of reading again.

The lock lives in Redis when the deployment has one (several hosts), and otherwise in a file under VAR_DIR (one
host, several processes); a process that dies lets go of a file lock at once and of a Redis lock after `ttl`.
"""

import contextlib
import fcntl
import functools
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from django.conf import settings


class LockTimeout(Exception):
    """Someone else held the lock for longer than the caller would wait."""


@dataclass
class Held:
    """A lock being held: the generation it was taken at, and `changed()` to count a change made under it."""

    generation: int
    changed: Callable[[], object]


@functools.cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _key(name: str) -> str:
    return f"gatehouse:lock:{name}"


def _path(name: str) -> Path:
    folder = Path(settings.VAR_DIR) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock"


def _read_count(fd: int) -> int:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode(errors="replace").strip()
    return int(text) if text.isdigit() else 0


def generation(name: str) -> int:
    """How many changes have been made under the lock so far (read without taking it)."""
    if settings.REDIS_URL:
        return int(_redis(settings.REDIS_URL).get(f"{_key(name)}:generation") or 0)
    fd = os.open(_path(name), os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        return _read_count(fd)
    finally:
        os.close(fd)


@contextmanager
def hold(name: str, *, wait: float = 30.0, ttl: float = 60.0) -> Iterator[Held]:
    if settings.REDIS_URL:
        client = _redis(settings.REDIS_URL)
        lock = client.lock(_key(name), timeout=ttl, sleep=0.01)
        if not lock.acquire(blocking_timeout=wait):
            raise LockTimeout(name)
        try:
            counter = f"{_key(name)}:generation"
            yield Held(int(client.get(counter) or 0), lambda: client.incr(counter))
        finally:
            # A lock that outlived its ttl may be someone else's now: nothing of ours to release then.
            with contextlib.suppress(redis.exceptions.LockNotOwnedError):
                lock.release()
        return
    fd = os.open(_path(name), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        give_up = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > give_up:
                    raise LockTimeout(name) from None
                time.sleep(0.01)
        try:
            current = _read_count(fd)

            def changed() -> None:
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, f"{current + 1:020d}".encode())

            yield Held(current, changed)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
