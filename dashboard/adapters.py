"""The sign-in rule: only verified Google Workspace accounts of the allowed domains get in."""

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.shortcuts import render

from dashboard import services
from dashboard.models import User
from dashboard.requestinfo import RequestOrigin


def refusal_reason(claims: dict) -> str | None:
    """Why these ID-token claims may not sign in, or None when they may.

    Both the email's domain and the hosted-domain claim must be allowed: `hd` proves the account is
    managed by that Workspace, and a personal Google account with a matching address carries no `hd`.
    """
    allowed = settings.GATEHOUSE_ALLOWED_DOMAINS
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        return "The identity provider sent no email address."
    if claims.get("email_verified") is not True:
        return "The email address is not verified."
    if not _well_formed(email):
        return "The email address is malformed."
    domain = email.rsplit("@", 1)[1].lower()
    if domain not in allowed:
        return f"Accounts at {domain} are not allowed."
    hd = claims.get("hd")
    if not isinstance(hd, str) or hd.lower() not in allowed:
        return "The account is not managed by an allowed Google Workspace."
    if hd.lower() != domain:
        return "The email address does not belong to the account's Workspace."
    return None


def _well_formed(email: str) -> bool:
    """An address an account can be made with: the check allauth applies before it signs anyone up, and one that
    fits the account's column. Anything else would be sent to allauth's sign-up form instead of being refused."""
    if len(email) > (User._meta.get_field("email").max_length or 0):
        return False
    try:
        validate_email(email)
    except ValidationError:
        return False
    return True


ADDRESS_TAKEN = "The address belongs to another Gatehouse account; an admin must remove that account first."


def _refuse(request, *, reason: str, claims: dict) -> ImmediateHttpResponse:
    """Audit a refused sign-in and answer it. Nobody signed in: the address is recorded as claimed, not as actor."""
    email = claims.get("email")
    if not isinstance(email, str):
        email = ""
    services.audit_record(
        action="auth.refused",
        details={"reason": reason, "claimed_email": email[:254], "hd": str(claims.get("hd", ""))[:100]},
        request_origin=RequestOrigin.from_request(request),
    )
    response = render(request, "account/not_allowed.html", {"reason": reason, "email": email}, status=403)
    return ImmediateHttpResponse(response)


class GoogleWorkspaceAdapter(DefaultSocialAccountAdapter):
    def pre_social_login(self, request, sociallogin):
        claims = sociallogin.account.extra_data.get("id_token") or {}
        reason = refusal_reason(claims)
        # A Google identity Gatehouse has not seen, with the address of an account that has another one.
        if (
            reason is None
            and not sociallogin.is_existing
            and User.objects.filter(email__iexact=claims["email"]).exists()
        ):
            reason = ADDRESS_TAKEN
        if reason is not None:
            raise _refuse(request, reason=reason, claims=claims)

    def is_open_for_signup(self, request, sociallogin):
        # pre_social_login has already refused anyone outside the allowed domains.
        return True

    def populate_user(self, request, sociallogin, data):
        user = super().populate_user(request, sociallogin, data)
        user.email = user.email.lower()
        user.role = services.user_role_for_new_account(email=user.email)
        return user

    def save_user(self, request, sociallogin, form=None):
        claimed = (sociallogin.account.extra_data.get("id_token") or {}).get("email", "")
        chosen = form.cleaned_data.get("email", "") if form is not None else sociallogin.user.email
        if str(chosen).lower() != str(claimed).lower():
            # The sign-up form (shown only when an address is already taken) must not swap in another address.
            raise _refuse(
                request,
                reason="The account's email must be the one Google verified.",
                claims=sociallogin.account.extra_data.get("id_token") or {},
            )
        user = super().save_user(request, sociallogin, form)
        services.audit_record(
            action="user.created",
            actor=user,
            target_type="user",
            target_id=str(user.public_id),
            target_label=user.email,
            details={"role": user.role},
            request_origin=RequestOrigin.from_request(request),
        )
        return user
