"""Logpush ingest: claiming objects, reading them (in a pool of processes when asked) and applying their totals to
the catalogue."""

import datetime as dt
import logging
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from django.db import connection, connections, transaction
from django.db.models import DateTimeField, F, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from alerts.services import alert_raise
from dashboard.leases import Renewal, lease_seconds
from dashboard.transactions import again_on_deadlock
from discovery import logparse, sketch
from discovery.models import (
    MAX_HOSTNAMES,
    MAX_TOP_USERS,
    IngestRun,
    LogObject,
    Origin,
    OriginDaily,
    ReviewState,
    ip_key,
)
from integrations import aws

log = logging.getLogger(__name__)

LEASE_SECONDS = 300


@dataclass(frozen=True)
class Claim:
    log_object_id: int
    token: uuid.UUID


class ClaimLost(Exception):
    """Another worker took the object over after our lease ran out; our reading is thrown away."""


def log_object_claim(*, bucket: str, obj: aws.S3Object, lease_seconds: int = LEASE_SECONDS) -> Claim | None:
    """Claim an object for reading, or None when it is done or another worker's lease on it is still running."""
    return log_objects_claim(bucket=bucket, objects=[obj], lease_seconds=lease_seconds).get((obj.key, obj.etag))


def log_objects_claim(
    *, bucket: str, objects: list[aws.S3Object], lease_seconds: int = LEASE_SECONDS
) -> dict[tuple[str, str], Claim]:
    """Claim a batch of objects at once (a few queries whatever its size): {(key, etag): claim} for those this
    worker got, one token for all of them. The others are done or under another worker's running lease."""
    if not objects:
        return {}
    LogObject.objects.bulk_create(
        [LogObject(bucket=bucket, key=o.key, etag=o.etag, size=o.size) for o in objects], ignore_conflicts=True
    )
    wanted = {(o.key, o.etag) for o in objects}
    rows = LogObject.objects.filter(bucket=bucket, key__in={o.key for o in objects}).values_list("pk", "key", "etag")
    ids = [pk for pk, key, etag in rows if (key, etag) in wanted]
    now = timezone.now()
    token = uuid.uuid4()
    # One conditional update: of two workers racing for an object, only one changes its row.
    LogObject.objects.filter(pk__in=ids).filter(
        Q(state=LogObject.State.PENDING) | Q(state=LogObject.State.CLAIMED, lease_until__lt=now)
    ).update(
        state=LogObject.State.CLAIMED,
        claim_token=token,
        lease_until=now + dt.timedelta(seconds=lease_seconds),
        attempts=F("attempts") + 1,
    )
    mine = LogObject.objects.filter(pk__in=ids, claim_token=token).values_list("pk", "key", "etag")
    return {(key, etag): Claim(pk, token) for pk, key, etag in mine}


def _read(bucket: str, obj: aws.S3Object, batch: logparse.Batch) -> logparse.ObjectTotals:
    """Read one object into the batch; its counts."""
    body = aws.open_object(bucket, obj.key, obj.etag)
    try:
        return batch.read_gzip(body)
    except logparse.BrokenObject as broken:
        # A broken gzip stream is the object's fault: what was read of it counts, and the break counts as one
        # malformed line, rather than retrying it forever.
        log.warning("logpush object s3://%s/%s is not whole gzip", bucket, obj.key)
        return broken.counts
    finally:
        body.close()


def log_objects_ingest(
    *, run_id: int, bucket: str, objects: list[aws.S3Object], lease_seconds: int = LEASE_SECONDS
) -> logparse.ObjectTotals | None:
    """Read a batch of objects and apply them, each exactly once. None when there was nothing for this worker.

    Everything the objects add is applied in the same transaction that marks them done, and only while this
    worker's claims are the current ones: a worker that dies half-way leaves nothing behind, and the next one to
    claim an object (after the lease) reads it again from the start. Applying a batch at once costs the database
    one pass over the origins the batch touched instead of one per object.
    """
    claims = log_objects_claim(bucket=bucket, objects=objects, lease_seconds=lease_seconds)
    claimed = [(obj, claims[(obj.key, obj.etag)]) for obj in objects if (obj.key, obj.etag) in claims]
    if not claimed:
        return None
    batch = logparse.Batch()
    done = []
    try:
        for obj, claim in claimed:
            counts = _read(bucket, obj, batch)
            done.append((claim, counts.records, counts.accepted))
        totals = batch.finish()
        again_on_deadlock(lambda: _apply(claims=done, run_id=run_id, totals=totals), what="a Logpush batch")
    except ClaimLost:
        log.warning("a logpush object of s3://%s was taken over by another worker; the batch is dropped", bucket)
        _release([claim for _, claim in claimed])
        return None
    except BaseException:
        _release([claim for _, claim in claimed])
        raise
    return totals


