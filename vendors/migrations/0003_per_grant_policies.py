from django.db import migrations, models


def copy_policy_ids_to_grants(apps, schema_editor):
    # Until now one pair of policies served every grant of a vendor; each active grant starts out served by it.
    Vendor = apps.get_model("vendors", "Vendor")
    Grant = apps.get_model("vendors", "Grant")
    for vendor in Vendor.objects.exclude(cf_policy_id="", cf_service_policy_id=""):
        Grant.objects.filter(vendor=vendor, status="active").update(
            cf_policy_id=vendor.cf_policy_id, cf_service_policy_id=vendor.cf_service_policy_id
        )


class Migration(migrations.Migration):
    dependencies = [
        ("vendors", "0002_service_auth_and_inline_policies"),
    ]

    operations = [
        migrations.AddField(
            model_name="grant",
            name="cf_policy_id",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="grant",
            name="cf_service_policy_id",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="grant",
            name="ended_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(copy_policy_ids_to_grants, migrations.RunPython.noop),
        migrations.RemoveField(model_name="vendor", name="cf_policy_id"),
        migrations.RemoveField(model_name="vendor", name="cf_service_policy_id"),
        migrations.AlterField(
            model_name="grant",
            name="status",
            field=models.CharField(
                choices=[
                    ("scheduled", "Starts later"),
                    ("active", "Active"),
                    ("expired", "Expired"),
                    ("ended", "Ended"),
                    ("revoked", "Revoked"),
                ],
                default="active",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="workflowrun",
            name="kind",
            field=models.CharField(
                choices=[
                    ("onboard", "Onboard"),
                    ("change", "Apply changes"),
                    ("expire", "Expire grants"),
                    ("end_grant", "End a grant"),
                    ("suspend", "Suspend"),
                    ("revoke", "Revoke"),
                ],
                max_length=16,
            ),
        ),
    ]
