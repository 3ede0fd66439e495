"""Gatehouse's share of the Cloudflare API rate limit, shared by every process of one deployment.

Cloudflare allows 1,200 requests per 5 minutes per token, across everything that uses the account. Gatehouse
takes at most `share` of that, in a sliding window. Background work (sync) may use the share minus a reserve
kept for people waiting on a click (onboarding, revocation), so a busy sync never delays a revoke. After a 429
every process waits out Retry-After instead of retrying into the limit.

The window lives in Redis when the deployment has one (several workers, several hosts), and otherwise in a
SQLite file beside the embedded default's database (one host, several processes).
"""

import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import redis


class Priority(IntEnum):
    BACKGROUND = 0
    INTERACTIVE = 1
    # The tunnel status list, one call a sync pass, on which tunnels' status and alerts rest: it may spend a slice
    # nothing else may, so a window spent by clicks and background reads does not leave Gatehouse blind to tunnels
    # going down.
    STATUS = 2


@dataclass(frozen=True)
class Grant:
    granted: bool
    wait: float  # seconds until a call could be granted, when not granted now


@dataclass(frozen=True)
class Limits:
    share: int  # calls per window Gatehouse may make
    reserve: int  # of those, kept for interactive calls (and the status list)
    window: float = 300.0
    status_reserve: int = 0  # of those, kept for the tunnel status list alone

    @classmethod
    def from_share(
        cls, *, account_limit: int, share: float, reserve_fraction: float, window: float, status_calls: int = 0
    ) -> "Limits":
        """`status_calls`: what the status list needs in a window (passes per window, a page or two each); at most
        a tenth of the share is kept for it."""
        allowed = max(1, int(account_limit * share))
        return cls(
            share=allowed,
            reserve=int(allowed * reserve_fraction),
            window=window,
            status_reserve=min(status_calls, allowed // 10),
        )

    def allowance(self, priority: Priority) -> int:
        if priority == Priority.STATUS:
            return self.share
        interactive = max(1, self.share - self.status_reserve)
        return interactive if priority == Priority.INTERACTIVE else max(1, interactive - self.reserve)


_REDIS_TAKE = """
local key, blocked_key = KEYS[1], KEYS[2]
local now, window, allowance, member = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local blocked = tonumber(redis.call('GET', blocked_key) or '0')
if blocked > now then return {0, tostring(blocked - now)} end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < allowance then
  redis.call('ZADD', key, now, member)
  redis.call('EXPIRE', key, math.ceil(window) + 1)
  return {1, '0'}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, tostring(tonumber(oldest[2]) + window - now)}
"""


# A Redis that has not connected or answered within this long is not going to: every Cloudflare call (and
# /readyz) waits on the budget, so a store that hangs must fail them rather than hold them for good.
REDIS_TIMEOUT = 2.0


class RedisBudget:
    def __init__(self, url: str, name: str, limits: Limits, clock=time.time):
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT)
        self.key, self.blocked_key = f"gatehouse:budget:{name}", f"gatehouse:budget:{name}:blocked"
        self.limits, self.clock = limits, clock
        self._take = self.redis.register_script(_REDIS_TAKE)

    def take(self, priority: Priority) -> Grant:
        granted, wait = self._take(
            keys=[self.key, self.blocked_key],
            args=[self.clock(), self.limits.window, self.limits.allowance(priority), uuid.uuid4().hex],
        )
        return Grant(bool(granted), max(0.0, float(wait)))

    def block(self, seconds: float) -> None:
        """Stop every process calling for `seconds`: Cloudflare answered 429 (each call here counts one)."""
        until = self.clock() + seconds
        current = float(self.redis.get(self.blocked_key) or 0)
        if until > current:
            self.redis.set(self.blocked_key, until, ex=int(seconds) + 1)
        self.redis.incr(f"{self.key}:rate-limited")

    def used(self) -> int:
        now = self.clock()
        return int(self.redis.zcount(self.key, now - self.limits.window, "+inf"))

    def blocked_for(self) -> float:
        """Seconds until calls are granted again after a 429; 0 when not blocked."""
        return max(0.0, float(self.redis.get(self.blocked_key) or 0) - self.clock())

    def rate_limited(self) -> int:
        """How many 429s Cloudflare has answered since the budget's store was created."""
        return int(self.redis.get(f"{self.key}:rate-limited") or 0)


class SqliteBudget:
    def __init__(self, path: Path, name: str, limits: Limits, clock=time.time):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.name, self.limits, self.clock = path, name, limits, clock
        # Threads of one process (a step's concurrent calls) queue on this lock and share one connection, instead
        # of each opening the file and contending for SQLite's write lock.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A lost grant after a power cut only miscounts the window a little; a disk sync per call would serialise
        # every Cloudflare call of the host behind the disk (tens of milliseconds each).
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS grants (name TEXT NOT NULL, at REAL NOT NULL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS grants_name_at ON grants (name, at)")
            self._db.execute("CREATE TABLE IF NOT EXISTS blocks (name TEXT PRIMARY KEY, until REAL NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS rate_limited (name TEXT PRIMARY KEY, count INTEGER NOT NULL)")

    def take(self, priority: Priority) -> Grant:
        with self._lock:
            return self._take(priority)

    def _take(self, priority: Priority) -> Grant:
        now = self.clock()
        db = self._db
        try:
            # BEGIN IMMEDIATE serialises the read-count-insert across processes.
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT until FROM blocks WHERE name = ?", (self.name,)).fetchone()
            if row and row[0] > now:
                db.execute("COMMIT")
                return Grant(False, row[0] - now)
            db.execute("DELETE FROM grants WHERE name = ? AND at <= ?", (self.name, now - self.limits.window))
            count, oldest = db.execute(
                "SELECT COUNT(*), MIN(at) FROM grants WHERE name = ?", (self.name,)
            ).fetchone()
            if count < self.limits.allowance(priority):
                db.execute("INSERT INTO grants (name, at) VALUES (?, ?)", (self.name, now))
                db.execute("COMMIT")
                return Grant(True, 0.0)
            db.execute("COMMIT")
            return Grant(False, max(0.0, oldest + self.limits.window - now))
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def block(self, seconds: float) -> None:
        """Stop every process calling for `seconds`: Cloudflare answered 429 (each call here counts one)."""
        until = self.clock() + seconds
        with self._lock:
            self._db.execute(
                "INSERT INTO blocks (name, until) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET until = MAX(until, excluded.until)",
                (self.name, until),
            )
            self._db.execute(
                "INSERT INTO rate_limited (name, count) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET count = count + 1",
                (self.name,),
            )

    def used(self) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM grants WHERE name = ? AND at > ?",
                (self.name, self.clock() - self.limits.window),
            ).fetchone()
        return count

    def blocked_for(self) -> float:
        """Seconds until calls are granted again after a 429; 0 when not blocked."""
        with self._lock:
            row = self._db.execute("SELECT until FROM blocks WHERE name = ?", (self.name,)).fetchone()
        return max(0.0, row[0] - self.clock()) if row else 0.0

    def rate_limited(self) -> int:
        """How many 429s Cloudflare has answered since the budget's store was created."""
        with self._lock:
            row = self._db.execute("SELECT count FROM rate_limited WHERE name = ?", (self.name,)).fetchone()
        return row[0] if row else 0
