from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"

    def ready(self):
        from dashboard import audit_actions

        audit_actions.register(
            {
                "alert_channel.created": "Alert channel added",
                "alert_channel.deleted": "Alert channel removed",
                "alert_delivery.retried": "Alert delivery retried",
                "alert.acknowledged": "Alert acknowledged",
                "alert.silenced": "Alert silenced",
                "alert.unsilenced": "Alert silence lifted",
            }
        )
