from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0002_audit_append_only")]

    operations = [
        migrations.AlterModelOptions(
            name="auditentry",
            options={"ordering": ["-at", "-id"], "verbose_name_plural": "audit entries"},
        ),
        migrations.RemoveIndex(model_name="auditentry", name="audit_at"),
        migrations.RemoveIndex(model_name="auditentry", name="audit_actor_id"),
        migrations.RemoveIndex(model_name="auditentry", name="audit_action_id"),
        migrations.RemoveIndex(model_name="auditentry", name="audit_target_id"),
        migrations.RemoveIndex(model_name="auditentry", name="audit_target_label"),
        migrations.AddIndex(model_name="auditentry", index=models.Index(fields=["at", "id"], name="audit_at_id")),
        migrations.AddIndex(
            model_name="auditentry", index=models.Index(fields=["actor_email", "at", "id"], name="audit_actor_at_id")
        ),
        migrations.AddIndex(
            model_name="auditentry", index=models.Index(fields=["action", "at", "id"], name="audit_action_at_id")
        ),
        migrations.AddIndex(
            model_name="auditentry", index=models.Index(fields=["target_id", "at", "id"], name="audit_target_at_id")
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(fields=["target_label", "at", "id"], name="audit_label_at_id"),
        ),
    ]
