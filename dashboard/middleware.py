import hmac
import ipaddress

from django.conf import settings
from django.contrib.messages import get_messages
from django.http import HttpResponse, HttpResponseForbidden, HttpResponseNotAllowed, JsonResponse
from django.template.loader import render_to_string

from dashboard import queue
from dashboard.requestinfo import client_ip, new_request_id


class RequestIdMiddleware:
    """Gives every request an id that audit entries and the response header carry."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = new_request_id(request.headers.get("X-Request-ID"))
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


class QueueMiddleware:
    """Lets dashboard.queue note on the request the tasks it could not send, and tell the user (a message)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with queue.request_scope(request):
            return self.get_response(request)


class HtmxMessagesMiddleware:
    """Delivers pending messages as toasts on HTMX responses, which leave the page's toast region alone."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        htmx = getattr(request, "htmx", None)
        if (
            not htmx
            or htmx.boosted
            or response.streaming
            or 300 <= response.status_code < 400
            or "HX-Redirect" in response
            or not response.get("Content-Type", "").startswith("text/html")
        ):
            return response
        messages = list(get_messages(request))
        if messages:
            response.write(render_to_string("partials/toasts.html", {"messages": messages, "oob": True}))
        return response


class ProbeMiddleware:
    """Answers /healthz, /readyz and /metrics before anything else runs.

    Probes and Prometheus come over plain HTTP from inside the network, by address: ahead of the HTTPS redirect
    and the Host check they get an answer instead of a redirect or a 400, and no session or database write is
    made for them. /metrics is for Prometheus only (see metrics_allowed).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == "/healthz":
            return _probe_answer(request, {"status": "ok"}, 200)
        if request.path == "/readyz":
            from dashboard import health

            checks = health.readiness()
            ready = all(c.ok for c in checks.values())
            body = {
                "status": "ready" if ready else "not ready",
                "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()},
            }
            return _probe_answer(request, body, 200 if ready else 503)
        if request.path == "/metrics":
            return _metrics(request)
        return self.get_response(request)


def _probe_answer(request, body: dict, status: int):
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


def metrics_allowed(request) -> bool:
    """A bearer token when GATEHOUSE_METRICS_TOKEN is set; otherwise only from GATEHOUSE_METRICS_NETWORKS."""
    token = settings.GATEHOUSE_METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    address = client_ip(request)
    if address is None:
        return False
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(n) for n in settings.GATEHOUSE_METRICS_NETWORKS)


def _metrics(request):
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    if not metrics_allowed(request):
        return HttpResponseForbidden("Forbidden", content_type="text/plain")
    from prometheus_client import CONTENT_TYPE_LATEST

    from dashboard.metrics import exposition

    response = HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
