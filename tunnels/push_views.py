"""Push events: Cloudflare's webhook (public, no session) and the admin's connect and disconnect on Settings."""

import hmac

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from dashboard import queue
from dashboard.models import User
from dashboard.permissions import role_required
from dashboard.requestinfo import RequestOrigin
from tunnels import push


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
    except push.PushError as exc:
        messages.error(request, str(exc))
    return redirect("dashboard:settings")


@require_POST
@role_required(User.Role.ADMIN)
def push_disconnect(request):
    try:
        push.push_disconnect(actor=request.user, request_origin=RequestOrigin.from_request(request))
        if not queue.unsent(request):
            messages.success(request, "Disconnecting push events; Gatehouse removes what it created at Cloudflare.")
    except push.PushError as exc:
        messages.error(request, str(exc))
    return redirect("dashboard:settings")
