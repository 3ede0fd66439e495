"""Writes for discovery: Logpush ingest, the AWS inventory, review decisions, applications and their protection."""

import datetime as dt
import logging
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from alerts.services import alert_raise, alert_resolve
from dashboard.models import User
from dashboard.requestinfo import Origin as RequestOrigin
from dashboard.services import audit_record
from discovery import logparse, sketch
from discovery.models import (
    MAX_HOSTNAMES,
    MAX_TOP_USERS,
    AccessPolicy,
    Application,
    IngestRun,
    InventoryRun,
    LogObject,
    Origin,
    OriginDaily,
    Protocol,
    ReviewEvent,
    ReviewState,
    ip_key,
)
from integrations import aws

log = logging.getLogger(__name__)

LEASE_SECONDS = 300

# ---------------------------------------------------------------------------------------------------------
# Logpush ingest


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
        _apply(claims=done, run_id=run_id, totals=totals)
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
    missing = [key for key in keys if key not in existing]
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
        for day_number, bucket in agg.days.items():
            wanted[(origin_id, dt.date(1970, 1, 1) + dt.timedelta(days=day_number))] = bucket
    OriginDaily.objects.bulk_create(
        [OriginDaily(origin_id=o, day=d) for o, d in wanted], ignore_conflicts=True, batch_size=500
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
            finished_at=now, seconds=(now - run.started_at).total_seconds()
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
    run = IngestRun.objects.create(source=url[:500])
    began = time.monotonic()
    pool = None
    try:
        for page in aws.list_objects(bucket, prefix):
            todo = pending_objects(bucket=bucket, page=page)
            ingest_run_listed(run_id=run.pk, count=len(todo))
            batches = batches_of(todo, processes)
            if processes <= 1 or len(batches) <= 1:
                for batch in batches:
                    log_objects_ingest(run_id=run.pk, bucket=bucket, objects=batch)
                continue
            if pool is None:
                import multiprocessing

                connections.close_all()
                pool = ProcessPoolExecutor(
                    max_workers=processes, mp_context=multiprocessing.get_context("fork"), initializer=_child_start
                )
            list(pool.map(_ingest_in_child, [run.pk] * len(batches), [bucket] * len(batches), batches))
    except aws.AwsError as exc:
        IngestRun.objects.filter(pk=run.pk).update(error=str(exc)[:300])
    finally:
        if pool is not None:
            pool.shutdown()
    IngestRun.objects.filter(pk=run.pk).update(finished_at=timezone.now(), seconds=round(time.monotonic() - began, 3))
    run.refresh_from_db()
    return run


# ---------------------------------------------------------------------------------------------------------
# AWS inventory


def vpc_virtual_networks(vpcs: dict[str, list[str]]) -> dict[str, str]:
    """Each VPC's virtual network: the one whose private routes cover the most of the VPC's address blocks.
    A VPC no route reaches, or that two networks cover alike (overlapping address spaces), gets none."""
    import ipaddress

    from tunnels.models import Route

    routes: dict[str, list] = {}
    for network, vnet in Route.objects.filter(
        virtual_network__isnull=False, virtual_network__deleted_at__isnull=True
    ).values_list("network", "virtual_network__cf_id"):
        try:
            routes.setdefault(str(vnet), []).append(ipaddress.ip_network(network, strict=False))
        except ValueError:
            continue
    found = {}
    for vpc, blocks in vpcs.items():
        coverage: dict[str, int] = {}
        for block in blocks:
            try:
                cidr = ipaddress.ip_network(block, strict=False)
            except ValueError:
                continue
            for vnet, networks in routes.items():
                # Where a route and the block overlap, the smaller of the two is what they share.
                shared = [
                    min(n, cidr, key=lambda x: x.num_addresses)
                    for n in networks
                    if n.version == cidr.version and n.overlaps(cidr)
                ]
                coverage[vnet] = coverage.get(vnet, 0) + sum(
                    n.num_addresses for n in ipaddress.collapse_addresses(shared)
                )
        ranked = sorted(coverage.values(), reverse=True)
        if ranked and ranked[0] > 0 and (len(ranked) == 1 or ranked[0] > ranked[1]):
            found[vpc] = max(coverage, key=coverage.__getitem__)
    return found


def inventory_record(*, items: list[aws.InventoryItem], failed: set[tuple[str, str]], vnets: dict[str, str]) -> int:
    """Record what the inventory found as origins, keyed like traffic: (virtual network of the VPC, IP, port,
    protocol). The origins it no longer lists lose the inventory mark, except those of a (region, kind) that
    could not be read this time, which keep what an earlier pass found."""
    now = timezone.now()
    seen: set[int] = set()
    with transaction.atomic():
        for item in items:
            address = item.address.lower()[:253]
            if not address or not 0 <= item.port <= 65535 or item.protocol not in Protocol.values:
                continue
            vnet = vnets.get(item.vpc_id, "")
            details = {
                "kind": item.kind,
                "id": item.resource_id[:300],
                "region": item.region[:32],
                "name": item.name[:200],
                "tags": dict(list(item.tags.items())[:50]),
                "vpc_id": item.vpc_id[:64],
                "interface_id": item.interface_id[:64],
            }
            key = {"address": address, "port": item.port, "protocol": item.protocol}
            rows = Origin.objects.select_for_update()
            # Without a known network, the origin of that address in any network (traffic's, if it has been seen)
            # is the one; with one, the origin in that network, or one an earlier pass could not yet place.
            matches = list(rows.filter(vnet_id=vnet, **key)) if vnet else list(rows.filter(**key))
            if vnet and not matches:
                matches = list(rows.filter(vnet_id="", **key))
                for origin in matches:
                    origin.vnet_id = vnet
            if not matches:
                matches = [Origin.objects.create(vnet_id=vnet, ip_key=ip_key(address), **key)]
            for origin in matches:
                origin.seen_in_inventory = True
                origin.inventory = details
                origin.inventory_seen_at = now
                origin.search_text = origin.compute_search_text()
                origin.save(
                    update_fields=["vnet_id", "seen_in_inventory", "inventory", "inventory_seen_at", "search_text"]
                )
                seen.add(origin.pk)
        gone = Origin.objects.filter(seen_in_inventory=True).exclude(pk__in=seen)
        for region, kind in failed:
            gone = gone.exclude(inventory__region=region, inventory__kind=kind)
        gone.update(seen_in_inventory=False)
    return len(seen)


def inventory_discover(*, regions: list[str]) -> InventoryRun:
    """One inventory pass over the regions; each kind of resource AWS refuses or fails to list becomes a warning
    on the run, and every other kind is recorded."""
    run = InventoryRun.objects.create(regions=regions[:50])
    items: list[aws.InventoryItem] = []
    failures: list[aws.InventoryFailure] = []
    vpcs: dict[str, list[str]] = {}
    for region in regions:
        result = aws.inventory(region)
        items.extend(result.items)
        failures.extend(result.failures)
        vpcs.update(result.vpcs)
    for failure in failures:
        log.warning("AWS inventory: %s in %s failed: %s", failure.action, failure.region, failure.error)
    run.origins = inventory_record(
        items=items, failed={(f.region, f.kind) for f in failures}, vnets=vpc_virtual_networks(vpcs)
    )
    run.warnings = [
        {"region": f.region, "kind": f.kind, "action": f.action, "error": f.error}
        for f in failures[: InventoryRun.MAX_WARNINGS]
    ]
    run.finished_at = timezone.now()
    run.save(update_fields=["origins", "warnings", "finished_at"])
    return run


# ---------------------------------------------------------------------------------------------------------
# Review


_DECISIONS = {
    # decision -> (states it may be taken from, state it leads to). Any origin can be approved or unapproved
    # directly; putting origins into an application is a way to review many together, not a step before it.
    "approve": ({ReviewState.UNREVIEWED, ReviewState.IN_REVIEW, ReviewState.UNAPPROVED}, ReviewState.APPROVED),
    "unapprove": ({ReviewState.UNREVIEWED, ReviewState.IN_REVIEW, ReviewState.APPROVED}, ReviewState.UNAPPROVED),
    "start_review": ({ReviewState.UNREVIEWED}, ReviewState.IN_REVIEW),
    "reopen": ({ReviewState.APPROVED, ReviewState.UNAPPROVED}, ReviewState.IN_REVIEW),
}
DECISIONS = tuple(_DECISIONS)
DECISION_LABELS = {"approve": "approve", "unapprove": "unapprove", "start_review": "start review", "reopen": "reopen"}


def review_decisions(state: str) -> list[str]:
    """The decisions that can be taken on an origin in this review state."""
    return [decision for decision, (allowed, _) in _DECISIONS.items() if state in allowed]


def _transition(
    *, origin: Origin, to: ReviewState, actor: User | None, reason: str, request: RequestOrigin, now: dt.datetime
) -> None:
    previous = origin.review_state
    origin.review_state = to
    origin.reviewed_at = now
    if origin.traffic_while_unapproved_at is not None:
        origin.traffic_while_unapproved_at = None
        alert_resolve(dedupe_key=_alert_key(origin), body=f"The origin is now {to.label.lower()}.")
    ReviewEvent.objects.create(
        origin=origin, at=now, actor_email=actor.email if actor else "", from_state=previous, to_state=to,
        reason=reason,
    )  # fmt: skip
    audit_record(
        action="origin.reviewed",
        actor=actor,
        target_type="origin",
        target_id=str(origin.public_id),
        target_label=origin.label,
        details={"from": previous, "to": to.value, "reason": reason},
        origin=request,
    )


def origin_review(
    *, actor: User, origins: list[Origin], decision: str, reason: str, request: RequestOrigin
) -> list[Origin]:
    """Approve, unapprove, start reviewing or reopen origins, each recorded with its reason. Unapproving needs
    a reason."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators review origins.")
    if decision not in _DECISIONS:
        raise ValidationError({"decision": f"{decision!r} is not a review decision."})
    reason = reason.strip()
    if len(reason) > 500:
        raise ValidationError({"reason": "Keep the reason under 500 characters."})
    if decision == "unapprove" and not reason:
        raise ValidationError({"reason": "Say why the origin is unapproved."})
    allowed, to = _DECISIONS[decision]
    now = timezone.now()
    with transaction.atomic():
        rows = list(Origin.objects.select_for_update().filter(pk__in=[o.pk for o in origins]).order_by("id"))
        wrong = [o for o in rows if o.review_state not in allowed]
        if wrong:
            names = ", ".join(o.label for o in wrong[:5])
            states = " or ".join(ReviewState(s).label.lower() for s in allowed)
            raise ValidationError(f"Only {states} origins can be {to.label.lower()}: {names}.")
        for origin in rows:
            _transition(origin=origin, to=to, actor=actor, reason=reason, request=request, now=now)
        Origin.objects.bulk_update(rows, ["review_state", "reviewed_at", "traffic_while_unapproved_at"])
        _access_sync_after_review(rows, request)
    return rows


# ---------------------------------------------------------------------------------------------------------
# Applications


def application_create(*, actor: User, name: str, owner: str, request: RequestOrigin) -> Application:
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators create applications.")
    application = Application(name=name.strip(), owner=owner.strip(), created_by=actor.email)
    application.full_clean()
    with transaction.atomic():
        application.save()
        audit_record(
            action="application.created",
            actor=actor,
            target_type="application",
            target_id=str(application.public_id),
            target_label=application.name,
            details={"owner": application.owner},
            origin=request,
        )
    return application


def application_add_origins(
    *, actor: User, application: Application, origins: list[Origin], request: RequestOrigin
) -> int:
    """Put origins into an application; unreviewed ones go into review. Returns how many joined."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators change applications.")
    now = timezone.now()
    with transaction.atomic():
        rows = list(Origin.objects.select_for_update().filter(pk__in=[o.pk for o in origins]).order_by("id"))
        joined = [o for o in rows if o.application_id != application.pk]
        for origin in joined:
            origin.application = application
            if origin.review_state == ReviewState.UNREVIEWED:
                _transition(
                    origin=origin,
                    to=ReviewState.IN_REVIEW,
                    actor=actor,
                    reason=f"joined application {application.name}",
                    request=request,
                    now=now,
                )
        Origin.objects.bulk_update(
            joined, ["application", "review_state", "reviewed_at", "traffic_while_unapproved_at"]
        )
        if any(o.review_state == ReviewState.APPROVED for o in joined):
            _access_sync_request([application], request)
        if joined:
            audit_record(
                action="application.origins_added",
                actor=actor,
                target_type="application",
                target_id=str(application.public_id),
                target_label=application.name,
                details={"origins": [o.label for o in joined[:100]], "count": len(joined)},
                origin=request,
            )
    return len(joined)


