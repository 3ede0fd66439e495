"""A transaction PostgreSQL aborts to break a deadlock is run again; nothing else is."""

import logging
import threading

import pytest
from django.db import OperationalError, connection, connections, transaction

from dashboard.models import User
from dashboard.transactions import again_on_deadlock
from tests.factories import make_user


def _needs_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's deadlock detection; SQLite runs one write transaction at a time")


def _lock_in_turn(first: int, second: int, meet: threading.Barrier, attempts: list[str], name: str) -> None:
    with transaction.atomic():
        attempts.append(name)
        list(User.objects.select_for_update().filter(pk=first))
        if attempts.count(name) == 1:
            # Only the first attempts meet: each holds one row and then asks for the other's.
            meet.wait(10)
        list(User.objects.select_for_update().filter(pk=second))
        User.objects.filter(pk=first).update(first_name=f"{name} was here")


def _cross(work, ada: User, bob: User) -> tuple[list[str], list[Exception]]:
    meet, attempts, errors = threading.Barrier(2), [], []

    def run(first, second, name):
        try:
            work(lambda: _lock_in_turn(first.pk, second.pk, meet, attempts, name), name)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=args) for args in ((ada, bob, "ada"), (bob, ada, "bob"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return attempts, errors


@pytest.mark.django_db(transaction=True)
def test_the_transaction_chosen_to_break_a_deadlock_is_run_again_and_both_land(caplog):
    _needs_postgresql()
    ada, bob = make_user(), make_user()

    with caplog.at_level(logging.WARNING, logger="dashboard.transactions"):
        attempts, errors = _cross(lambda work, name: again_on_deadlock(work, what=f"{name}'s change"), ada, bob)

    assert errors == []
    assert sorted(attempts) in (["ada", "ada", "bob"], ["ada", "bob", "bob"])
    assert set(User.objects.filter(pk__in=[ada.pk, bob.pk]).values_list("first_name", flat=True)) == {
        "ada was here",
        "bob was here",
    }
    assert "chosen to break a deadlock" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_inside_a_callers_transaction_is_not_run_again():
    _needs_postgresql()
    ada, bob = make_user(), make_user()

    def inside_a_transaction(work, name):
        with transaction.atomic():
            again_on_deadlock(work, what=f"{name}'s change")

    attempts, errors = _cross(inside_a_transaction, ada, bob)

    # The aborted transaction is the caller's to run again: repeating only the inner part would act in a
    # transaction PostgreSQL has already rolled back.
    assert len(attempts) == 2
    assert len(errors) == 1 and isinstance(errors[0], OperationalError)
