"""Applications: naming a group of origins, putting origins in and taking them out, deleting."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard.models import User
from dashboard.requestinfo import RequestOrigin
from dashboard.services import audit_record
from discovery.models import Application, Origin, ReviewState
from discovery.services.protection import _access_sync_request, _audit_application, _operator
from discovery.services.review import _transition


def application_create(*, actor: User, name: str, owner: str, request_origin: RequestOrigin) -> Application:
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
            request_origin=request_origin,
        )
    return application


def application_add_origins(
    *, actor: User, application: Application, origins: list[Origin], request_origin: RequestOrigin
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
                    request_origin=request_origin,
                    now=now,
                )
        Origin.objects.bulk_update(
            joined, ["application", "review_state", "reviewed_at", "traffic_while_unapproved_at"]
        )
        if any(o.review_state == ReviewState.APPROVED for o in joined):
            _access_sync_request([application], request_origin)
        if joined:
            audit_record(
                action="application.origins_added",
                actor=actor,
                target_type="application",
                target_id=str(application.public_id),
                target_label=application.name,
                details={"origins": [o.label for o in joined[:100]], "count": len(joined)},
                request_origin=request_origin,
            )
    return len(joined)


def application_rename(
    *, actor: User, application: Application, name: str, request_origin: RequestOrigin
) -> Application:
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
        _audit_application("application.renamed", actor, application, {"from": previous}, request_origin)
        _access_sync_request([application], request_origin)
    return application


def application_remove_origin(
    *, actor: User, application: Application, origin: Origin, request_origin: RequestOrigin
) -> None:
    """Take an origin out of the application (its review stays as it is) and out of its Access destinations."""
    _operator(actor)
    with transaction.atomic():
        application = Application.objects.select_for_update().get(pk=application.pk)
        removed = Origin.objects.filter(pk=origin.pk, application=application).update(application=None)
        if not removed:
            raise ValidationError(f"{origin.label} is not in {application.name}.")
        _audit_application("application.origin_removed", actor, application, {"origin": origin.label}, request_origin)
        _access_sync_request([application], request_origin)


def application_delete(*, actor: User, application: Application, request_origin: RequestOrigin) -> int:
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
        _audit_application("application.deleted", actor, application, {"origins": count}, request_origin)
        application.delete()
    return count
