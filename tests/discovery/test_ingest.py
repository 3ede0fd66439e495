"""Logpush ingest against moto's S3, with objects the simulator's writer produces."""

import collections
import datetime as dt
import gzip
import json
import multiprocessing
import os
import signal
import time

import pytest
from django.db import connections
from django.utils import timezone

from cloudflare_sim.logpush import VALID, generate_records
from discovery import services
from discovery.logparse import read_lines
from discovery.models import IngestRun, LogObject, Origin, OriginDaily
from integrations import aws
from tests.discovery.conftest import BUCKET, END, PREFIX

URL = f"s3://{BUCKET}/{PREFIX}"


def expected_sessions(**options) -> collections.Counter:
    options.setdefault("hours", 2)
    options.setdefault("end", END)
    options.setdefault("seed", 5)
    options.setdefault("origins", 40)
    options.setdefault("users", 30)
    counts: collections.Counter = collections.Counter()
    for line in generate_records(**options):
        if line.kind == VALID:
            r = json.loads(line.data)
            counts[(r["VirtualNetworkID"], r["OriginIP"], r["OriginPort"], r["Protocol"])] += 1
    return counts


def ingested_sessions() -> collections.Counter:
    return collections.Counter(
        {(o.vnet_id, o.address, o.port, o.protocol): o.sessions for o in Origin.objects.filter(sessions__gt=0)}
    )


def put_lines(s3, key: str, lines: list[bytes]) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}", Body=gzip.compress(b"\n".join(lines) + b"\n"))


def test_every_valid_session_counts_once_and_every_refusal_is_counted_by_kind(db, logpush):
    summary = logpush(records=6000, malformed_share=0.02, public_share=0.03)

    run = services.logpush_ingest(url=URL)

    assert run.objects_done == summary.objects > 1
    assert run.records == summary.records
    assert run.accepted == summary.valid
    assert run.public == summary.public
    assert run.malformed + run.wrong_type + run.absurd == summary.malformed
    assert run.malformed > 0 and run.wrong_type > 0 and run.absurd > 0
    assert ingested_sessions() == expected_sessions(records=6000, malformed_share=0.02, public_share=0.03)
    assert run.finished_at is not None


def test_origins_carry_users_bytes_times_tunnel_close_reasons_and_daily_buckets(db, logpush):
    logpush(records=3000)
    services.logpush_ingest(url=URL)

    busiest = Origin.objects.order_by("-sessions").first()
    assert busiest.seen_in_traffic and not busiest.seen_in_inventory
    assert 0 < busiest.users <= 30
    assert sum(busiest.top_users.values()) <= busiest.sessions
    assert busiest.bytes_total > 0
    assert END - dt.timedelta(hours=3) < busiest.first_seen <= busiest.last_seen <= END
    assert len(busiest.tunnel_id) == 36
    assert sum(busiest.close_reasons.values()) == busiest.sessions
    days = OriginDaily.objects.filter(origin=busiest)
    assert sum(d.sessions for d in days) == busiest.sessions
    assert Origin.objects.filter(unreachable_sessions__gt=0).exists()


def test_a_second_pass_reads_nothing_and_changes_nothing(db, logpush):
    logpush(records=2000)
    services.logpush_ingest(url=URL)
    before = ingested_sessions()

    again = services.logpush_ingest(url=URL)

    assert again.objects_done == 0 and again.records == 0
    assert ingested_sessions() == before


def test_new_objects_are_added_to_what_earlier_passes_counted(db, logpush):
    logpush(records=1500, end=END - dt.timedelta(hours=2))
    services.logpush_ingest(url=URL)
    logpush(records=1500)
    services.logpush_ingest(url=URL)

    expected = expected_sessions(records=1500, end=END - dt.timedelta(hours=2)) + expected_sessions(records=1500)
    assert ingested_sessions() == expected


