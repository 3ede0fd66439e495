from django.urls import reverse

from alerts.models import Alert, Channel, Delivery


def test_admin_adds_a_webhook_channel(admin_client, db):
    response = admin_client.post(
        reverse("alerts:channel_create"), {"name": "ops", "kind": "webhook", "target": "https://hooks.example.com/x"}
    )
    assert response.status_code == 302
    assert Channel.objects.get().name == "ops"


def test_invalid_target_is_shown_next_to_the_field(admin_client, db):
    response = admin_client.post(
        reverse("alerts:channel_create"), {"name": "ops", "kind": "webhook", "target": "ftp://x.example.com"}
    )
    assert response.status_code == 400
    assert "Give an http:// or https:// URL." in response.content.decode()
    assert not Channel.objects.exists()


def test_viewers_see_channel_names_but_not_targets(viewer_client, db):
    Channel.objects.create(name="ops", kind="webhook", target="https://hooks.example.com/secret-path")
    body = viewer_client.get(reverse("alerts:channel_list")).content.decode()
    assert "ops" in body and "secret-path" not in body


def test_failed_deliveries_are_listed_with_their_error(viewer_client, db):
    channel = Channel.objects.create(name="ops", kind="webhook", target="https://hooks.example.com/x")
    alert = Alert.objects.create(kind="tunnel.down", subject="Tunnel x is down")
    Delivery.objects.create(alert=alert, channel=channel, event="raised", state="failed", last_error="HTTP 502")
    body = viewer_client.get(reverse("alerts:alert_list")).content.decode()
    assert "Deliveries not sent" in body and "HTTP 502" in body


def test_alert_list_htmx_gets_the_table_only(viewer_client, db, htmx_headers):
    Alert.objects.create(kind="tunnel.down", subject="Tunnel <b>x</b> is down")
    body = viewer_client.get(reverse("alerts:alert_list"), {"state": "open"}, headers=htmx_headers).content.decode()
    assert body.lstrip().startswith('<div id="alert-table"')
    assert "&lt;b&gt;x&lt;/b&gt;" in body
