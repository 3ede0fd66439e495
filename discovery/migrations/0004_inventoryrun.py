import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("discovery", "0003_last_seen_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="InventoryRun",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("regions", models.JSONField(blank=True, default=list)),
                ("origins", models.IntegerField(default=0)),
                ("warnings", models.JSONField(blank=True, default=list)),
            ],
            options={
                "ordering": ["-started_at", "-id"],
            },
        ),
    ]
