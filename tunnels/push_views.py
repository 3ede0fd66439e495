"""Push events: Cloudflare's webhook (public, no session), the admin's connect and disconnect on Settings, and the
page of each change."""

import hmac

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from dashboard import queue
from dashboard.forms import error_text
from dashboard.models import User
from dashboard.permissions import role_required
from dashboard.rendering import template_for
from dashboard.requestinfo import RequestOrigin
from tunnels import push, selectors


# Cloudflare signs nothing and holds no session: the shared secret in `cf-webhook-auth` is the whole proof, so
# this one view is public and exempt from CSRF. Every refusal is a bare status, telling a prober nothing.
@csrf_exempt
@login_not_required
@require_POST
def push_webhook(request):
    presented = request.headers.get("cf-webhook-auth", "")
    if not presented:
        push.refusal_record()
        return HttpResponse(status=401)
    secret = push.webhook_secret()
    if secret is None or not hmac.compare_digest(presented.encode(), secret.encode()):
        push.refusal_record()
        return HttpResponse(status=403)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return HttpResponse(status=400)
    if declared > push.MAX_BODY:
        return HttpResponse(status=413)
    body = request.read(push.MAX_BODY + 1)
    if len(body) > push.MAX_BODY:
        return HttpResponse(status=413)
    notification = push.parse_notification(body)
    if notification is None:
        return HttpResponse(status=400)
    push.event_receive(notification=notification)
    return HttpResponse(status=200)


@require_POST
@role_required(User.Role.ADMIN)
def push_connect(request):
    try:
        push.push_connect(
            actor=request.user,
            access_bypass=request.POST.get("access_bypass") == "on",
            request_origin=RequestOrigin.from_request(request),
        )
        if not queue.unsent(request):
            messages.success(
                request, "Connecting push events; this page shows when Cloudflare's first message arrives."
            )
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    return redirect("dashboard:settings")


@require_POST
@role_required(User.Role.ADMIN)
def push_disconnect(request):
    try:
        push.push_disconnect(actor=request.user, request_origin=RequestOrigin.from_request(request))
        if not queue.unsent(request):
            messages.success(request, "Disconnecting push events; Gatehouse removes what it created at Cloudflare.")
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    return redirect("dashboard:settings")


@require_GET
def push_change_detail(request, public_id):
    change = selectors.push_change_get(public_id=public_id)
    context = {"change": change, "can_administer": request.user.has_role(User.Role.ADMIN)}
    return render(request, template_for(request, "tunnels/push_change_detail.html", "push-change-status"), context)


@require_POST
@role_required(User.Role.ADMIN)
def push_change_retry(request, public_id):
    change = selectors.push_change_get(public_id=public_id)
    try:
        push.push_change_retry(actor=request.user, change=change, request_origin=RequestOrigin.from_request(request))
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    return redirect("dashboard:push_change_detail", public_id=change.public_id)
