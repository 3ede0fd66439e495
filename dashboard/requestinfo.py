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
    """REMOTE_ADDR, or the address the trusted proxies saw when the request came through them.

    X-Forwarded-For is believed only when the connection comes from one of GATEHOUSE_TRUSTED_PROXIES: anyone
    who reaches Gatehouse another way writes that header themselves. The client is then the entry
    GATEHOUSE_TRUSTED_PROXY_COUNT places from the right (each proxy appends the address it saw). A proxy's
    request without the header is the proxy's own (a proxy always appends); a chain shorter than the proxies
    names no one.
    """
    candidate = request.META.get("REMOTE_ADDR", "")
    hops = settings.GATEHOUSE_TRUSTED_PROXY_COUNT
    if hops and _is_trusted_proxy(candidate):
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= hops:
            candidate = forwarded[-hops]
        elif forwarded:
            return None
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(network) for network in settings.GATEHOUSE_TRUSTED_PROXIES)


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
