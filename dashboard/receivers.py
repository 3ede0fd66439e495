from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from dashboard import services
from dashboard.requestinfo import RequestOrigin


@receiver(user_logged_in)
def audit_sign_in(sender, request, user, **kwargs):
    services.audit_record(
        action="auth.signed_in",
        actor=user,
        target_type="user",
        target_id=str(user.public_id),
        target_label=user.email,
        request_origin=RequestOrigin.from_request(request),
    )


@receiver(user_logged_out)
def audit_sign_out(sender, request, user, **kwargs):
    if user is None:
        return
    services.audit_record(
        action="auth.signed_out",
        actor=user,
        target_type="user",
        target_id=str(user.public_id),
        target_label=user.email,
        request_origin=RequestOrigin.from_request(request),
    )
