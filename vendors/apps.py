from django.apps import AppConfig


class VendorsConfig(AppConfig):
    name = "vendors"

    def ready(self):
        from dashboard.audit_actions import register

        register(
            {
                "vendor.created": "Vendor created",
                "vendor.changed": "Vendor changed",
                "vendor.revoke_requested": "Vendor revocation requested",
                "vendor.suspended": "Vendor suspended",
                "vendor.grant_extended": "Vendor grant extended",
                "vendor.grants_expired": "Vendor grants expired",
                "vendor.review_overdue": "Vendor review overdue",
                "vendor.token_secret_shown": "Service-token secret shown",
                "vendor.settings_changed": "Vendor settings changed",
                "vendor.workflow_started": "Vendor workflow started",
                "vendor.workflow_step_done": "Vendor workflow step done",
                "vendor.workflow_succeeded": "Vendor workflow succeeded",
                "vendor.workflow_failed": "Vendor workflow stopped",
                "vendor.workflow_needs_attention": "Vendor workflow needs attention",
                "vendor.workflow_retried": "Vendor workflow retried",
            }
        )
        register(
            {
                "vendor.grant_changed": "Vendor grant changed",
                "vendor.grant_ended": "Vendor grant ended",
                "vendor.grants_started": "Vendor grants started",
                "vendor.bulk_revoke_requested": "Several vendors revoked at once",
            }
        )
        register(
            {
                "vendor.adopted": "Vendor adopted from Cloudflare",
                "vendor.token_rotated": "Service token rotated",
                "vendor.token_refreshed": "Service token refreshed",
                "vendor.token_change_failed": "Service token change stopped",
                "vendor.token_change_retried": "Service token change retried",
                "vendor.archived": "Vendor archived",
                "vendor.drift_found": "Vendor changed at Cloudflare outside Gatehouse",
                "vendor.drift_cleared": "Vendor matches Cloudflare again",
                "vendor.drift_checked": "Vendor read back from Cloudflare",
                "vendor.drift_reapplied": "Vendor re-applied at Cloudflare",
            }
        )