def access_destinations(origins: list[Origin]) -> list[dict]:
    """The application's origins as Access private destinations: address, port, protocol, virtual network."""
    destinations = []
    for origin in origins:
        dest: dict = {"type": "private"}
        if origin.ip_key:
            dest["cidr"] = f"{origin.address}/{128 if ':' in origin.address else 32}"
        else:
            dest["hostname"] = origin.address
        if origin.protocol in (Protocol.TCP, Protocol.UDP) and origin.port:
            dest["port_range"] = str(origin.port)
            dest["l4_protocol"] = origin.protocol.lower()
        if origin.vnet_id:
            dest["vnet_id"] = origin.vnet_id
        destinations.append(dest)
    return destinations


def access_parts(origins: list[Origin]) -> list[list[dict]]:
    """The origins' destinations in parts of at most the number Cloudflare takes on one Access application, in
    origin order, so that an origin added later lands in the last part and the others stay where they are."""
    from integrations import cloudflare as cf

    destinations = access_destinations(origins)
    size = cf.ACCESS_APP_MAX_DESTINATIONS
    return [destinations[i : i + size] for i in range(0, len(destinations), size)]


def _not_approved(application: Application) -> list[Origin]:
    return list(application.origins.exclude(review_state=ReviewState.APPROVED).order_by("id"))


