from django.urls import path

from dashboard import views
from tunnels import push_views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("audit/", views.audit_list, name="audit_list"),
    path("audit/export.csv", views.audit_export, name="audit_export"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/users/<uuid:public_id>/role", views.user_role_update, name="user_role_update"),
    path("settings/push/connect", push_views.push_connect, name="push_connect"),
    path("settings/push/disconnect", push_views.push_disconnect, name="push_disconnect"),
    path("settings/push/changes/<uuid:public_id>/", push_views.push_change_detail, name="push_change_detail"),
    path("settings/push/changes/<uuid:public_id>/retry", push_views.push_change_retry, name="push_change_retry"),
    path("hooks/cloudflare/", push_views.push_webhook, name="push_webhook"),
]
