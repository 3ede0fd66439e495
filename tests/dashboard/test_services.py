import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction

from dashboard import services
from dashboard.models import AuditEntry, User
from dashboard.requestinfo import RequestOrigin
from tests.factories import make_user

REQUEST_ORIGIN = RequestOrigin(source_ip="203.0.113.7", request_id="req-12345678")


@pytest.mark.django_db
def test_audit_record_keeps_who_what_where():
    admin = make_user(role=User.Role.ADMIN)
    entry = services.audit_record(
        action="user.role_changed",
        actor=admin,
        target_type="user",
        target_id="u-1",
        target_label="bob",
        details={"from": "viewer"},
        request_origin=REQUEST_ORIGIN,
    )
    entry.refresh_from_db()
    assert (entry.actor_email, entry.action, entry.target_label) == (admin.email, "user.role_changed", "bob")
    assert (entry.source_ip, entry.request_id, entry.details) == (
        "203.0.113.7",
        "req-12345678",
        {"from": "viewer"},
    )


@pytest.mark.django_db
def test_audit_record_refuses_an_unknown_action():
    with pytest.raises(ValueError, match="Unknown audit action"):
        services.audit_record(action="user.rolechanged")
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_audit_details_are_bounded():
    entry = services.audit_record(action="auth.refused", details={"reason": "x" * 50_000, "list": list(range(500))})
    assert len(entry.details["reason"]) <= 2001
    assert len(entry.details["list"]) == 100


@pytest.mark.django_db
def test_audit_entries_cannot_be_changed_or_deleted_through_the_app():
    entry = services.audit_record(action="auth.signed_in", actor_email="a@example.com")
    entry.action = "auth.signed_out"
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        entry.delete()
    with pytest.raises(TypeError):
        AuditEntry.objects.filter(pk=entry.pk).update(action="x")
    with pytest.raises(TypeError):
        AuditEntry.objects.filter(pk=entry.pk).delete()
    assert AuditEntry.objects.get(pk=entry.pk).action == "auth.signed_in"


@pytest.mark.django_db
def test_the_database_refuses_to_rewrite_audit_history():
    entry = services.audit_record(action="auth.signed_in", actor_email="a@example.com")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE dashboard_auditentry SET action = 'forged' WHERE id = %s", [entry.pk])
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DELETE FROM dashboard_auditentry WHERE id = %s", [entry.pk])
    assert AuditEntry.objects.get(pk=entry.pk).action == "auth.signed_in"


@pytest.mark.django_db
def test_first_admins_come_from_the_environment(settings):
    settings.GATEHOUSE_ADMIN_EMAILS = ["boss@example.com"]
    assert services.user_role_for_new_account(email="Boss@Example.com") == User.Role.ADMIN
    assert services.user_role_for_new_account(email="intern@example.com") == User.Role.VIEWER


@pytest.mark.django_db
def test_admin_changes_a_role_and_the_change_is_audited():
    admin = make_user(role=User.Role.ADMIN)
    bob = make_user()
    services.user_set_role(actor=admin, user=bob, role=User.Role.OPERATOR, request_origin=REQUEST_ORIGIN)
    bob.refresh_from_db()
    assert bob.role == User.Role.OPERATOR
    entry = AuditEntry.objects.get(action="user.role_changed")
    assert (entry.actor_email, entry.target_label, entry.details) == (
        admin.email,
        bob.email,
        {"from": "viewer", "to": "operator"},
    )


@pytest.mark.django_db
def test_setting_the_same_role_again_changes_and_audits_nothing():
    admin = make_user(role=User.Role.ADMIN)
    bob = make_user(role=User.Role.OPERATOR)
    services.user_set_role(actor=admin, user=bob, role=User.Role.OPERATOR, request_origin=REQUEST_ORIGIN)
    assert not AuditEntry.objects.filter(action="user.role_changed").exists()


@pytest.mark.django_db
def test_only_admins_change_roles():
    operator = make_user(role=User.Role.OPERATOR)
    bob = make_user()
    with pytest.raises(PermissionDenied):
        services.user_set_role(actor=operator, user=bob, role=User.Role.ADMIN, request_origin=REQUEST_ORIGIN)
    bob.refresh_from_db()
    assert bob.role == User.Role.VIEWER


@pytest.mark.django_db
def test_the_last_admin_cannot_be_demoted():
    admin = make_user(role=User.Role.ADMIN)
    with pytest.raises(ValidationError, match="at least one admin"):
        services.user_set_role(actor=admin, user=admin, role=User.Role.VIEWER, request_origin=REQUEST_ORIGIN)
    admin.refresh_from_db()
    assert admin.role == User.Role.ADMIN
    second = make_user(role=User.Role.ADMIN)
    services.user_set_role(actor=second, user=admin, role=User.Role.VIEWER, request_origin=REQUEST_ORIGIN)
    admin.refresh_from_db()
    assert admin.role == User.Role.VIEWER


@pytest.mark.django_db
def test_an_unknown_role_is_refused():
    admin = make_user(role=User.Role.ADMIN)
    bob = make_user()
    with pytest.raises(ValidationError):
        services.user_set_role(actor=admin, user=bob, role="owner", request_origin=REQUEST_ORIGIN)


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks; SQLite runs one write transaction at a time anyway")
    import threading

    from django.db import connections

    for attempt in range(10):
        User.objects.all().delete()
        ada, bob = make_user(role=User.Role.ADMIN), make_user(role=User.Role.ADMIN)
        barrier, errors = threading.Barrier(2), []

        def demote(actor, target, barrier=barrier, errors=errors):
            try:
                barrier.wait()
                services.user_set_role(actor=actor, user=target, role=User.Role.VIEWER, request_origin=REQUEST_ORIGIN)
            except (ValidationError, PermissionDenied) as exc:
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=demote, args=pair) for pair in ((ada, bob), (bob, ada))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert User.objects.filter(role=User.Role.ADMIN).count() == 1, f"attempt {attempt}"
        assert len(errors) == 1
        assert AuditEntry.objects.filter(action="user.role_changed").count() == attempt + 1


@pytest.mark.django_db
def test_an_admin_demoted_meanwhile_changes_no_role():
    ada, bob, cyd = make_user(role=User.Role.ADMIN), make_user(role=User.Role.ADMIN), make_user()
    stale_bob = User.objects.get(pk=bob.pk)
    services.user_set_role(actor=ada, user=bob, role=User.Role.VIEWER, request_origin=REQUEST_ORIGIN)
    with pytest.raises(PermissionDenied):
        services.user_set_role(actor=stale_bob, user=cyd, role=User.Role.ADMIN, request_origin=REQUEST_ORIGIN)
    cyd.refresh_from_db()
    assert cyd.role == User.Role.VIEWER


@pytest.mark.django_db
def test_audit_labels_lose_bidirectional_overrides_and_line_breaks():
    entry = services.audit_record(action="user.role_changed", target_label="prod\u202e-db\u2069\nforged: line")
    assert entry.target_label == "prod-dbforged: line"
