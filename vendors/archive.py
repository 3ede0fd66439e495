"""Archiving a revoked vendor: off the main list, its history and receipts kept, nothing more done to it."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard.models import User
from dashboard.requestinfo import RequestOrigin
from dashboard.services import audit_record
from vendors.models import Vendor, WorkflowRun


def vendor_archive(*, actor: User, vendor: Vendor, request_origin: RequestOrigin) -> Vendor:
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied("Only operators archive vendors.")
    with transaction.atomic():
        vendor = Vendor.objects.select_for_update().get(pk=vendor.pk)
        if vendor.archived:
            return vendor
        if vendor.status != Vendor.Status.REVOKED:
            raise ValidationError(
                f"{vendor.name} is {vendor.get_status_display().lower()}; only a revoked vendor can be archived."
            )
        if WorkflowRun.objects.filter(vendor=vendor, status__in=WorkflowRun.ACTIVE).exists():
            raise ValidationError(f"A workflow is still running for {vendor.name}; archive it once it has finished.")
        vendor.archived_at = timezone.now()
        vendor.save(update_fields=["archived_at", "updated_at"])
        audit_record(
            action="vendor.archived",
            actor=actor,
            target_type="vendor",
            target_id=str(vendor.public_id),
            target_label=vendor.name,
            request_origin=request_origin,
        )
    return vendor
