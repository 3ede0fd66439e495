from django.urls import path

from discovery import views

app_name = "discovery"

urlpatterns = [
    path("", views.origin_list, name="origin_list"),
    path("origins/bulk/", views.origin_bulk, name="origin_bulk"),
    path("origins/export.csv", views.origin_export, name="origin_export"),
    path("origins/<uuid:public_id>/", views.origin_detail, name="origin_detail"),
    path("origins/<uuid:public_id>/review/", views.origin_review, name="origin_review"),
    path("applications/", views.application_list, name="application_list"),
    path("applications/new/", views.application_create, name="application_create"),
    path("applications/<uuid:public_id>/", views.application_detail, name="application_detail"),
    path("applications/<uuid:public_id>/protect/", views.application_protect, name="application_protect"),
    path("applications/<uuid:public_id>/unprotect/", views.application_unprotect, name="application_unprotect"),
    path(
        "applications/<uuid:public_id>/protect/retry/",
        views.application_protect_retry,
        name="application_protect_retry",
    ),
    path("applications/<uuid:public_id>/rename/", views.application_rename, name="application_rename"),
    path("applications/<uuid:public_id>/delete/", views.application_delete, name="application_delete"),
    path(
        "applications/<uuid:public_id>/origins/<uuid:origin_id>/remove/",
        views.application_origin_remove,
        name="application_origin_remove",
    ),
    path("policies/refresh/", views.access_policies_refresh, name="access_policies_refresh"),
    path("ingest/", views.ingest_list, name="ingest_list"),
]
