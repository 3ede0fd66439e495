from django.urls import path

from tunnels import views

app_name = "tunnels"

urlpatterns = [
    path("", views.tunnel_list, name="tunnel_list"),
    path("new/", views.tunnel_new, name="tunnel_new"),
    path("create/", views.tunnel_create, name="tunnel_create"),
    path("routes/", views.route_list, name="route_list"),
    path("routes/<uuid:route_id>/remove/", views.route_remove, name="route_remove"),
    path("changes/<uuid:change_id>/", views.change_detail, name="change_detail"),
    path("changes/<uuid:change_id>/token/", views.change_token, name="change_token"),
    path("changes/<uuid:change_id>/retry/", views.change_retry, name="change_retry"),
    path("<uuid:tunnel_id>/", views.tunnel_detail, name="tunnel_detail"),
    path("<uuid:tunnel_id>/hostnames/add/", views.hostname_add, name="hostname_add"),
    path("<uuid:tunnel_id>/hostnames/remove/", views.hostname_remove, name="hostname_remove"),
    path("<uuid:tunnel_id>/routes/add/", views.route_add, name="route_add"),
    path("<uuid:tunnel_id>/delete/", views.tunnel_delete_confirm, name="tunnel_delete_confirm"),
    path("<uuid:tunnel_id>/delete/confirmed/", views.tunnel_delete, name="tunnel_delete"),
    path("<uuid:tunnel_id>/connections/cleanup/", views.connections_cleanup, name="connections_cleanup"),
    path("<uuid:tunnel_id>/token/", views.token_rotate_confirm, name="token_rotate_confirm"),
    path("<uuid:tunnel_id>/token/rotate/", views.token_rotate, name="token_rotate"),
    path("networks/", views.vnet_list, name="vnet_list"),
    path("networks/create/", views.vnet_create, name="vnet_create"),
    path("networks/<uuid:vnet_id>/rename/", views.vnet_rename, name="vnet_rename"),
    path("networks/<uuid:vnet_id>/delete/", views.vnet_delete_confirm, name="vnet_delete_confirm"),
    path("networks/<uuid:vnet_id>/delete/confirmed/", views.vnet_delete, name="vnet_delete"),
]
