from django.apps import AppConfig


class TunnelsConfig(AppConfig):
    name = "tunnels"

    def ready(self):
        from dashboard import audit_actions

        audit_actions.register(
            {
                "tunnel.created": "Tunnel created",
                "tunnel.hostname_added": "Public hostname added",
                "tunnel.hostname_removed": "Public hostname removed",
                "tunnel.route_added": "Private route added",
                "tunnel.route_removed": "Private route removed",
                "tunnel.change_failed": "Tunnel change failed",
                "tunnel.change_retried": "Tunnel change retried",
                "tunnel.deleted": "Tunnel deleted",
                "tunnel.connections_cleaned": "Stale tunnel connections removed",
                "tunnel.token_rotated": "Tunnel token rotated",
                "vnet.created": "Virtual network created",
                "vnet.renamed": "Virtual network renamed",
                "vnet.deleted": "Virtual network deleted",
            }
        )
        from tunnels.push import AUDIT_ACTIONS as PUSH_AUDIT_ACTIONS

        audit_actions.register(PUSH_AUDIT_ACTIONS)
