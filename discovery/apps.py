from django.apps import AppConfig


class DiscoveryConfig(AppConfig):
    name = "discovery"

    def ready(self):
        from django.db.models.signals import post_migrate

        from dashboard.audit_actions import register
        from discovery import search

        post_migrate.connect(search.ensure_after_migrate, sender=self)

        register(
            {
                "origin.reviewed": "Origin review changed",
                "application.created": "Application created",
                "application.origins_added": "Origins added to application",
                "application.protect_requested": "Access protection requested",
                "application.protected": "Application protected by Access",
                "application.protect_failed": "Access protection failed",
                "application.protect_retried": "Access protection retried",
                "application.renamed": "Application renamed",
                "application.origin_removed": "Origin removed from application",
                "application.unprotect_requested": "Access protection removal requested",
                "application.unprotected": "Application no longer behind Access",
                "application.deleted": "Application deleted",
            }
        )
