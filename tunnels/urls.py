from django.urls import path

from tunnels import views

app_name = "tunnels"

urlpatterns = [
    path("", views.tunnel_list, name="tunnel_list"),
]