def test_gateway_network_records_are_read_with_their_own_field_names(db, logpush):
    summary = logpush(records=1500, dataset="gateway_network")
    run = services.logpush_ingest(url=URL)
    assert run.accepted == summary.valid > 0
    # Each session counts for the network, address, port and transport its own fields name (QUIC runs over UDP).
    transports = {"tcp": "TCP", "udp": "UDP", "quic": "UDP"}
    expected: collections.Counter = collections.Counter()
    written = generate_records(records=1500, hours=2, end=END, seed=5, origins=40, users=30, dataset="gateway_network")
    for line in written:
        if line.kind == VALID:
            r = json.loads(line.data)
            protocol = transports[r["TransportProtocol"]]
            expected[(r["VirtualNetworkID"], r["DestinationIP"], r["DestinationPort"], protocol)] += 1
    assert {protocol for *_, protocol in expected} == {"TCP", "UDP"}
    assert ingested_sessions() == expected


def _base_record(**changes) -> bytes:
    record = {
        "SessionStartTime": 1763640000000000000,
        "SessionEndTime": 1763640001000000000,
        "OriginIP": "10.1.2.3",
        "OriginPort": 5432,
        "Protocol": "TCP",
        "VirtualNetworkID": "3b1bd4e6-2a5e-4d53-9d3c-0e3e1d6b7a10",
        "DestinationTunnelID": "8f0cb2b4-6a2e-4b7a-9a57-4a4f4cb0c1de",
        "Email": "alice@example.com",
        "BytesSent": 100,
        "BytesReceived": 200,
        "ConnectionCloseReason": "CLIENT_CLOSED",
    }
    record.update(changes)
    return json.dumps(record).encode()


def test_hostile_and_broken_lines_are_refused_by_kind_and_the_good_one_counts():
    lines = [
        _base_record(),
        _base_record(Email="<script>alert(1)</script>"),
        _base_record(Email="a" * 300 + "@example.com"),
        _base_record(DeviceName="A" * 100_000),
        _base_record(OriginPort="5432"),
        _base_record(OriginPort=True),
        _base_record(OriginPort=70000),
        _base_record(OriginIP=167772161),
        _base_record(OriginIP="10.0.0.300"),
        _base_record(OriginIP="8.8.8.8"),
        _base_record(OriginIP="2606:4700::1111"),
        _base_record(BytesSent=10**20),
        _base_record(BytesSent=-1),
        _base_record(SessionEndTime="yesterday afternoon"),
        _base_record(SessionEndTime=[1]),
        _base_record(VirtualNetworkID="<img src=x onerror=alert(1)>"),
        _base_record(ConnectionCloseReason="<b>"),
        _base_record(Protocol="SCTP"),
        _base_record(ConnectionCloseReason=["x"]),
        _base_record(OriginIP=["10.0.0.1"]),
        b'{"OriginIP": "10.1.2.3", "OriginPort": 5',
        b"\xff\xfe not json",
        b"[1, 2, 3]",
        b"null",
    ]
    totals = read_lines(lines)
    assert totals.records == len(lines)
    assert totals.accepted == 1
    assert (totals.malformed, totals.public) == (4, 2)
    assert totals.wrong_type == 6
    assert totals.absurd == 11
    [(key, origin)] = totals.origins.items()
    assert key == ("3b1bd4e6-2a5e-4d53-9d3c-0e3e1d6b7a10", "10.1.2.3", 5432, "TCP")
    assert origin.users == {"alice@example.com": 1}


def test_a_gzip_object_that_is_not_gzip_is_counted_malformed_and_not_retried_for_ever(db, s3, logpush):
    logpush(records=200)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/20261120/broken.log.gz", Body=b"this is not gzip")
    run = services.logpush_ingest(url=URL)
    assert run.malformed >= 1
    assert not LogObject.objects.exclude(state=LogObject.State.DONE).exists()


def test_an_object_cut_short_counts_the_lines_before_the_break_and_the_break_as_one_malformed_line(db, s3):
    good = [_base_record(OriginPort=1000 + i) for i in range(2000)]
    whole = gzip.compress(b"\n".join(good) + b"\n")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/20261120/cut.log.gz", Body=whole[: len(whole) * 3 // 4])

    run = services.logpush_ingest(url=URL)

    assert run.malformed == 1 and run.objects_done == 1
    assert 0 < run.accepted < 2000 and run.records == run.accepted + 1
    assert Origin.objects.count() == run.accepted
    assert LogObject.objects.get().state == LogObject.State.DONE


