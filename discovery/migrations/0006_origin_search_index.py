"""A trigram index for the catalogue's free-text filter (discovery.search, discovery.models.SearchTextContains),
and search text that also holds each origin's address, virtual network and tunnel ids, so the filter is one
indexed lookup on both databases."""

from django.db import migrations


def _search_text(origin) -> str:
    # The historical model has no methods: the same words as Origin.compute_search_text.
    inventory = origin.inventory or {}
    words = [origin.address, origin.vnet_id, origin.tunnel_id, *(origin.hostnames or [])]
    words += [inventory.get("name", ""), inventory.get("id", "")]
    words += [f"{k}={v}" for k, v in (inventory.get("tags") or {}).items()]
    return " ".join(str(w).lower() for w in words if w)[:1000]


def forwards(apps, schema_editor):
    from discovery import search

    search.ensure_index(schema_editor.connection)
    Origin = apps.get_model("discovery", "Origin")
    batch = []
    for origin in Origin.objects.only("address", "vnet_id", "tunnel_id", "hostnames", "inventory").iterator(2000):
        origin.search_text = _search_text(origin)
        batch.append(origin)
        if len(batch) == 2000:
            Origin.objects.bulk_update(batch, ["search_text"])
            batch.clear()
    Origin.objects.bulk_update(batch, ["search_text"])


def backwards(apps, schema_editor):
    from discovery import search

    search.drop_index(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("discovery", "0005_application_access_app_ids")]

    operations = [migrations.RunPython(forwards, backwards)]