def application_protect(
    *, actor: User, application: Application, policy_id: str, policy_name: str, request: RequestOrigin
) -> list[Origin]:
    """Ask for Access applications in front of the application's approved origins; a task creates them.

    Returns the origins left out because they are not approved, for the caller to name.
    """
    from discovery import tasks

    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators protect applications.")
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        if application.protection not in (Application.Protection.NONE, Application.Protection.FAILED):
            raise ValidationError("This application is already protected, or a change to Access is in progress.")
        if not application.origins.exists():
            raise ValidationError("Add origins to the application first.")
        left_out = _not_approved(application)
        if not application.origins.filter(review_state=ReviewState.APPROVED).exists():
            names = ", ".join(o.label for o in left_out[:10])
            raise ValidationError(f"Only approved origins are put behind Access, and none of these is: {names}.")
        application.protection = Application.Protection.PENDING
        application.policy_id = policy_id
        application.policy_name = policy_name[:200]
        application.protection_error = ""
        application.full_clean()
        application.save()
        audit_record(
            action="application.protect_requested",
            actor=actor,
            target_type="application",
            target_id=str(application.public_id),
            target_label=application.name,
            details={"policy": policy_name or policy_id, "left_out": [o.label for o in left_out[:100]]},
            origin=request,
        )
        tasks.application_protect_task.delay_on_commit(application.pk, request.source_ip, request.request_id)
    return left_out