def test_several_gzip_members_in_one_object_are_all_read(db, s3):
    s3.create_bucket(Bucket=BUCKET)
    body = gzip.compress(_base_record(OriginPort=1) + b"\n") + gzip.compress(_base_record(OriginPort=2) + b"\r\n")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/20261120/members.log.gz", Body=body)

    run = services.logpush_ingest(url=URL)

    assert (run.records, run.accepted) == (2, 2)
    assert sorted(Origin.objects.values_list("port", flat=True)) == [1, 2]


def test_a_line_longer_than_any_session_record_is_one_absurd_line_and_the_next_line_counts(db, s3):
    s3.create_bucket(Bucket=BUCKET)
    body = gzip.compress(b'{"OriginIP": "' + b"1" * 3_000_000 + b'"}\n' + _base_record() + b"\n")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/20261120/long.log.gz", Body=body)

    run = services.logpush_ingest(url=URL)

    assert (run.records, run.absurd, run.accepted) == (2, 1, 1)


def test_the_fast_path_and_the_reference_checks_agree_line_for_line():
    from discovery import logparse

    lines = [
        _base_record(),
        _base_record(SessionStartTime="2025-11-20T12:00:00Z", SessionEndTime="2025-11-20T12:00:01Z"),
        _base_record(SessionStartTime=1763640000, SessionEndTime=1763640001),
        _base_record(OriginPort=5432.0),
        _base_record(BytesSent=True),
        _base_record(Email=None),
        _base_record(Email="Alice@Example.com"),
        _base_record(ConnectionCloseReason=None),
    ]
    fast = logparse.read_lines(lines)
    batch = logparse.Batch()
    reader = logparse.Reader(batch)
    for line in lines:
        reader.add(line)
    batch._add(reader)
    reference = batch.finish()

    assert (fast.accepted, fast.wrong_type) == (reference.accepted, reference.wrong_type) == (6, 2)
    [(key, origin)] = fast.origins.items()
    [(same_key, same)] = reference.origins.items()
    assert key == same_key
    assert (origin.sessions, origin.bytes_total, origin.users, origin.close_reasons) == (
        same.sessions, same.bytes_total, same.users, same.close_reasons,
    )  # fmt: skip
    assert origin.users == {"alice@example.com": 5}


def test_a_batch_that_folds_its_groups_early_counts_the_same_as_one_that_does_not(monkeypatch):
    import io

    from discovery import logparse

    lines = [
        _base_record(Email=f"user{i % 37}@example.com", OriginPort=1000 + i % 5, SessionEndTime=1763640001000000000 + i)
        for i in range(3000)
    ]
    body = gzip.compress(b"\n".join(lines))

    def totals() -> logparse.ObjectTotals:
        batch = logparse.Batch()
        batch.read_gzip(io.BytesIO(body))
        return batch.finish()

    whole = totals()
    monkeypatch.setattr(logparse.Batch, "GROUP_LIMIT", 10)
    folded = totals()
    assert whole.accepted == folded.accepted == 3000
    assert whole.origins.keys() == folded.origins.keys()
    for key, origin in whole.origins.items():
        other = folded.origins[key]
        assert (origin.sessions, origin.bytes_total, origin.users, origin.first, origin.last) == (
            other.sessions, other.bytes_total, other.users, other.first, other.last,
        )  # fmt: skip
        assert {d: b[:2] for d, b in origin.days.items()} == {d: b[:2] for d, b in other.days.items()}


def test_ipv6_unique_local_and_rfc1918_are_private_and_other_space_is_public():
    totals = read_lines(
        [
            _base_record(OriginIP="fd10::5"),
            _base_record(OriginIP="172.31.255.1"),
            _base_record(OriginIP="172.32.0.1"),
            _base_record(OriginIP="100.64.0.1"),
            _base_record(OriginIP="127.0.0.1"),
        ]
    )
    assert totals.accepted == 2 and totals.public == 3


def test_only_one_of_two_claims_on_an_object_wins(db, s3, logpush):
    logpush(records=300)
    [obj] = next(aws.list_objects(BUCKET, PREFIX))[:1]
    first = services.log_object_claim(bucket=BUCKET, obj=obj)
    second = services.log_object_claim(bucket=BUCKET, obj=obj)
    assert first is not None and second is None


