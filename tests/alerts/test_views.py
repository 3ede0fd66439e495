import pytest
from django.urls import reverse

from alerts.models import Alert, Channel, Delivery
from dashboard.models import AuditEntry


def test_admin_adds_a_slack_channel(admin_client, db):
    response = admin_client.post(
        reverse("alerts:channel_create"), {"name": "ops", "kind": "slack", "target": "https://hooks.slack.com/x"}
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


def test_webhook_signing_secret_is_shown_once_on_the_answer_to_the_create(admin_client, db):
    response = admin_client.post(
        reverse("alerts:channel_create"), {"name": "ops", "kind": "webhook", "target": "https://hooks.example.com/x"}
    )
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.content.decode()
    secret = body.split("<code>whsec_", 1)[1].split("</code>", 1)[0]
    assert len(secret) >= 40
    assert secret not in admin_client.get(reverse("alerts:channel_list")).content.decode()


def test_channel_to_cloud_metadata_is_refused_with_a_message(admin_client, db):
    response = admin_client.post(
        reverse("alerts:channel_create"),
        {"name": "meta", "kind": "webhook", "target": "http://169.254.169.254/latest/meta-data/"},
    )
    assert response.status_code == 400
    assert "is a link-local address" in response.content.decode()
    assert not Channel.objects.exists()


def test_operator_acknowledges_and_silences_an_alert(operator_client, db):
    alert = Alert.objects.create(kind="tunnel.down", subject="Tunnel x is down")
    response = operator_client.post(reverse("alerts:alert_acknowledge", args=[alert.public_id]), {"state": "open"})
    assert response.status_code == 302 and response["Location"] == reverse("alerts:alert_list") + "?state=open"
    response = operator_client.post(reverse("alerts:alert_silence", args=[alert.public_id]), {"hours": "24"})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None and alert.is_silenced()
    assert AuditEntry.objects.filter(action__in=["alert.acknowledged", "alert.silenced"]).count() == 2
    body = operator_client.get(reverse("alerts:alert_list")).content.decode()
    assert "Acknowledged" in body and "Silenced until" in body


def test_silence_with_an_unoffered_duration_changes_nothing(operator_client, db):
    alert = Alert.objects.create(kind="tunnel.down", subject="Tunnel x is down")
    response = operator_client.post(reverse("alerts:alert_silence", args=[alert.public_id]), {"hours": "9999"})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.silenced_until is None and not AuditEntry.objects.filter(action__startswith="alert.").exists()


def test_viewers_see_no_acknowledge_or_silence_buttons(viewer_client, db):
    Alert.objects.create(kind="tunnel.down", subject="Tunnel x is down")
    body = viewer_client.get(reverse("alerts:alert_list")).content.decode()
    assert "Acknowledge" not in body and "Silence" not in body


def test_top_navigation_counts_open_alerts_nobody_acknowledged(viewer_client, db):
    Alert.objects.create(kind="tunnel.down", subject="a")
    Alert.objects.create(kind="tunnel.down", subject="b")
    Alert.objects.create(kind="tunnel.down", subject="c", state="resolved")
    Alert.objects.create(kind="tunnel.down", subject="d", acknowledged_at="2026-01-01T00:00Z")
    body = viewer_client.get(reverse("dashboard:home")).content.decode()
    nav = body.split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
    assert 'Alerts <span class="badge badge-red" title="Open alerts nobody has acknowledged">2</span>' in nav


@pytest.mark.parametrize("target", ["http://☃.com/", "http://xn--zz.com/", "https://xn--n3h.com/hook"])
@pytest.mark.parametrize("kind", ["slack", "webhook"])
def test_a_host_name_that_is_not_valid_idna_is_a_form_error(admin_client, db, kind, target):
    response = admin_client.post(reverse("alerts:channel_create"), {"name": "ops", "kind": kind, "target": target})
    assert response.status_code == 400, f"{target} answered {response.status_code}"
    assert "is not a valid host name" in response.content.decode()
    assert not Channel.objects.exists()


@pytest.mark.parametrize("page", ["999999999999999999999", "9223372036854775807", "0", "-3", "x", "1e9"])
def test_alert_list_answers_any_page_number(viewer_client, db, page):
    Alert.objects.create(kind="k", subject="Tunnel t1 is down")
    response = viewer_client.get(reverse("alerts:alert_list"), {"page": page, "state": "open"})
    assert response.status_code == 200, f"page={page} answered {response.status_code}"


def test_a_broken_page_number_leads_to_the_first_page_of_the_same_filter(viewer_client, db):
    Alert.objects.create(kind="k", subject="Tunnel t1 is down")
    Alert.objects.create(kind="k", subject="Tunnel t2 was down", state=Alert.State.RESOLVED)
    response = viewer_client.get(reverse("alerts:alert_list"), {"page": "999999999999999999999", "state": "open"})
    text = response.content.decode()
    assert "Tunnel t1 is down" in text and "Tunnel t2 was down" not in text
