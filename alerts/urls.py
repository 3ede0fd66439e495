from django.urls import path

from alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.alert_list, name="alert_list"),
    path("channels/", views.channel_list, name="channel_list"),
    path("channels/create/", views.channel_create, name="channel_create"),
    path("channels/<uuid:channel_id>/delete/", views.channel_delete, name="channel_delete"),
    path("<uuid:alert_id>/acknowledge/", views.alert_acknowledge, name="alert_acknowledge"),
    path("<uuid:alert_id>/silence/", views.alert_silence, name="alert_silence"),
    path("deliveries/<uuid:delivery_id>/retry/", views.delivery_retry, name="delivery_retry"),
]