def test_a_claim_whose_lease_ran_out_is_taken_over_and_the_late_worker_applies_nothing(db, s3, logpush):
    logpush(records=300, hours=0.5)
    objects = [o for page in aws.list_objects(BUCKET, PREFIX) for o in page]
    obj = objects[0]
    stale = services.log_object_claim(bucket=BUCKET, obj=obj, lease_seconds=60)
    LogObject.objects.filter(pk=stale.log_object_id).update(lease_until=timezone.now() - dt.timedelta(seconds=1))
    run = IngestRun.objects.create(source=URL)

    taken_over = services.log_object_ingest(run_id=run.pk, bucket=BUCKET, obj=obj)
    sessions = ingested_sessions()
    with pytest.raises(services.ClaimLost):
        services.logpush._apply(claims=[(stale, 0, 0)], run_id=run.pk, totals=taken_over)

    assert taken_over is not None and taken_over.accepted > 0
    assert ingested_sessions() == sessions
    assert LogObject.objects.get(pk=stale.log_object_id).attempts == 2


def _ingest_in_child(url: str) -> None:
    services.logpush._child_start()
    services.logpush_ingest(url=url)
    os._exit(0)


@pytest.mark.django_db(transaction=True)
def test_two_ingesters_racing_over_the_same_bucket_count_every_object_once(logpush):
    logpush(records=8000, hours=3)
    connections.close_all()
    context = multiprocessing.get_context("fork")
    racers = [context.Process(target=_ingest_in_child, args=(URL,)) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)

    assert [r.exitcode for r in racers] == [0, 0]
    done = LogObject.objects.filter(state=LogObject.State.DONE)
    assert done.count() == LogObject.objects.count() > 1
    assert sum(r.objects_done for r in IngestRun.objects.all()) == done.count()
    assert ingested_sessions() == expected_sessions(records=8000, hours=3)


def _in_child(start, work, *args) -> None:
    services.logpush._child_start()
    start.wait(30)
    work(*args)
    os._exit(0)


def _apply(run_id: int, totals) -> None:
    services.logpush._apply(claims=[], run_id=run_id, totals=totals)


def _record_inventory(items, vnets) -> None:
    services.inventory_record(items=items, failed=set(), vnets=vnets)


