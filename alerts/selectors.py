"""Reads for alerts. Every signed-in person may read alerts; channel targets are for admins only."""

from django.db.models import Count, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404

from alerts.models import Alert, Channel, Delivery


def alert_get(*, public_id) -> Alert:
    return get_object_or_404(Alert, public_id=public_id)


def channel_get(*, public_id) -> Channel:
    return get_object_or_404(Channel, public_id=public_id)


def delivery_get(*, public_id) -> Delivery:
    return get_object_or_404(Delivery.objects.select_related("alert", "channel"), public_id=public_id)


def open_alert_target_ids(*, target_type: str) -> list[str]:
    return list(
        Alert.objects.filter(state=Alert.State.OPEN, target_type=target_type).values_list("target_id", flat=True)
    )


def alerts_open(*, limit: int = 10) -> list[Alert]:
    return list(Alert.objects.filter(state=Alert.State.OPEN)[:limit])


def alerts_open_count() -> int:
    return Alert.objects.filter(state=Alert.State.OPEN).count()


def alerts_for_target(*, target_type: str, target_id: str, limit: int = 20) -> list[Alert]:
    return list(Alert.objects.filter(target_type=target_type, target_id=target_id)[:limit])


def alert_page(*, state: str = "", page: int = 1, size: int = 50) -> tuple[list[Alert], bool]:
    qs: QuerySet[Alert] = Alert.objects.all()
    if state in Alert.State.values:
        qs = qs.filter(state=state)
    qs = qs.prefetch_related(
        Prefetch("deliveries", queryset=Delivery.objects.select_related("channel").order_by("created_at", "id"))
    )
    start = (page - 1) * size
    rows = list(qs[start : start + size + 1])
    return rows[:size], len(rows) > size


def channels() -> list[Channel]:
    return list(
        Channel.objects.annotate(
            failed=Count("deliveries", filter=Q(deliveries__state=Delivery.State.FAILED)),
            retrying=Count("deliveries", filter=Q(deliveries__state=Delivery.State.RETRYING)),
        )
    )


def deliveries_failing(*, limit: int = 20) -> list[Delivery]:
    return list(
        Delivery.objects.filter(state__in=[Delivery.State.FAILED, Delivery.State.RETRYING])
        .select_related("alert", "channel")
        .order_by("-created_at")[:limit]
    )


def alerts_unacknowledged_count() -> int:
    return Alert.objects.filter(state=Alert.State.OPEN, acknowledged_at__isnull=True).count()
