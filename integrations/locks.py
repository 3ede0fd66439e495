"""Locks shared by every process of one deployment, around a read-modify-write of a Cloudflare object.

Cloudflare replaces an Access application's whole policy list on each PUT and offers no version check, so two
workers changing one application at once (two vendors revoked together) would each write back what they read and
undo the other's change. Holding the application's lock from the read to the write makes the changes take turns.

The lock lives in Redis when the deployment has one (several hosts), and otherwise in a file under VAR_DIR (one
host, several processes); a process that dies lets go of a file lock at once and of a Redis lock after `ttl`.
"""

import contextlib
import fcntl
import functools
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from django.conf import settings


class LockTimeout(Exception):
    """Someone else held the lock for longer than the caller would wait."""


@functools.cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


@contextmanager
def hold(name: str, *, wait: float = 30.0, ttl: float = 60.0) -> Iterator[None]:
    if settings.REDIS_URL:
        lock = _redis(settings.REDIS_URL).lock(f"gatehouse:lock:{name}", timeout=ttl, sleep=0.01)
        if not lock.acquire(blocking_timeout=wait):
            raise LockTimeout(name)
        try:
            yield
        finally:
            # A lock that outlived its ttl may be someone else's now: nothing of ours to release then.
            with contextlib.suppress(redis.exceptions.LockNotOwnedError):
                lock.release()
        return
    folder = Path(settings.VAR_DIR) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
