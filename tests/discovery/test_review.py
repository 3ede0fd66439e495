"""Review states, enforced in services, audited, and the alert condition for unapproved origins."""

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from alerts.models import Alert
from dashboard.models import AuditEntry
from dashboard.requestinfo import RequestOrigin
from discovery import services
from discovery.models import ReviewEvent, ReviewState
from tests.discovery.conftest import BUCKET, END, PREFIX

R = RequestOrigin(source_ip="192.0.2.7", request_id="req-12345678")


@pytest.fixture
def app(operator):
    return services.application_create(actor=operator, name="Video", owner="av-team", request_origin=R)


def _review(operator, origin, decision, reason=""):
    return services.origin_review(actor=operator, origins=[origin], decision=decision, reason=reason, request_origin=R)


def test_joining_an_application_puts_an_unreviewed_origin_in_review_and_audits_it(operator, app, make_origin):
    o = make_origin()
    assert services.application_add_origins(actor=operator, application=app, origins=[o], request_origin=R) == 1
    o.refresh_from_db()
    assert o.review_state == ReviewState.IN_REVIEW
    event = ReviewEvent.objects.get(origin=o)
    assert (event.from_state, event.to_state, event.actor_email) == ("unreviewed", "in_review", operator.email)
    entry = AuditEntry.objects.filter(action="origin.reviewed").get()
    assert entry.target_id == str(o.public_id) and entry.source_ip == "192.0.2.7"
    assert entry.details["reason"] == "joined application Video"
    assert AuditEntry.objects.filter(action="application.origins_added").exists()


@pytest.mark.parametrize(("decision", "state"), [("approve", "approved"), ("unapprove", "unapproved")])
def test_any_origin_can_be_approved_or_unapproved_directly_with_its_reason(operator, make_origin, decision, state):
    o = make_origin()
    _review(operator, o, decision, "owner confirmed on the phone")
    o.refresh_from_db()
    assert o.review_state == state and o.application is None
    event = ReviewEvent.objects.get(origin=o)
    assert (event.from_state, event.to_state, event.reason) == ("unreviewed", state, "owner confirmed on the phone")
    entry = AuditEntry.objects.get(action="origin.reviewed")
    assert entry.details == {"from": "unreviewed", "to": state, "reason": "owner confirmed on the phone"}


def test_starting_a_review_puts_an_unreviewed_origin_in_review_and_nothing_else(operator, make_origin):
    o = make_origin()
    _review(operator, o, "start_review")
    o.refresh_from_db()
    assert o.review_state == ReviewState.IN_REVIEW
    with pytest.raises(ValidationError):
        _review(operator, o, "start_review")
    assert ReviewEvent.objects.filter(origin=o).count() == 1


def test_an_unreviewed_origin_cannot_be_reopened(operator, make_origin):
    o = make_origin()
    with pytest.raises(ValidationError):
        _review(operator, o, "reopen", "because")
    o.refresh_from_db()
    assert o.review_state == ReviewState.UNREVIEWED
    assert not ReviewEvent.objects.exists()


def test_each_state_offers_the_decisions_that_apply_to_it():
    assert services.review_decisions("unreviewed") == ["approve", "unapprove", "start_review"]
    assert services.review_decisions("in_review") == ["approve", "unapprove"]
    assert services.review_decisions("approved") == ["unapprove", "reopen"]
    assert services.review_decisions("unapproved") == ["approve", "reopen"]


def test_the_whole_cycle_in_review_approved_unapproved_reopened(operator, app, make_origin):
    o = make_origin()
    services.application_add_origins(actor=operator, application=app, origins=[o], request_origin=R)
    _review(operator, o, "approve", "owner confirmed")
    _review(operator, o, "unapprove", "left the company's scope")
    _review(operator, o, "reopen", "owner asked again")
    o.refresh_from_db()
    assert o.review_state == ReviewState.IN_REVIEW
    steps = [(e.from_state, e.to_state, e.reason) for e in ReviewEvent.objects.filter(origin=o).order_by("id")]
    assert steps == [
        ("unreviewed", "in_review", "joined application Video"),
        ("in_review", "approved", "owner confirmed"),
        ("approved", "unapproved", "left the company's scope"),
        ("unapproved", "in_review", "owner asked again"),
    ]
    assert AuditEntry.objects.filter(action="origin.reviewed").count() == 4


def test_unapproving_needs_a_reason(operator, app, make_origin):
    o = make_origin()
    services.application_add_origins(actor=operator, application=app, origins=[o], request_origin=R)
    with pytest.raises(ValidationError, match="Say why"):
        _review(operator, o, "unapprove", "   ")


def test_viewers_cannot_review_even_by_calling_the_service(viewer, make_origin):
    with pytest.raises(PermissionDenied):
        services.origin_review(actor=viewer, origins=[make_origin()], decision="approve", reason="", request_origin=R)


def test_traffic_to_an_unapproved_origin_is_flagged_by_the_next_ingest(operator, app, logpush):
    logpush(records=1500, end=END - dt.timedelta(hours=3))
    services.logpush_ingest(url=f"s3://{BUCKET}/{PREFIX}")
    from discovery.models import Origin

    o = Origin.objects.order_by("-sessions").first()
    services.application_add_origins(actor=operator, application=app, origins=[o], request_origin=R)
    _review(operator, o, "unapprove", "nobody owns it")
    # The decision was taken before the sessions that follow.
    Origin.objects.filter(pk=o.pk).update(reviewed_at=END - dt.timedelta(hours=2, minutes=30))

    logpush(records=1500)
    services.logpush_ingest(url=f"s3://{BUCKET}/{PREFIX}")

    o.refresh_from_db()
    assert o.traffic_while_unapproved_at is not None
    assert o.traffic_while_unapproved_at <= timezone.now()
    alert = Alert.objects.get(kind="discovery.unapproved_traffic")
    assert (alert.state, alert.target_id) == (Alert.State.OPEN, str(o.public_id))

    _review(operator, o, "reopen", "looking again")
    o.refresh_from_db()
    assert o.traffic_while_unapproved_at is None
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED


def test_approved_origins_receiving_traffic_are_not_flagged(operator, app, logpush):
    logpush(records=800, end=END - dt.timedelta(hours=3))
    services.logpush_ingest(url=f"s3://{BUCKET}/{PREFIX}")
    from discovery.models import Origin

    o = Origin.objects.order_by("-sessions").first()
    services.application_add_origins(actor=operator, application=app, origins=[o], request_origin=R)
    _review(operator, o, "approve", "fine")
    logpush(records=800)
    services.logpush_ingest(url=f"s3://{BUCKET}/{PREFIX}")
    o.refresh_from_db()
    assert o.traffic_while_unapproved_at is None
    assert not Alert.objects.exists()
