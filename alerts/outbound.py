"""Requests Gatehouse sends to addresses an admin typed in: alert webhooks and Slack incoming webhooks.

An admin-supplied URL must not become a way to reach what only Gatehouse's own network can reach (the cloud
metadata service at 169.254.169.254, a database on loopback, the private network). The host is resolved once,
every address it resolves to is checked, and the connection goes to the checked address itself, with the
original name kept in the Host header and in TLS (SNI and certificate check), so a second DNS answer cannot
swap the address between the check and the connection. Redirects are never followed, and no proxy from the
environment is used (it would make the connection somewhere else).

GATEHOUSE_ALERT_ALLOWED_NETWORKS names networks that are allowed anyway (an on-premises receiver, say).
"""

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 (RFC 6052) carries an IPv4 address in its last 32 bits: 64:ff9b::7f00:1 is 127.0.0.1.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Private networks: RFC 1918, carrier-grade NAT (RFC 6598) and IPv6 unique local addresses. Python's is_private
# also covers documentation and reserved ranges, which are named "reserved" here instead.
_PRIVATE = [
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
]


class OutboundRefused(Exception):
    """The URL leads to an address Gatehouse does not send to."""


def address_class(address: IPAddress) -> str | None:
    """Why Gatehouse does not send to `address` ("loopback", "link-local", ...), or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address_class(address.ipv4_mapped)
        if address in _NAT64:
            return address_class(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in network for network in _PRIVATE if network.version == address.version):
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in settings.GATEHOUSE_ALERT_ALLOWED_NETWORKS]


def check_address(address: IPAddress, *, host: str) -> None:
    """Raise OutboundRefused unless `address` is public or inside an allowed network."""
    refused = address_class(address)
    if refused is None or any(address in network for network in _allowed_networks()):
        return
    shown = host if host == str(address) else f"{host} ({address})"
    raise OutboundRefused(
        f"{shown} is a {refused} address; Gatehouse sends only to public addresses "
        "unless GATEHOUSE_ALERT_ALLOWED_NETWORKS allows its network"
    )


def parse(url: str) -> httpx.URL:
    """`url` parsed, or OutboundRefused when its host is no valid name (IDNA 2008, as httpx encodes it).

    Django's URLValidator admits names that IDNA 2008 forbids (`☃.com`) and A-labels that decode to nothing
    (`xn--zz.com`); neither could ever be sent to.
    """
    try:
        parsed = httpx.URL(url)
        parsed.host  # noqa: B018 - decoding an A-label is what fails for a broken one
    except (httpx.InvalidURL, ValueError):
        try:
            shown = urlsplit(url).hostname or url
        except ValueError:
            shown = url
        raise OutboundRefused(f"{shown[:100]} is not a valid host name") from None
    return parsed


def ascii_host(url: httpx.URL) -> str:
    """The host as DNS and TLS know it: an international name in its ASCII (xn--) form, an IPv6 address bare."""
    return url.raw_host.decode("ascii").lower()


def check_url(url: str) -> None:
    """The checks that need no DNS: a valid host name, an address, or a name that always means this machine."""
    host = ascii_host(parse(url))
    if host == "localhost" or host.endswith(".localhost"):
        check_address(ipaddress.ip_address("127.0.0.1"), host=host)
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    check_address(address, host=host)


def resolve(host: str, port: int) -> IPAddress:
    """The address to connect to: every address `host` resolves to must pass, and the first one is used."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal, host=host)
        return literal
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise OutboundRefused(f"{host} does not resolve") from exc
    # The scope of an IPv6 link-local answer ("fe80::1%eth0") is dropped before parsing; it is refused anyway.
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(a[4][0]).split("%")[0]) for a in answers))
    if not addresses:
        raise OutboundRefused(f"{host} does not resolve")
    for address in addresses:
        check_address(address, host=host)
    return addresses[0]


def post(url: str, *, content: bytes, headers: dict[str, str], timeout: float = 10.0) -> httpx.Response:
    """POST `content` to `url` through a checked address; raises OutboundRefused or httpx.HTTPError."""
    original = parse(url)
    if original.scheme not in ("http", "https") or not original.host:
        raise OutboundRefused("only http:// and https:// URLs are sent to")
    port = original.port or (443 if original.scheme == "https" else 80)
    host = ascii_host(original)
    address = resolve(host, port)
    host_header = httpx.Request("POST", original).headers["Host"]
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        request = client.build_request(
            "POST",
            original.copy_with(host=str(address)),
            content=content,
            headers={**headers, "Host": host_header},
            # TLS names the original host, and the certificate is checked against it, not against the address.
            extensions={"sni_hostname": host},
        )
        return client.send(request)