def log_object_ingest(
    *, run_id: int, bucket: str, obj: aws.S3Object, lease_seconds: int = LEASE_SECONDS
) -> logparse.ObjectTotals | None:
    return log_objects_ingest(run_id=run_id, bucket=bucket, objects=[obj], lease_seconds=lease_seconds)


def _release(claims: list[Claim]) -> None:
    """Give back claims a failed attempt still holds, so the next pass need not wait for their leases."""
    for claim in claims:
        LogObject.objects.filter(pk=claim.log_object_id, state=LogObject.State.CLAIMED, claim_token=claim.token).update(
            state=LogObject.State.PENDING, claim_token=None, lease_until=None
        )


def _apply(*, claims: list[tuple[Claim, int, int]], run_id: int, totals: logparse.ObjectTotals) -> None:
    now = timezone.now()
    with transaction.atomic():
        for claim, records, accepted in claims:
            marked = LogObject.objects.filter(
                pk=claim.log_object_id, state=LogObject.State.CLAIMED, claim_token=claim.token
            ).update(
                state=LogObject.State.DONE,
                done_at=now,
                run_id=run_id,
                records=records,
                accepted=accepted,
                claim_token=None,
                lease_until=None,
            )
            if marked != 1:
                raise ClaimLost
        if totals.origins:
            _apply_origins(totals, now)
        IngestRun.objects.filter(pk=run_id).update(
            objects_done=F("objects_done") + len(claims),
            records=F("records") + totals.records,
            accepted=F("accepted") + totals.accepted,
            malformed=F("malformed") + totals.malformed,
            wrong_type=F("wrong_type") + totals.wrong_type,
            absurd=F("absurd") + totals.absurd,
            public=F("public") + totals.public,
        )


