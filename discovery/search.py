"""The trigram index behind the catalogue's free-text filter (discovery.models.SearchTextContains).

PostgreSQL: the pg_trgm extension and a GIN index on discovery_origin.search_text. SQLite: an FTS5 table with the
trigram tokenizer over search_text (external content: it stores only the index), kept in step by triggers.

SQLite drops a table's triggers when Django rebuilds the table (some column changes do), so the index is also
ensured after every migrate, and rebuilt whenever its triggers had to be made again.
"""

FTS = "discovery_origin_search"

_SQLITE_TABLE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS discovery_origin_search USING fts5("
    "search_text, content='discovery_origin', content_rowid='id', tokenize='trigram')"
)
_SQLITE_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS discovery_origin_search_insert AFTER INSERT ON discovery_origin BEGIN
        INSERT INTO discovery_origin_search(rowid, search_text) VALUES (new.id, new.search_text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS discovery_origin_search_delete AFTER DELETE ON discovery_origin BEGIN
        INSERT INTO discovery_origin_search(discovery_origin_search, rowid, search_text)
            VALUES ('delete', old.id, old.search_text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS discovery_origin_search_update AFTER UPDATE OF search_text ON discovery_origin
    WHEN old.search_text IS NOT new.search_text BEGIN
        INSERT INTO discovery_origin_search(discovery_origin_search, rowid, search_text)
            VALUES ('delete', old.id, old.search_text);
        INSERT INTO discovery_origin_search(rowid, search_text) VALUES (new.id, new.search_text);
    END""",
]
_POSTGRES = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS origin_search_trgm ON discovery_origin USING gin (search_text gin_trgm_ops)",
]


def ensure_index(connection) -> None:
    """Create what is missing of the index; on SQLite, rebuild it from the table when its triggers were missing."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for statement in _POSTGRES:
                cursor.execute(statement)
        elif connection.vendor == "sqlite":
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN (%s, %s, %s)",
                [f"{FTS}_{name}" for name in ("insert", "delete", "update")],
            )
            whole = cursor.fetchone()[0] == len(_SQLITE_TRIGGERS)
            if not whole:
                cursor.execute(_SQLITE_TABLE)
                # Rebuilt before the triggers exist, so no trigger ever deletes an entry the index does not hold.
                cursor.execute("INSERT INTO discovery_origin_search(discovery_origin_search) VALUES ('rebuild')")
                for statement in _SQLITE_TRIGGERS:
                    cursor.execute(statement)


def drop_index(connection) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP INDEX IF EXISTS origin_search_trgm")
        elif connection.vendor == "sqlite":
            for name in ("insert", "delete", "update"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {FTS}_{name}")
            cursor.execute(f"DROP TABLE IF EXISTS {FTS}")


def ensure_after_migrate(sender, *, using, **kwargs) -> None:
    from django.db import connections

    ensure_index(connections[using])
