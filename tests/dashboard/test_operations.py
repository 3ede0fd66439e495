import threading

import pytest
from django.db import connection, connections

from dashboard.operations import SubjectBusy, retry_countdown


def test_retry_countdown_doubles_from_the_first_wait_up_to_the_cap():
    waits = [retry_countdown(retries=n, retry_after=None, first=1.0, cap=10.0) for n in range(6)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_countdown_waits_as_long_as_cloudflare_asks_when_that_is_longer():
    assert retry_countdown(retries=0, retry_after=30.0, cap=10.0) == 30.0
    assert retry_countdown(retries=3, retry_after=2.0, first=4.0) == 32.0


@pytest.mark.django_db(transaction=True)
def test_requests_racing_for_one_subject_leave_one_run_and_a_clear_refusal(operator):
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent writers; SQLite runs one write transaction at a time")
    from datetime import date

    from vendors import services
    from vendors.models import Vendor, WorkflowRun

    for round_ in range(5):
        vendor = Vendor.objects.create(
            name=f"Racer {round_}", sponsor=operator, contacts=["a@racer.example"], review_due=date(2030, 1, 1)
        )
        meet, refusals = threading.Barrier(4), []

        def ask(vendor=vendor, meet=meet, refusals=refusals):
            try:
                meet.wait(10)
                services.run_start(
                    vendor=vendor, kind=WorkflowRun.Kind.CHANGE, actor=None, request_origin=None, enqueue=False
                )
            except SubjectBusy as exc:
                refusals.append(exc.messages)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert WorkflowRun.objects.filter(vendor=vendor).count() == 1
        assert refusals == [["Another workflow is running for this vendor; wait for it to finish."]] * 3