def _update_rows(model, rows: list, fields: list[str]) -> None:
    """UPDATE each row by id with one prepared statement (bulk_update's CASE expressions grow with the batch)."""
    if not rows:
        return
    meta = model._meta
    concrete = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in concrete)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
    params = [[f.get_db_prep_save(getattr(row, f.attname), connection) for f in concrete] + [row.pk] for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _when(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _top(current: dict[str, int], new: dict[str, int]) -> dict[str, int]:
    """The busiest users so far. Users who never made the top of any one object are not counted back in, so
    counts are exact for the clear leaders and a lower bound for the rest."""
    merged = dict(current)
    for email, count in new.items():
        merged[email] = merged.get(email, 0) + count
    best = sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:MAX_TOP_USERS]
    return dict(best)


def _locked_origins(keys) -> dict[tuple, Origin]:
    addresses = sorted({key[1] for key in keys})
    rows = Origin.objects.select_for_update().filter(address__in=addresses).order_by("id")
    return {(o.vnet_id, o.address, o.port, o.protocol): o for o in rows}


def _apply_origins(totals: logparse.ObjectTotals, now: dt.datetime) -> None:
    keys = list(totals.origins)
    existing = _locked_origins(keys)
    # An inventory entry of unknown virtual network becomes the traffic's origin instead of a twin of it.
    for vnet, address, port, protocol in keys:
        if (vnet, address, port, protocol) in existing:
            continue
        unplaced = existing.get(("", address, port, protocol))
        if unplaced is not None and vnet:
            Origin.objects.filter(pk=unplaced.pk).update(vnet_id=vnet)
            del existing[("", address, port, protocol)]
            unplaced.vnet_id = vnet
            existing[(vnet, address, port, protocol)] = unplaced
    # New origins go in in one order for every worker: two batches inserting the same new origins in the orders
    # their logs first named them would each wait on a row the other inserted, and PostgreSQL aborts one.
    missing = sorted(key for key in keys if key not in existing)
    if missing:
        Origin.objects.bulk_create(
            [
                Origin(vnet_id=v, address=a, ip_key=ip_key(a), port=p, protocol=pr, first_seen=now, last_seen=now)
                for v, a, p, pr in missing
            ],
            ignore_conflicts=True,
        )
        existing = _locked_origins(keys)

    changed = []
    for key, agg in totals.origins.items():
        origin = existing[key]
        origin.seen_in_traffic = True
        origin.sessions += agg.sessions
        origin.bytes_total += agg.bytes_total
        origin.unreachable_sessions += agg.unreachable
        origin.user_sketch = sketch.merge(origin.user_sketch, agg.user_sketch)
        origin.users = sketch.estimate(origin.user_sketch)
        origin.top_users = _top(origin.top_users, agg.users)
        if agg.hostnames:
            origin.hostnames = sorted(set(origin.hostnames) | agg.hostnames)[:MAX_HOSTNAMES]
        for reason, count in agg.close_reasons.items():
            if reason in origin.close_reasons or len(origin.close_reasons) < 16:
                origin.close_reasons[reason] = origin.close_reasons.get(reason, 0) + count
        if agg.tunnel_id:
            origin.tunnel_id = agg.tunnel_id
        origin.search_text = origin.compute_search_text()
        first, last = _when(agg.first), _when(agg.last)
        is_new = origin.sessions == agg.sessions
        if is_new or origin.first_seen is None or first < origin.first_seen:
            origin.first_seen = first
        if is_new or origin.last_seen is None or last > origin.last_seen:
            origin.last_seen = last
        if (
            origin.review_state == ReviewState.UNAPPROVED
            and origin.traffic_while_unapproved_at is None
            and origin.reviewed_at is not None
            and last > origin.reviewed_at
        ):
            origin.traffic_while_unapproved_at = now
            _alert_unapproved_traffic(origin)
        changed.append(origin)
    _update_rows(
        Origin,
        changed,
        [
            "vnet_id",
            "seen_in_traffic",
            "sessions",
            "bytes_total",
            "unreachable_sessions",
            "user_sketch",
            "users",
            "top_users",
            "hostnames",
            "close_reasons",
            "tunnel_id",
            "first_seen",
            "last_seen",
            "traffic_while_unapproved_at",
            "search_text",
        ],
    )
    _apply_days(totals, existing)


def _apply_days(totals: logparse.ObjectTotals, origins: dict[tuple, Origin]) -> None:
    wanted: dict[tuple[int, dt.date], list] = {}
    for key, agg in totals.origins.items():
        origin_id = origins[key].pk
        for day_number, day in agg.days.items():
            wanted[(origin_id, dt.date(1970, 1, 1) + dt.timedelta(days=day_number))] = day
    OriginDaily.objects.bulk_create(
        [OriginDaily(origin_id=o, day=d) for o, d in sorted(wanted)], ignore_conflicts=True, batch_size=500
    )
    rows = (
        OriginDaily.objects.select_for_update()
        .filter(origin_id__in={o for o, _ in wanted}, day__in={d for _, d in wanted})
        .order_by("id")
    )
    changed = []
    # The same users come back day after day and origin after origin: each is hashed once per batch.
    hashes: dict[str, int] = {}
    for row in rows:
        bucket = wanted.get((row.origin_id, row.day))
        if bucket is None:
            continue
        sessions, size, users = bucket
        row.sessions += sessions
        row.bytes_total += size
        row.user_sketch = sketch.merge(row.user_sketch, [_user_hash(hashes, u) for u in users])
        row.users = sketch.estimate(row.user_sketch)
        changed.append(row)
    _update_rows(OriginDaily, changed, ["sessions", "bytes_total", "user_sketch", "users"])


def _user_hash(hashes: dict[str, int], email: str) -> int:
    value = hashes.get(email)
    if value is None:
        value = hashes[email] = sketch.user_hash(email)
    return value


def _alert_key(origin: Origin) -> str:
    return f"discovery-unapproved-traffic:{origin.public_id}"


def _alert_unapproved_traffic(origin: Origin) -> None:
    alert_raise(
        kind="discovery.unapproved_traffic",
        subject=f"Unapproved origin {origin.label} still receives traffic",
        body="Sessions reached this origin after it was unapproved. Block it at its route, or review it again.",
        target_type="origin",
        target_id=str(origin.public_id),
        target_label=origin.label,
        dedupe_key=_alert_key(origin),
    )


def pending_objects(*, bucket: str, page: list[aws.S3Object]) -> list[aws.S3Object]:
    """The objects of one listing page that are not done yet (one query per page)."""
    done = set(
        LogObject.objects.filter(bucket=bucket, key__in=[o.key for o in page], state=LogObject.State.DONE).values_list(
            "key", "etag"
        )
    )
    return [o for o in page if (o.key, o.etag) not in done]


def ingest_run_start(*, source: str) -> IngestRun:
    """A new pass over the bucket, leased by the process that lists it."""
    return IngestRun.objects.create(
        source=source[:500], lease_until=timezone.now() + dt.timedelta(seconds=lease_seconds())
    )


def ingest_run_renewal(*, run_id: int) -> Renewal:
    """Keeps the pass leased while this process works on it. Several tasks work on one pass, so a renewal only
    ever moves the lease later."""

    def renew(until: dt.datetime) -> bool:
        later = Greatest(Coalesce("lease_until", Value(until)), Value(until), output_field=DateTimeField())
        IngestRun.objects.filter(pk=run_id, finished_at__isnull=True).update(lease_until=later)
        return True

    return Renewal(renew)


def ingest_run_batches_sent(*, run_id: int) -> None:
    """The pass's batches wait in the queue: they have as long as their objects' claims would last to start."""
    until = timezone.now() + dt.timedelta(seconds=LEASE_SECONDS)
    IngestRun.objects.filter(pk=run_id, finished_at__isnull=True).update(lease_until=until)


def ingest_run_failed(*, run_id: int, exc: BaseException) -> None:
    """The pass stops here, saying why; the objects it did not apply are left for the next pass."""
    if isinstance(exc, aws.AwsError):
        reason = f"AWS failed: {str(exc)[:200]}"
    else:
        reason = f"Gatehouse could not finish this pass ({type(exc).__name__}); the worker's log says why."
    IngestRun.objects.filter(pk=run_id, finished_at__isnull=True).update(
        error=reason[:300], finished_at=timezone.now(), lease_until=None
    )


def ingest_run_listed(*, run_id: int, count: int) -> None:
    IngestRun.objects.filter(pk=run_id).update(listed=F("listed") + count)


def ingest_run_skipped(*, run_id: int, count: int) -> None:
    """Objects the run listed were done by someone else meanwhile: the run no longer waits for them."""
    if count:
        IngestRun.objects.filter(pk=run_id).update(listed=F("listed") - count)


def ingest_run_finish_if_done(*, run_id: int) -> None:
    now = timezone.now()
    run = IngestRun.objects.filter(pk=run_id, finished_at__isnull=True).first()
    if run is not None and run.objects_done >= run.listed:
        IngestRun.objects.filter(pk=run_id, finished_at__isnull=True).update(
            finished_at=now, seconds=(now - run.started_at).total_seconds(), lease_until=None
        )


BATCH_OBJECTS = 96
BATCH_BYTES = 64 * 1024 * 1024


def batches_of(objects: list[aws.S3Object], processes: int) -> list[list[aws.S3Object]]:
    """Consecutive objects in batches: big enough to save database work (each batch costs one pass over the
    origins it touched), of about equal compressed size, three per process so that every process stays busy to
    the end, and small enough (in objects and bytes) that a batch's aggregates stay small."""
    total = sum(o.size for o in objects)
    # A little slack, so that rounding leaves no small batch at the end.
    batch_bytes = max(1, min(BATCH_BYTES, total * 21 // (20 * max(1, processes) * 3)))
    batches: list[list[aws.S3Object]] = []
    size = 0
    for obj in objects:
        if not batches or len(batches[-1]) >= BATCH_OBJECTS or (batches[-1] and size + obj.size > batch_bytes):
            batches.append([])
            size = 0
        batches[-1].append(obj)
        size += obj.size
    return batches


def _ingest_in_child(run_id: int, bucket: str, objects: list[aws.S3Object]) -> bool:
    return log_objects_ingest(run_id=run_id, bucket=bucket, objects=objects) is not None


def _child_start() -> None:
    # Connections inherited through fork belong to the parent; each worker process opens its own.
    for conn in connections.all(initialized_only=True):
        conn.connection = None
    aws.forget_clients()


def logpush_ingest(*, url: str, processes: int = 1) -> IngestRun:
    """One pass over the bucket: every object not yet done is read and applied.

    With processes > 1 objects are read in parallel by forked worker processes; each still claims its object,
    so this pass can run beside Celery workers or another pass without counting anything twice.
    """
    bucket, prefix = aws.parse_s3_url(url)
    run = ingest_run_start(source=url)
    began = time.monotonic()
    pool = None
    if processes > 1:
        import multiprocessing

        connections.close_all()
        pool = ProcessPoolExecutor(
            max_workers=processes, mp_context=multiprocessing.get_context("fork"), initializer=_child_start
        )
        # Fork every reader now, before this process starts the thread that renews the pass's lease.
        pool.submit(int).result()
    try:
        with ingest_run_renewal(run_id=run.pk):
            for page in aws.list_objects(bucket, prefix):
                todo = pending_objects(bucket=bucket, page=page)
                ingest_run_listed(run_id=run.pk, count=len(todo))
                batches = batches_of(todo, processes)
                if pool is None or len(batches) <= 1:
                    for batch in batches:
                        log_objects_ingest(run_id=run.pk, bucket=bucket, objects=batch)
                    continue
                list(pool.map(_ingest_in_child, [run.pk] * len(batches), [bucket] * len(batches), batches))
    except aws.AwsError as exc:
        IngestRun.objects.filter(pk=run.pk).update(error=str(exc)[:300])
    except BaseException as exc:
        ingest_run_failed(run_id=run.pk, exc=exc)
        raise
    finally:
        if pool is not None:
            pool.shutdown()
    IngestRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(), seconds=round(time.monotonic() - began, 3), lease_until=None
    )
    run.refresh_from_db()
    return run