def _side_by_side(*jobs) -> list[int | None]:
    """Run each (function, args) in a forked process of its own, all let go at the same moment; their exit codes."""
    connections.close_all()
    context = multiprocessing.get_context("fork")
    start = context.Barrier(len(jobs))
    workers = [context.Process(target=_in_child, args=(start, work, *args)) for work, args in jobs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join()
    return [worker.exitcode for worker in workers]


@pytest.mark.django_db(transaction=True)
def test_two_batches_bringing_the_same_new_origins_in_opposite_orders_both_land(logpush):
    # Two workers whose objects first name the same new origins in opposite orders, applying at the same moment:
    # neither may deadlock the other (Gateway logs name origins in whatever order sessions happen).
    run = IngestRun.objects.create(source=URL)
    for round_ in range(6):
        records = [_base_record(OriginIP=f"10.{round_}.{n // 250}.{n % 250 + 1}") for n in range(400)]
        batches = [read_lines(records), read_lines(list(reversed(records)))]

        assert _side_by_side(*[(_apply, (run.pk, totals)) for totals in batches]) == [0, 0], f"round {round_}"
        assert Origin.objects.filter(address__startswith=f"10.{round_}.", sessions=2).count() == 400


@pytest.mark.django_db(transaction=True)
def test_the_inventory_and_a_log_batch_bringing_the_same_new_origins_at_once_make_one_origin_of_each():
    # The first inventory pass and the first Logpush batches of a new install meet the same hosts at once.
    run = IngestRun.objects.create(source=URL)
    vnet = json.loads(_base_record())["VirtualNetworkID"]
    for round_ in range(4):
        addresses = [f"10.{round_}.{n // 250}.{n % 250 + 1}" for n in range(600)]
        # AWS lists hosts in an order of its own, unrelated to the order sessions name them in.
        totals = read_lines([_base_record(OriginIP=a) for a in addresses])
        items = [
            aws.InventoryItem(
                kind="ec2",
                resource_id=f"i-{n:08x}",
                region="eu-west-1",
                address=a,
                port=5432,
                protocol="TCP",
                vpc_id="vpc-1",
            )
            for n, a in reversed(list(enumerate(addresses)))
        ]

        exits = _side_by_side((_apply, (run.pk, totals)), (_record_inventory, (items, {"vpc-1": vnet})))

        assert exits == [0, 0], f"round {round_}"
        made = Origin.objects.filter(address__startswith=f"10.{round_}.")
        assert made.count() == 600
        assert set(made.values_list("vnet_id", "sessions", "seen_in_inventory").distinct()) == {(vnet, 1, True)}


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_half_way_through_a_file_leaves_nothing_and_the_next_reads_it_whole(logpush):
    # One window of 200,000 records: two objects that each take a worker a good while to read.
    logpush(records=200_000, hours=1 / 12, origins=40, users=30)
    connections.close_all()
    worker = multiprocessing.get_context("fork").Process(target=_ingest_in_child, args=(URL,))
    worker.start()
    deadline = time.monotonic() + 30
    while not LogObject.objects.filter(state=LogObject.State.CLAIMED).exists():
        assert time.monotonic() < deadline, "the worker never claimed an object"
        time.sleep(0.005)
    time.sleep(0.1)
    os.kill(worker.pid, signal.SIGKILL)
    worker.join()

    assert worker.exitcode == -signal.SIGKILL
    assert not LogObject.objects.filter(state=LogObject.State.DONE).exists()
    assert not Origin.objects.exists()

    # Before the lease runs out nobody else may read the object; after it, the next pass reads it whole.
    assert services.logpush_ingest(url=URL).objects_done == 1
    LogObject.objects.filter(state=LogObject.State.CLAIMED).update(lease_until=timezone.now())
    services.logpush_ingest(url=URL)
    assert ingested_sessions() == expected_sessions(records=200_000, hours=1 / 12, origins=40, users=30)


def test_the_beat_task_hands_each_object_to_exactly_one_of_several_tasks_and_the_run_finishes(db, logpush):
    from celery.signals import task_prerun

    from discovery import tasks

    summary = logpush(records=2000)
    handed: list[list[str]] = []

    def record(sender, args, **_):
        if sender.name == tasks.log_objects_ingest_task.name:
            handed.append([key for key, _, _ in args[2]])

    task_prerun.connect(record, weak=False)
    try:
        tasks.logpush_poll()
        tasks.logpush_poll()
    finally:
        task_prerun.disconnect(record)

    # Every object went to exactly one ingest task, the objects are spread over several tasks, and the second
    # poll, with nothing new to read, started none.
    assert sorted(key for keys in handed for key in keys) == sorted(summary.keys)
    assert len(handed) > 1 and all(handed)

    first, second = IngestRun.objects.order_by("id")
    assert (first.listed, first.objects_done, first.accepted) == (summary.objects, summary.objects, summary.valid)
    assert first.finished_at is not None
    assert (second.listed, second.objects_done) == (0, 0) and second.finished_at is not None


def test_the_command_prints_records_per_second(db, logpush):
    import io

    from django.core.management import call_command

    logpush(records=1000)
    out = io.StringIO()
    call_command("ingest_logpush", URL, "--processes", "1", stdout=out)
    assert "1,000 lines" in out.getvalue() and "records/s" in out.getvalue()


def test_a_value_that_only_a_trailing_newline_makes_look_valid_is_refused():
    lines = [
        _base_record(Email="alice@example.com\n"),
        _base_record(VirtualNetworkID="3b1bd4e6-2a5e-4d53-9d3c-0e3e1d6b7a10\n"),
        _base_record(ConnectionCloseReason="CLIENT_CLOSED\n"),
        _base_record(),
    ]
    totals = read_lines(lines)
    assert (totals.accepted, totals.absurd) == (1, 3)
    [origin] = totals.origins.values()
    assert origin.users == {"alice@example.com": 1}
