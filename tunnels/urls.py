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
    path("<uuid:tunnel_id>/", views.tunnel_detail, name="tunnel_detail"),
    path("<uuid:tunnel_id>/hostnames/add/", views.hostname_add, name="hostname_add"),
    path("<uuid:tunnel_id>/hostnames/remove/", views.hostname_remove, name="hostname_remove"),
    path("<uuid:tunnel_id>/routes/add/", views.route_add, name="route_add"),
]
