"""The simulator's world on disk: one SQLite file that the server, its clock thread and the CLI share.

Every Cloudflare object is a JSON document in one table, keyed by (kind, id), with the account it belongs to,
an optional parent (a tunnel for a connector, a user for a session, a zone for a DNS record) and an insertion
sequence so that lists come back in creation order. Lists of a few thousand documents load in milliseconds,
which keeps filtering in Python simple without making the simulator a benchmark's bottleneck.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    parent TEXT,
    seq INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS objects_account ON objects (kind, account_id, seq);
CREATE INDEX IF NOT EXISTS objects_parent ON objects (kind, parent);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stats (endpoint TEXT NOT NULL, status INTEGER NOT NULL, calls INTEGER NOT NULL,
                                  PRIMARY KEY (endpoint, status));
CREATE TABLE IF NOT EXISTS ratelimit (token TEXT PRIMARY KEY, window_start REAL NOT NULL,
                                      calls INTEGER NOT NULL);
"""

Doc = dict[str, Any]


class Store:
    """Thread-safe access to one state file; each thread gets its own connection."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        self._seq_lock = threading.Lock()
        self.conn.executescript(SCHEMA)

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front, so read-modify-write sequences never interleave."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- documents ----------------------------------------------------------------------------------------

    def get(self, kind: str, obj_id: str, account_id: str | None = None) -> Doc | None:
        row = self.conn.execute(
            "SELECT account_id, doc FROM objects WHERE kind=? AND id=?", (kind, obj_id)
        ).fetchone()
        if row is None or (account_id is not None and row[0] != account_id):
            return None
        return json.loads(row[1])

    def list(self, kind: str, account_id: str | None = None, parent: str | None = None) -> list[Doc]:
        sql, args = "SELECT doc FROM objects WHERE kind=?", [kind]
        if account_id is not None:
            sql += " AND account_id=?"
            args.append(account_id)
        if parent is not None:
            sql += " AND parent=?"
            args.append(parent)
        return [json.loads(doc) for (doc,) in self.conn.execute(sql + " ORDER BY seq", args)]

    def put(self, kind: str, doc: Doc, account_id: str, parent: str | None = None) -> Doc:
        """Insert or replace a document; a replaced document keeps its place in list order."""
        self.put_many(kind, [(doc, account_id, parent)])
        return doc

    def put_many(self, kind: str, rows: Iterable[tuple[Doc, str, str | None]]) -> None:
        with self.write() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM objects").fetchone()[0]
            params = []
            for doc, account_id, parent in rows:
                seq += 1
                params.append(
                    (kind, doc["id"], account_id, parent, seq, json.dumps(doc, separators=(",", ":")))
                )
            conn.executemany(
                "INSERT INTO objects (kind, id, account_id, parent, seq, doc) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET doc=excluded.doc, parent=excluded.parent",
                params,
            )

    def delete(self, kind: str, obj_id: str) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM objects WHERE kind=? AND id=?", (kind, obj_id))

    def delete_children(self, kind: str, parent: str) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM objects WHERE kind=? AND parent=?", (kind, parent))

    def accounts(self) -> list[str]:
        return [
            row[0] for row in self.conn.execute("SELECT id FROM objects WHERE kind='account' ORDER BY seq")
        ]

    def wipe(self) -> None:
        with self.write() as conn:
            for table in ("objects", "meta", "stats", "ratelimit"):
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

    # -- settings ------------------------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (key, json.dumps(value)),
            )

    def delete_meta(self, key: str) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM meta WHERE key=?", (key,))

    # -- counters ------------------------------------------------------------------------------------------

    def count_call(self, endpoint: str, status: int) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO stats (endpoint, status, calls) VALUES (?, ?, 1) "
                "ON CONFLICT (endpoint, status) DO UPDATE SET calls = calls + 1",
                (endpoint, status),
            )

    def stats(self) -> dict[str, Any]:
        by_endpoint: dict[str, dict[str, int]] = {}
        by_status: dict[str, int] = {}
        total = 0
        for endpoint, status, calls in self.conn.execute(
            "SELECT endpoint, status, calls FROM stats ORDER BY endpoint"
        ):
            by_endpoint.setdefault(endpoint, {})[str(status)] = calls
            by_status[str(status)] = by_status.get(str(status), 0) + calls
            total += calls
        return {
            "total": total,
            "by_status": by_status,
            "endpoints": {
                name: {"calls": sum(s.values()), "by_status": s} for name, s in by_endpoint.items()
            },
            "since": self.get_meta("stats_since"),
        }

    def reset_stats(self, now: str) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM stats")
        self.set_meta("stats_since", now)

    def take_rate_token(
        self, token_key: str, now: float, limit: int, window: float
    ) -> tuple[bool, int, float]:
        """Spend one request from a fixed window: (allowed, remaining, seconds until the window resets).

        Cloudflare blocks every call for the rest of the window once the budget is spent, which a fixed window
        opened by the first request models exactly.
        """
        with self.write() as conn:
            row = conn.execute(
                "SELECT window_start, calls FROM ratelimit WHERE token=?", (token_key,)
            ).fetchone()
            if row is None or now >= row[0] + window:
                start, calls = now, 0
            else:
                start, calls = row
            calls += 1
            conn.execute(
                "INSERT INTO ratelimit (token, window_start, calls) VALUES (?, ?, ?) "
                "ON CONFLICT (token) DO UPDATE SET window_start=excluded.window_start, calls=excluded.calls",
                (token_key, start, calls),
            )
        return calls <= limit, max(limit - calls, 0), max(start + window - now, 0.0)

    def reset_rate_limits(self) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM ratelimit")


def read_documents(path: str | Path, kinds: Iterable[str], *, limit: int) -> list[tuple[str, str, str, Doc]]:
    """(kind, id, account id, document) of the given kinds in a state file, ordered by kind then id.

    For tools that only read another process's state: the file is opened read-only, so a missing file is never
    created and the schema never written, and a file that is not a simulator state reads as empty.
    """
    if not Path(path).is_file():
        return []
    kinds = list(kinds)
    marks = ", ".join("?" * len(kinds))
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            rows = conn.execute(
                f"SELECT kind, id, account_id, doc FROM objects WHERE kind IN ({marks}) "  # noqa: S608 - placeholders
                "ORDER BY kind, id LIMIT ?",
                [*kinds, limit],
            ).fetchall()
    except sqlite3.Error:
        return []
    return [(kind, obj_id, account_id, json.loads(doc)) for kind, obj_id, account_id, doc in rows]
