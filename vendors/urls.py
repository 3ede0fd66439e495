from django.urls import path

from vendors import views

app_name = "vendors"

urlpatterns = [
    path("", views.vendor_list, name="vendor_list"),
    path("new/", views.vendor_new, name="vendor_new"),
    path("create/", views.vendor_create, name="vendor_create"),
    path("applications/", views.application_list, name="application_list"),
    path("applications/refresh/", views.apps_refresh, name="apps_refresh"),
    path("settings/", views.settings_update, name="settings_update"),
    path("revoke/", views.vendors_revoke, name="vendors_revoke"),
    path("revoke/confirm/", views.vendors_revoke_confirm, name="vendors_revoke_confirm"),
    path("adopt/", views.adopt_list, name="adopt_list"),
    path("adopt/<uuid:policy_id>/", views.adopt_confirm, name="adopt_confirm"),
    path("adopt/<uuid:policy_id>/create/", views.adopt_create, name="adopt_create"),
    path("<uuid:public_id>/", views.vendor_detail, name="vendor_detail"),
    path("<uuid:public_id>/archive/", views.vendor_archive, name="vendor_archive"),
    path("<uuid:public_id>/drift/check/", views.drift_check, name="drift_check"),
    path("<uuid:public_id>/drift/reapply/", views.drift_reapply, name="drift_reapply"),
    path("<uuid:public_id>/edit/", views.vendor_edit, name="vendor_edit"),
    path("<uuid:public_id>/update/", views.vendor_update, name="vendor_update"),
    path("<uuid:public_id>/revoke/", views.vendor_revoke, name="vendor_revoke"),
    path("<uuid:public_id>/revoke/confirm/", views.vendor_revoke_confirm, name="vendor_revoke_confirm"),
    path("runs/<uuid:public_id>/", views.run_detail, name="run_detail"),
    path("runs/<uuid:public_id>/retry/", views.run_retry, name="run_retry"),
    path("grants/<uuid:public_id>/extend/", views.grant_extend, name="grant_extend"),
    path("grants/<uuid:public_id>/update/", views.grant_update, name="grant_update"),
    path("grants/<uuid:public_id>/end/", views.grant_end, name="grant_end"),
    path("grants/<uuid:public_id>/end/confirm/", views.grant_end_confirm, name="grant_end_confirm"),
    path("tokens/<uuid:public_id>/secret/", views.token_reveal, name="token_reveal"),
    path("tokens/<uuid:public_id>/rotate/", views.token_rotate, name="token_rotate"),
    path("tokens/<uuid:public_id>/refresh/", views.token_refresh, name="token_refresh"),
    path("tokens/changes/<uuid:public_id>/", views.token_change_detail, name="token_change_detail"),
    path("tokens/changes/<uuid:public_id>/retry/", views.token_change_retry, name="token_change_retry"),
]