def _access_app_ids_save(application: Application, ids: list[str]) -> None:
    Application.objects.filter(pk=application.pk).update(access_app_ids=ids)
    application.access_app_ids = ids


# Protection states a task works on: pending and protected are made to match the approved origins (a protected
# one again, because a change may have come in while an earlier task ran); removing loses every Access application.
_APPLY_STATES = (Application.Protection.PENDING, Application.Protection.PROTECTED, Application.Protection.REMOVING)


def application_protect_apply(*, application: Application, request: RequestOrigin) -> Application:
    """Make Cloudflare hold what the application needs: one Access application per part of its approved
    origins' destinations (created, or found and replaced after a retry), and none left over; none at all when
    its protection is being removed or no approved origin is left."""
    from integrations import cloudflare as cf

    application.refresh_from_db()
    state = application.protection
    if state not in _APPLY_STATES:
        return application
    approved = (
        []
        if state == Application.Protection.REMOVING
        else list(application.origins.filter(review_state=ReviewState.APPROVED).order_by("id"))
    )
    parts = access_parts(approved)
    known = list(application.access_app_ids)
    ids: list[str] = []
    removed = 0
    try:
        for number, destinations in enumerate(parts, start=1):
            result = cf.access_private_app_ensure(
                name=application.access_name(number),
                destinations=destinations,
                policy_id=application.policy_id,
                app_id=known[number - 1] if number <= len(known) else "",
                owner_mark=application.owner_mark,
            )
            ids.append(result.id)
        for surplus in known[len(parts) :]:
            cf.access_private_app_delete(app_id=surplus, owner_mark=application.owner_mark)
            removed += 1
    except cf.CloudflareError as exc:
        # What exists at Cloudflare stays recorded, so a retry or an unprotect finds every part.
        _access_app_ids_save(application, ids + known[len(ids) + removed :])
        if isinstance(exc, cf.CloudflareTransient):
            raise
        Application.objects.filter(pk=application.pk, protection=state).update(
            protection=Application.Protection.FAILED, protection_error=exc.message[:300]
        )
        audit_record(
            action="application.protect_failed",
            target_type="application",
            target_id=str(application.public_id),
            target_label=application.name,
            details={"error": exc.message[:300]},
            origin=request,
        )
        application.refresh_from_db()
        return application
    with transaction.atomic():
        updated = Application.objects.filter(pk=application.pk, protection=state).update(
            protection=Application.Protection.PROTECTED if ids else Application.Protection.NONE,
            access_app_ids=ids,
            protected_at=(application.protected_at or timezone.now()) if ids else None,
            protection_error="",
        )
        if updated == 1 and (ids != known or state != Application.Protection.PROTECTED):
            audit_record(
                action="application.protected" if ids else "application.unprotected",
                target_type="application",
                target_id=str(application.public_id),
                target_label=application.name,
                details={"access_app_ids": ids, "destinations": sum(len(p) for p in parts)},
                origin=request,
            )
    application.refresh_from_db()
    return application


