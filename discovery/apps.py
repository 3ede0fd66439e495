from django.apps import AppConfig


class DiscoveryConfig(AppConfig):
    name = "discovery"

    def ready(self):
        from dashboard.audit_actions import register

        register(
            {
                "origin.reviewed": "Origin review changed",
                "application.created": "Application created",
                "application.origins_added": "Origins added to application",
                "application.protect_requested": "Access protection requested",
                "application.protected": "Application protected by Access",
                "application.protect_failed": "Access protection failed",
                "application.renamed": "Application renamed",
                "application.origin_removed": "Origin removed from application",
                "application.unprotect_requested": "Access protection removal requested",
                "application.unprotected": "Application no longer behind Access",
                "application.deleted": "Application deleted",
            }
        )
