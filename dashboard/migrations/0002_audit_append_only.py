"""Make the audit log append-only in the database too, so nothing but a DBA can rewrite history.

UPDATE is refused on every engine. DELETE is refused on PostgreSQL; SQLite, the single-user embedded
default, keeps DELETE because Django's test flush empties tables with it (PostgreSQL's TRUNCATE does not fire
row triggers).
"""

from django.db import migrations

POSTGRES_UP = """
CREATE FUNCTION dashboard_auditentry_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER dashboard_auditentry_no_update BEFORE UPDATE OR DELETE ON dashboard_auditentry
    FOR EACH ROW EXECUTE FUNCTION dashboard_auditentry_append_only();
"""
POSTGRES_DOWN = """
DROP TRIGGER dashboard_auditentry_no_update ON dashboard_auditentry;
DROP FUNCTION dashboard_auditentry_append_only();
"""
SQLITE_UP = """
CREATE TRIGGER dashboard_auditentry_no_update BEFORE UPDATE ON dashboard_auditentry
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
"""
SQLITE_DOWN = "DROP TRIGGER dashboard_auditentry_no_update;"


def forwards(apps, schema_editor):
    sql = {"postgresql": POSTGRES_UP, "sqlite": SQLITE_UP}.get(schema_editor.connection.vendor)
    if sql:
        schema_editor.execute(sql)


def backwards(apps, schema_editor):
    sql = {"postgresql": POSTGRES_DOWN, "sqlite": SQLITE_DOWN}.get(schema_editor.connection.vendor)
    if sql:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