def _access_sync_request(applications: list[Application], request: RequestOrigin) -> None:
    """After a change to what a protected application holds, bring its Access applications in line, through the
    same task that created them."""
    from discovery import tasks

    for application in applications:
        if application.protection == Application.Protection.PROTECTED:
            Application.objects.filter(pk=application.pk, protection=Application.Protection.PROTECTED).update(
                protection=Application.Protection.PENDING
            )
        if application.protection in (Application.Protection.PROTECTED, Application.Protection.PENDING):
            tasks.application_protect_task.delay_on_commit(application.pk, request.source_ip, request.request_id)


def _access_sync_after_review(origins: list[Origin], request: RequestOrigin) -> None:
    ids = {o.application_id for o in origins if o.application_id}
    _access_sync_request(list(Application.objects.filter(pk__in=ids)), request)


def _operator(actor: User) -> None:
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators change applications.")


def _audit_application(action: str, actor: User, application: Application, details: dict, request: RequestOrigin):
    audit_record(
        action=action,
        actor=actor,
        target_type="application",
        target_id=str(application.public_id),
        target_label=application.name,
        details=details,
        origin=request,
    )


def application_rename(*, actor: User, application: Application, name: str, request: RequestOrigin) -> Application:
    """Rename; the Access applications Gatehouse created follow the new name."""
    _operator(actor)
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        previous = application.name
        application.name = name.strip()
        application.full_clean()
        if application.name == previous:
            return application
        application.save(update_fields=["name"])
        _audit_application("application.renamed", actor, application, {"from": previous}, request)
        _access_sync_request([application], request)
    return application


def application_remove_origin(*, actor: User, application: Application, origin: Origin, request: RequestOrigin) -> None:
    """Take an origin out of the application (its review stays as it is) and out of its Access destinations."""
    _operator(actor)
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        removed = Origin.objects.filter(pk=origin.pk, application=application).update(application=None)
        if not removed:
            raise ValidationError(f"{origin.label} is not in {application.name}.")
        _audit_application("application.origin_removed", actor, application, {"origin": origin.label}, request)
        _access_sync_request([application], request)


def application_unprotect(*, actor: User, application: Application, request: RequestOrigin) -> Application:
    """Ask for the Access applications Gatehouse created for it to be deleted; a task deletes them."""
    from discovery import tasks

    _operator(actor)
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        if application.protection in (Application.Protection.PENDING, Application.Protection.REMOVING):
            raise ValidationError("Wait until the change to Access in progress is done.")
        if not application.access_app_ids:
            raise ValidationError("Gatehouse has created no Access application for it.")
        application.protection = Application.Protection.REMOVING
        application.protection_error = ""
        application.save(update_fields=["protection", "protection_error"])
        _audit_application(
            "application.unprotect_requested", actor, application, {"access_app_ids": application.access_app_ids},
            request,
        )  # fmt: skip
        tasks.application_protect_task.delay_on_commit(application.pk, request.source_ip, request.request_id)
    return application


def application_delete(*, actor: User, application: Application, request: RequestOrigin) -> int:
    """Delete the application; its origins stay in the catalogue, unassigned, with their reviews. Returns how
    many origins it held. One that still has Access applications is refused: they would be left unowned."""
    _operator(actor)
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        if application.access_app_ids or application.protection not in (
            Application.Protection.NONE,
            Application.Protection.FAILED,
        ):
            raise ValidationError(f"Remove {application.name} from Access first; then it can be deleted.")
        count = Origin.objects.filter(application=application).update(application=None)
        _audit_application("application.deleted", actor, application, {"origins": count}, request)
        application.delete()
    return count


def access_policies_refresh_request() -> None:
    from discovery import tasks

    transaction.on_commit(tasks.access_policies_refresh_task.delay)


def access_policies_refresh() -> int:
    """Replace the cached list of reusable Access policies with Cloudflare's."""
    from integrations import cloudflare as cf

    policies = cf.access_reusable_policies()
    now = timezone.now()
    with transaction.atomic():
        for policy in policies:
            AccessPolicy.objects.update_or_create(
                cf_id=policy.id, defaults={"name": policy.name, "decision": policy.decision, "seen_at": now}
            )
        AccessPolicy.objects.exclude(cf_id__in=[p.id for p in policies]).delete()
    return len(policies)
