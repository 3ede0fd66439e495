from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Gatehouse"

    def ready(self):
        from dashboard import receivers  # noqa: F401  (connects the sign-in and sign-out receivers)
