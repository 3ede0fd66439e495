from django.db import migrations, models


def forwards(apps, schema_editor):
    Application = apps.get_model("discovery", "Application")
    for application in Application.objects.exclude(access_app_id=""):
        application.access_app_ids = [application.access_app_id]
        application.save(update_fields=["access_app_ids"])


def backwards(apps, schema_editor):
    Application = apps.get_model("discovery", "Application")
    for application in Application.objects.all():
        application.access_app_id = (application.access_app_ids or [""])[0]
        application.save(update_fields=["access_app_id"])


class Migration(migrations.Migration):
    dependencies = [
        ("discovery", "0004_inventoryrun"),
    ]

    operations = [
        migrations.AddField(
            model_name="application",
            name="access_app_ids",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(forwards, backwards),
        migrations.RemoveField(model_name="application", name="access_app_id"),
        migrations.AlterField(
            model_name="application",
            name="protection",
            field=models.CharField(
                choices=[
                    ("none", "Not protected"),
                    ("pending", "Applying to Access"),
                    ("protected", "Protected by Access"),
                    ("failed", "Protection failed"),
                    ("removing", "Removing from Access"),
                ],
                default="none",
                max_length=16,
            ),
        ),
    ]
