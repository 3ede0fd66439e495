"""Reads for vendors. Every signed-in person may read vendors; changes are checked in services."""

from django.db.models import Count, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404

from vendors.models import (
    AccessApplication,
    Grant,
    ServiceToken,
    TokenChange,
    TokenChangeStep,
    Vendor,
    VendorSettings,
    WorkflowRun,
    WorkflowStep,
)


def vendor_list(*, archived: bool = False) -> QuerySet[Vendor]:
    """Vendors in use, or (archived=True) only the archived ones."""
    return (
        Vendor.objects.filter(archived_at__isnull=not archived)
        .select_related("sponsor")
        .annotate(active_grants=Count("grants", filter=Q(grants__status=Grant.Status.ACTIVE)))
        .order_by("name")
    )


def application_list() -> QuerySet[AccessApplication]:
    """Access applications as last read from Cloudflare, with how many vendors each is granted to now."""
    return AccessApplication.objects.annotate(
        active_grants=Count("grants", filter=Q(grants__status=Grant.Status.ACTIVE))
    ).order_by("-present", "name")


def vendor_get(*, public_id) -> Vendor:
    return get_object_or_404(Vendor.objects.select_related("sponsor"), public_id=public_id)


def vendor_grants(*, vendor: Vendor) -> QuerySet[Grant]:
    return vendor.grants.select_related("application").order_by("-status", "ends_at")


def vendor_tokens(*, vendor: Vendor) -> QuerySet[ServiceToken]:
    return vendor.service_tokens.order_by("created_at", "id")


def vendor_runs(*, vendor: Vendor, limit: int = 20) -> list[WorkflowRun]:
    return list(vendor.runs.order_by("-created_at", "-id")[:limit])


def run_get(*, public_id) -> WorkflowRun:
    steps = Prefetch("steps", queryset=WorkflowStep.objects.order_by("position"))
    return get_object_or_404(WorkflowRun.objects.select_related("vendor").prefetch_related(steps), public_id=public_id)


def grant_get(*, public_id) -> Grant:
    return get_object_or_404(Grant.objects.select_related("vendor", "application"), public_id=public_id)


def token_get(*, public_id) -> ServiceToken:
    return get_object_or_404(ServiceToken.objects.select_related("vendor"), public_id=public_id)


def token_change_get(*, public_id) -> TokenChange:
    steps = Prefetch("steps", queryset=TokenChangeStep.objects.order_by("position"))
    changes = TokenChange.objects.select_related("token", "token__vendor").prefetch_related(steps)
    return get_object_or_404(changes, public_id=public_id)


def token_changes_active(*, vendor: Vendor) -> dict[int, TokenChange]:
    """The vendor's tokens' changes under way, by token id."""
    active = TokenChange.objects.filter(token__vendor=vendor, status__in=TokenChange.ACTIVE)
    return {change.token_id: change for change in active}


def vendor_settings() -> VendorSettings:
    return VendorSettings.load()


def runs_in_progress(*, vendors: list[Vendor]) -> dict[int, WorkflowRun]:
    """Each listed vendor's active run, by vendor id, with how many of its steps are done and the current one."""
    runs = (
        WorkflowRun.objects.filter(vendor__in=vendors, status__in=WorkflowRun.ACTIVE)
        .annotate(
            steps_done=Count("steps", filter=Q(steps__status=WorkflowStep.Status.DONE)),
            steps_total=Count("steps"),
        )
        .prefetch_related(
            Prefetch(
                "steps",
                queryset=WorkflowStep.objects.exclude(status=WorkflowStep.Status.DONE).order_by("position"),
                to_attr="steps_left",
            )
        )
    )
    return {run.vendor_id: run for run in runs}
