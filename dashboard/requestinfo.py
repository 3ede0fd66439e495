"""Who did something, from where: the context an audit entry records, from a request or from a task.

A `RequestOrigin` is the HTTP request behind an action (its source IP and request id); services take it as
`request_origin`. It is not discovery's `Origin`, a private-network origin.
"""

import ipaddress
import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}\Z")


def new_request_id(header: str | None = None) -> str:
    """The request's id: the reverse proxy's X-Request-ID when settings say the proxy sets it, else a new one.

    A client's own X-Request-ID is never kept: it would let anyone write what audit entries say about where an
    action came from, or make two requests look like one.
    """
    if settings.GATEHOUSE_PROXY_SETS_REQUEST_ID and header and _REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the address the trusted proxies saw when Gatehouse runs behind them."""
    candidate = request.META.get("REMOTE_ADDR", "")
    hops = settings.GATEHOUSE_TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= hops:
            candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


@dataclass(frozen=True)
class RequestOrigin:
    """The request an action came from, carried into Celery tasks as plain values."""

    source_ip: str | None = None
    request_id: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest | None) -> "RequestOrigin":
        if request is None:
            return cls()
        return cls(source_ip=client_ip(request), request_id=getattr(request, "request_id", ""))
