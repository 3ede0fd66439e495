from django.db import migrations

# The catalogue sorts by last seen with never-seen origins last. SQLite orders NULLs first ascending, so its plain
# (last_seen, id) index already serves that order read backwards; PostgreSQL needs the index built in that order.
# Django's model state keeps the plain index of the same name.


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS origin_last_seen_id")
        schema_editor.execute(
            "CREATE INDEX origin_last_seen_id ON discovery_origin (last_seen DESC NULLS LAST, id DESC)"
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS origin_last_seen_id")
        schema_editor.execute("CREATE INDEX origin_last_seen_id ON discovery_origin (last_seen, id)")


class Migration(migrations.Migration):
    dependencies = [("discovery", "0002_accesspolicy_origin_search_text")]

    operations = [migrations.RunPython(forwards, backwards)]
