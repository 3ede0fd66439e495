"""Writes for discovery, one module per job: Logpush ingest (`logpush`), the AWS inventory (`inventory`), review
decisions (`review`), applications (`applications`) and their protection behind Access (`protection`).

The names other modules use are re-exported here, so callers say `from discovery import services`."""

from discovery.services.applications import (
    application_add_origins,
    application_create,
    application_delete,
    application_remove_origin,
    application_rename,
)
from discovery.services.inventory import inventory_discover, inventory_record, vpc_virtual_networks
from discovery.services.logpush import (
    BATCH_BYTES,
    BATCH_OBJECTS,
    LEASE_SECONDS,
    Claim,
    ClaimLost,
    batches_of,
    ingest_run_finish_if_done,
    ingest_run_listed,
    ingest_run_skipped,
    log_object_claim,
    log_object_ingest,
    log_objects_claim,
    log_objects_ingest,
    logpush_ingest,
    pending_objects,
)
from discovery.services.protection import (
    access_destinations,
    access_parts,
    access_policies_refresh,
    access_policies_refresh_request,
    application_protect,
    application_unprotect,
    protection_change_drive,
    protection_change_request,
    protection_change_retry,
)
from discovery.services.review import DECISION_LABELS, DECISIONS, origin_review, review_decisions

__all__ = [
    "BATCH_BYTES",
    "BATCH_OBJECTS",
    "DECISIONS",
    "DECISION_LABELS",
    "LEASE_SECONDS",
    "Claim",
    "ClaimLost",
    "access_destinations",
    "access_parts",
    "access_policies_refresh",
    "access_policies_refresh_request",
    "application_add_origins",
    "application_create",
    "application_delete",
    "application_protect",
    "application_remove_origin",
    "application_rename",
    "application_unprotect",
    "batches_of",
    "ingest_run_finish_if_done",
    "ingest_run_listed",
    "ingest_run_skipped",
    "inventory_discover",
    "inventory_record",
    "log_object_claim",
    "log_object_ingest",
    "log_objects_claim",
    "log_objects_ingest",
    "logpush_ingest",
    "origin_review",
    "pending_objects",
    "protection_change_drive",
    "protection_change_request",
    "protection_change_retry",
    "review_decisions",
    "vpc_virtual_networks",
]
