from django.contrib.messages import get_messages
from django.template.loader import render_to_string

from dashboard.requestinfo import new_request_id


class RequestIdMiddleware:
    """Gives every request an id that audit entries and the response header carry."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = new_request_id(request.headers.get("X-Request-ID"))
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response


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
