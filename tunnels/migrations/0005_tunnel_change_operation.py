"""Tunnel changes become operations of the shared engine (dashboard.operations): `state` is `status`, `error` is
`reason`, and each change has its step; a change already made gets its one step, done or failed as the change."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

_STEP_STATUS = {"pending": "pending", "succeeded": "done", "failed": "failed"}
_KIND_LABELS = {
    "tunnel_create": "Create tunnel",
    "hostname_add": "Add public hostname",
    "hostname_remove": "Remove public hostname",
    "route_add": "Add private route",
    "route_remove": "Remove private route",
    "tunnel_delete": "Delete tunnel",
    "connections_cleanup": "Clean up stale connections",
    "token_rotate": "Rotate token",
    "vnet_create": "Create virtual network",
    "vnet_rename": "Rename virtual network",
    "vnet_delete": "Delete virtual network",
}


def one_step_per_change(apps, schema_editor):
    TunnelChange = apps.get_model("tunnels", "TunnelChange")
    TunnelChangeStep = apps.get_model("tunnels", "TunnelChangeStep")
    for change in TunnelChange.objects.iterator():
        TunnelChangeStep.objects.create(
            run=change,
            position=1,
            key=change.kind,
            label=_KIND_LABELS.get(change.kind, change.kind),
            status=_STEP_STATUS.get(change.status, "pending"),
            attempts=0 if change.status == "pending" else 1,
            error=change.reason,
            started_at=None if change.status == "pending" else change.created_at,
            finished_at=change.finished_at,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("tunnels", "0004_push_events"),
    ]

    operations = [
        migrations.RenameField(model_name="tunnelchange", old_name="state", new_name="status"),
        migrations.RenameField(model_name="tunnelchange", old_name="error", new_name="reason"),
        migrations.AlterField(
            model_name="tunnelchange",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("running", "Running"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                ],
                default="pending",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="tunnelchange",
            name="reason",
            field=models.CharField(blank=True, max_length=1000),
        ),
        migrations.AddField(
            model_name="tunnelchange",
            name="actor_email",
            field=models.CharField(blank=True, max_length=254),
        ),
        migrations.AddField(
            model_name="tunnelchange",
            name="data",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="tunnelchange",
            name="lease_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="tunnelchange",
            name="started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="tunnelchange",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.CreateModel(
            name="TunnelChangeStep",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("position", models.PositiveSmallIntegerField()),
                ("key", models.CharField(max_length=32)),
                ("label", models.CharField(max_length=200)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Waiting"),
                            ("running", "Running"),
                            ("done", "Done"),
                            ("failed", "Failed"),
                        ],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("answers", models.JSONField(blank=True, default=list)),
                ("error", models.CharField(blank=True, max_length=1000)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="steps",
                        to="tunnels.tunnelchange",
                    ),
                ),
            ],
            options={
                "ordering": ["run", "position"],
                "constraints": [
                    models.UniqueConstraint(fields=("run", "position"), name="tunnels_change_step_position")
                ],
            },
        ),
        migrations.RunPython(one_step_per_change, migrations.RunPython.noop),
    ]
