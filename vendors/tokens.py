"""Rotating and refreshing a vendor's service token at Cloudflare, from its page."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from dashboard.models import User
from dashboard.requestinfo import RequestOrigin
from dashboard.sealing import Purpose, seal
from dashboard.services import audit_record
from integrations import cloudflare as cf
from integrations.cloudflare import CloudflareError, CloudflareNotFound, Priority
from vendors.models import ServiceToken, Vendor


def _audit(*, action: str, actor: User, token: ServiceToken, request_origin: RequestOrigin, details: dict) -> None:
    audit_record(
        action=action,
        actor=actor,
        target_type="vendor",
        target_id=str(token.vendor.public_id),
        target_label=token.vendor.name,
        details={"token": token.label, "client_id": token.client_id, **details},
        request_origin=request_origin,
    )


def _locked_usable(actor: User, token: ServiceToken, verb: str) -> ServiceToken:
    """The token's row, locked for the Cloudflare call, if an operator may change it now; else the reason."""
    if not actor.has_role(User.Role.OPERATOR):
        raise PermissionDenied(f"Only operators {verb} service tokens.")
    token = ServiceToken.objects.select_for_update().select_related("vendor").get(pk=token.pk)
    vendor = token.vendor
    if vendor.archived or vendor.status in (Vendor.Status.REVOKED, Vendor.Status.REVOKING):
        state = "archived" if vendor.archived else vendor.get_status_display().lower()
        raise ValidationError(f"{vendor.name} is {state}; its tokens cannot be changed.")
    if token.status != ServiceToken.Status.ACTIVE or not token.cf_id:
        raise ValidationError(
            f"{token.label} is {token.get_status_display().lower()}; only an active token can be changed."
        )
    return token


def _refused(token: ServiceToken, error: CloudflareError) -> ValidationError:
    if isinstance(error, CloudflareNotFound):
        return ValidationError(f"{token.label} is no longer at Cloudflare; re-apply the vendor to replace it.")
    return ValidationError(f"Cloudflare refused: {error.message}")


def token_rotate(*, actor: User, token: ServiceToken, request_origin: RequestOrigin) -> ServiceToken:
    """A new client secret at Cloudflare, which stops taking the old one; the new one is kept sealed until an
    operator reveals it, once (see services.token_secret_reveal).

    The row stays locked during the call, so two rotations at once cannot leave Gatehouse with the older secret.
    """
    with transaction.atomic():
        token = _locked_usable(actor, token, "rotate")
        try:
            rotated = cf.service_token_rotate(token.cf_id, priority=Priority.INTERACTIVE)
        except CloudflareError as error:
            raise _refused(token, error) from None
        token.secret_sealed = seal(rotated.client_secret, purpose=Purpose.SERVICE_TOKEN)
        token.secret_sealed_at = timezone.now()
        token.secret_known = True
        token.client_id = rotated.client_id or token.client_id
        token.save(update_fields=["secret_sealed", "secret_sealed_at", "secret_known", "client_id"])
        _audit(action="vendor.token_rotated", actor=actor, token=token, request_origin=request_origin, details={})
    return token


def token_refresh(*, actor: User, token: ServiceToken, request_origin: RequestOrigin) -> ServiceToken:
    """Extend the token's expiry at Cloudflare by its duration from now; its secret stays as it was."""
    with transaction.atomic():
        token = _locked_usable(actor, token, "refresh")
        try:
            refreshed = cf.service_token_refresh(token.cf_id, priority=Priority.INTERACTIVE)
        except CloudflareError as error:
            raise _refused(token, error) from None
        before = token.expires_at
        token.expires_at = refreshed.expires_at
        token.save(update_fields=["expires_at"])
        _audit(
            action="vendor.token_refreshed",
            actor=actor,
            token=token,
            request_origin=request_origin,
            details={
                "from": before.isoformat() if before else "",
                "to": token.expires_at.isoformat() if token.expires_at else "",
            },
        )
    return token
