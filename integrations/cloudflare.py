"""The only module that imports the `cloudflare` SDK.

Every call goes through `call()`, which turns the SDK's exceptions into ours and records a 429's Retry-After
so that no process retries into the limit. Every HTTP request the SDK sends (a paginated list sends several)
first takes a slot from the shared API budget. The SDK's own retries are off: a retry spends budget, so the
caller (a Celery task with backoff) decides.
"""

import functools
import importlib
import logging
import math
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, cast, get_args

import cloudflare
import httpx
from cloudflare.types.alerting import MechanismParam
from cloudflare.types.zero_trust.access import Decision
from cloudflare.types.zero_trust.access.application_create_params import (
    SelfHostedApplicationDestinationPrivateDestination as PrivateDestination,
)
from cloudflare.types.zero_trust.access.application_create_params import (
    SelfHostedApplicationPolicyAccessAppPolicyLink as PolicyLink,
)
from cloudflare.types.zero_trust.access.applications import AccessRuleParam
from django.conf import settings

from integrations import records
from integrations.budget import Limits, Priority, RedisBudget, SqliteBudget
from integrations.records import (
    AccessApplication,
    AccessGroup,
    AccessPolicy,
    AccessSession,
    AccessUser,
    NewServiceToken,
    ServiceToken,
)

__all__ = [
    "CloudflareError",
    "CloudflareNotFound",
    "CloudflareTransient",
    "Priority",
    "account_id",
    "budget",
    "call",
]

log = logging.getLogger(__name__)

# Cloudflare's error text is shown to admins; keep it short and plain.
_MAX_MESSAGE = 300


class CloudflareError(Exception):
    """Cloudflare refused the call; retrying the same call will not help."""

    def __init__(self, message: str, *, status: int | None = None, codes: tuple[int, ...] = ()):
        super().__init__(message)
        self.message, self.status, self.codes = message, status, codes


class CloudflareNotFound(CloudflareError):
    """The object does not exist (any more) at Cloudflare."""


class CloudflareTransient(CloudflareError):
    """Rate limited, a 5xx, a timeout or no connection: the same call may succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BudgetExhausted(CloudflareTransient):
    """Gatehouse's own share of the rate limit is spent; nothing was sent."""


def account_id() -> str:
    return settings.CLOUDFLARE_ACCOUNT_ID


_priority: ContextVar[Priority] = ContextVar("cloudflare_priority", default=Priority.BACKGROUND)


def _take_budget(request: httpx.Request) -> None:
    grant = budget().take(_priority.get())
    if not grant.granted:
        raise BudgetExhausted(f"API budget spent; retry in {grant.wait:.0f} s", retry_after=grant.wait)


@functools.cache
def _client(token: str, base_url: str, timeout: float, strict: bool) -> cloudflare.Cloudflare:
    http = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0), event_hooks={"request": [_take_budget]})
    return cloudflare.Cloudflare(
        api_token=token, base_url=base_url, max_retries=0, http_client=http, _strict_response_validation=strict
    )


def client() -> cloudflare.Cloudflare:
    return _client(
        settings.CLOUDFLARE_API_TOKEN,
        settings.CLOUDFLARE_BASE_URL,
        settings.CLOUDFLARE_TIMEOUT,
        settings.CLOUDFLARE_STRICT_RESPONSES,
    )


def budget() -> RedisBudget | SqliteBudget:
    limits = Limits.from_share(
        account_limit=settings.CLOUDFLARE_RATE_LIMIT,
        share=settings.GATEHOUSE_CLOUDFLARE_SHARE,
        reserve_fraction=settings.GATEHOUSE_CLOUDFLARE_INTERACTIVE_RESERVE,
        window=settings.CLOUDFLARE_RATE_WINDOW,
        # Two pages of the tunnel list (2,000 tunnels) for every sync pass of a window.
        status_calls=2 * math.ceil(settings.CLOUDFLARE_RATE_WINDOW / settings.GATEHOUSE_TUNNEL_SYNC_SECONDS),
    )
    name = settings.GATEHOUSE_CLOUDFLARE_BUDGET_NAME or settings.CLOUDFLARE_ACCOUNT_ID or "default"
    return _budget(settings.REDIS_URL, str(settings.VAR_DIR), name, limits)


@functools.cache
def _budget(redis_url: str, var_dir: str, name: str, limits: Limits) -> RedisBudget | SqliteBudget:
    if redis_url:
        return RedisBudget(redis_url, name, limits)
    return SqliteBudget(Path(var_dir) / "cloudflare-budget.sqlite3", name, limits)


def _message(exc: cloudflare.APIStatusError) -> tuple[str, tuple[int, ...]]:
    body = exc.body if isinstance(exc.body, dict) else {}
    errors = body.get("errors")
    if not isinstance(errors, list):
        errors = []
    parts: list[str] = []
    codes: list[int] = []
    for error in errors[:5]:
        if isinstance(error, dict):
            if isinstance(error.get("code"), int):
                codes.append(error["code"])
            parts.append(str(error.get("message", ""))[:_MAX_MESSAGE])
    text = "; ".join(p for p in parts if p) or f"HTTP {exc.status_code}"
    return text[:_MAX_MESSAGE], tuple(codes)


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(1.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return 60.0


def call[T](
    operation: str, fn: Callable[[cloudflare.Cloudflare], T], *, priority: Priority = Priority.BACKGROUND
) -> T:
    """Run `fn(client)` within the budget, translating the SDK's errors into ours.

    `operation` names the call in logs and errors (never its arguments, which may carry secrets).
    """
    token = _priority.set(priority)
    try:
        return fn(client())
    except cloudflare.RateLimitError as exc:
        wait = _retry_after(exc.response)
        budget().block(wait)
        log.warning("cloudflare %s: 429, waiting %.0f s", operation, wait)
        raise CloudflareTransient(
            f"{operation}: rate limited by Cloudflare", retry_after=wait, status=429
        ) from exc
    except cloudflare.NotFoundError as exc:
        message, codes = _message(exc)
        raise CloudflareNotFound(f"{operation}: {message}", status=404, codes=codes) from exc
    except cloudflare.InternalServerError as exc:
        message, codes = _message(exc)
        raise CloudflareTransient(f"{operation}: {message}", status=exc.status_code, codes=codes) from exc
    except (cloudflare.APITimeoutError, cloudflare.APIConnectionError) as exc:
        # The SDK wraps whatever the transport raised, including our own budget refusal.
        if isinstance(exc.__cause__, BudgetExhausted):
            raise BudgetExhausted(
                f"{operation}: {exc.__cause__.message}", retry_after=exc.__cause__.retry_after
            ) from exc.__cause__
        raise CloudflareTransient(f"{operation}: Cloudflare did not answer ({type(exc).__name__})") from exc
    except cloudflare.APIStatusError as exc:
        message, codes = _message(exc)
        raise CloudflareError(f"{operation}: {message}", status=exc.status_code, codes=codes) from exc
    finally:
        _priority.reset(token)


# --- Paged lists --------------------------------------------------------------------------------------------
# Lists are fetched one page per call so that every request is counted. Cloudflare may use a smaller page than
# the one asked for (each list has its own maximum), so a short page proves nothing: the listing ends when
# result_info says every item or page has been read, or, when Cloudflare sends no counts, at an empty page.


def _count(info: Any, name: str) -> int | None:
    value = getattr(info, name, None) if info is not None else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _page_items(page: Any) -> tuple[list[Any], int | None]:
    """One page's items, as the SDK's models, and the total count Cloudflare reports."""
    return list(page.result or []), _count(page.result_info, "total_count")


def _all_pages(
    operation: str,
    fetch: Callable[[cloudflare.Cloudflare, int], Any],
    *,
    priority: Priority = Priority.BACKGROUND,
) -> list[Any]:
    """Every item of a paged list, as the SDK's models; `fetch(client, page)` asks for one page."""
    items: list[Any] = []
    page = 1
    while True:

        def one_page(c: cloudflare.Cloudflare, p: int = page) -> Any:
            return fetch(c, p)

        answer = call(operation, one_page, priority=priority)
        chunk = list(answer.result or [])
        items.extend(chunk)
        total_count = _count(answer.result_info, "total_count")
        total_pages = _count(answer.result_info, "total_pages")
        if (
            not chunk
            or (total_count is not None and len(items) >= total_count)
            or (total_count is None and total_pages is not None and page >= total_pages)
        ):
            return items
        page += 1


# --- Tunnels, routes, virtual networks, zones and DNS (tunnels app) -------------------------------------------
# Each answer becomes records (integrations/records.py); an object whose id is malformed is left out of a list,
# and makes a single-object call fail as Cloudflare's error.

TUNNEL_PAGE_SIZE = 1000


def _records[R](build: Callable[[Any], R], models: Any) -> list[R]:
    built = []
    for model in models or []:
        try:
            built.append(build(model))
        except records.Malformed as exc:
            log.warning("cloudflare: left out %s", exc)
    return built


def _record[R](operation: str, build: Callable[[Any], R], model: Any) -> R:
    try:
        return build(model)
    except records.Malformed as exc:
        raise CloudflareError(f"{operation}: Cloudflare answered with {exc}") from None


def tunnels_page(page: int, *, per_page: int = TUNNEL_PAGE_SIZE) -> tuple[list[records.Tunnel], int | None]:
    """One page of live tunnels (deleted ones are left out) and the total count Cloudflare reports.

    Cloudflare may answer with fewer tunnels than `per_page` on a page that is not the last.
    """
    items, total = _page_items(
        call(
            "tunnels.list",
            lambda c: c.zero_trust.tunnels.cloudflared.list(
                account_id=account_id(), is_deleted=False, page=page, per_page=per_page
            ),
            priority=Priority.STATUS,
        )
    )
    return _records(records.Tunnel.from_sdk, items), total


def tunnel_connectors(tunnel_id: str, *, priority: Priority = Priority.BACKGROUND) -> list[records.Connector]:
    page = call(
        "tunnels.connections",
        lambda c: c.zero_trust.tunnels.cloudflared.connections.get(tunnel_id, account_id=account_id()),
        priority=priority,
    )
    return _records(records.Connector.from_sdk, page.result)


def tunnel_connections_delete(tunnel_id: str, *, client_id: str | None = None) -> None:
    """Remove one connector (`client_id`) from the tunnel, or all of them, whatever their state."""
    call(
        "tunnels.connections_delete",
        lambda c: c.zero_trust.tunnels.cloudflared.connections.delete(
            tunnel_id, account_id=account_id(), client_id=client_id or cloudflare.omit
        ),
        priority=Priority.INTERACTIVE,
    )


def tunnel_delete(tunnel_id: str) -> records.Tunnel:
    """Cloudflare refuses while the tunnel has active connections."""
    result = call(
        "tunnels.delete",
        lambda c: c.zero_trust.tunnels.cloudflared.delete(tunnel_id, account_id=account_id()),
        priority=Priority.INTERACTIVE,
    )
    return _record("tunnels.delete", records.Tunnel.from_sdk, result)


def tunnel_secret_set(tunnel_id: str, secret: str) -> records.Tunnel:
    """Give the tunnel a new secret (base64, at least 32 bytes): its token changes, the old one stops working."""
    result = call(
        "tunnels.edit",
        lambda c: c.zero_trust.tunnels.cloudflared.edit(tunnel_id, account_id=account_id(), tunnel_secret=secret),
        priority=Priority.INTERACTIVE,
    )
    return _record("tunnels.edit", records.Tunnel.from_sdk, result)


def _as_sent(raw: Any) -> Any:
    """An answer's `result` exactly as Cloudflare sent it, once the SDK has parsed (and, if asked, validated) it.

    A configuration goes back whole on the next write, and a model dumped back to JSON is not always what came
    in: a key spelled like one of the SDK's snake_case fields gets a null twin, and validation coerces values.
    """
    raw.parse()
    body = raw.http_response.json()
    return body.get("result") if isinstance(body, dict) else None


def tunnel_configuration(tunnel_id: str, *, priority: Priority = Priority.BACKGROUND) -> records.TunnelConfiguration:
    result = call(
        "tunnels.configuration_get",
        lambda c: _as_sent(
            c.zero_trust.tunnels.cloudflared.configurations.with_raw_response.get(tunnel_id, account_id=account_id())
        ),
        priority=priority,
    )
    return records.TunnelConfiguration.from_sdk(result)


def tunnel_configuration_put(tunnel_id: str, config: dict[str, Any]) -> records.TunnelConfiguration:
    """Replace the tunnel's whole configuration with `config`, in Cloudflare's own key names.

    `config` is a configuration as read (`TunnelConfiguration.config`) with some rules changed. It goes out as
    `extra_body`, untouched: the SDK's typed `config=` would rename the snake_case keys it knows, and keys it
    does not type (`warp-routing`, anything newer) must go back exactly as Cloudflare sent them.
    """
    result = call(
        "tunnels.configuration_put",
        lambda c: _as_sent(
            c.zero_trust.tunnels.cloudflared.configurations.with_raw_response.update(
                tunnel_id, account_id=account_id(), extra_body={"config": config}
            )
        ),
        priority=Priority.INTERACTIVE,
    )
    return records.TunnelConfiguration.from_sdk(result)


def tunnel_create(name: str) -> records.Tunnel:
    """A remotely managed tunnel (its configuration lives at Cloudflare)."""
    result = call(
        "tunnels.create",
        lambda c: c.zero_trust.tunnels.cloudflared.create(
            account_id=account_id(), name=name, config_src="cloudflare"
        ),
        priority=Priority.INTERACTIVE,
    )
    return _record("tunnels.create", records.Tunnel.from_sdk, result)


def tunnels_named(name: str) -> list[records.Tunnel]:
    items, _total = _page_items(
        call(
            "tunnels.list_by_name",
            lambda c: c.zero_trust.tunnels.cloudflared.list(account_id=account_id(), is_deleted=False, name=name),
            priority=Priority.INTERACTIVE,
        )
    )
    return _records(records.Tunnel.from_sdk, items)


def tunnel_token(tunnel_id: str) -> str:
    """The secret a connector runs with. Callers must never log or store it in plain text."""
    return call(
        "tunnels.token",
        lambda c: c.zero_trust.tunnels.cloudflared.token.get(tunnel_id, account_id=account_id()),
        priority=Priority.INTERACTIVE,
    )


def routes_all() -> list[records.Route]:
    return _records(
        records.Route.from_sdk,
        _all_pages(
            "routes.list",
            lambda c, page: c.zero_trust.networks.routes.list(
                account_id=account_id(), is_deleted=False, page=page, per_page=1000
            ),
        ),
    )


def routes_of_tunnel(tunnel_id: str) -> list[records.Route]:
    return _records(
        records.Route.from_sdk,
        _all_pages(
            "routes.list_by_tunnel",
            lambda c, page: c.zero_trust.networks.routes.list(
                account_id=account_id(), is_deleted=False, tunnel_id=tunnel_id, page=page, per_page=1000
            ),
            priority=Priority.INTERACTIVE,
        ),
    )


def route_create(*, network: str, tunnel_id: str, virtual_network_id: str, comment: str) -> records.Route:
    route = call(
        "routes.create",
        lambda c: c.zero_trust.networks.routes.create(
            account_id=account_id(),
            network=network,
            tunnel_id=tunnel_id,
            virtual_network_id=virtual_network_id,
            comment=comment,
        ),
        priority=Priority.INTERACTIVE,
    )
    return _record("routes.create", records.Route.from_sdk, route)


def route_delete(route_id: str) -> None:
    call(
        "routes.delete",
        lambda c: c.zero_trust.networks.routes.delete(route_id, account_id=account_id()),
        priority=Priority.INTERACTIVE,
    )


def virtual_networks(*, priority: Priority = Priority.BACKGROUND) -> list[records.VirtualNetwork]:
    page = call(
        "virtual_networks.list",
        lambda c: c.zero_trust.networks.virtual_networks.list(account_id=account_id(), is_deleted=False),
        priority=priority,
    )
    return _records(records.VirtualNetwork.from_sdk, page.result)


def virtual_network_create(*, name: str, comment: str) -> records.VirtualNetwork:
    vnet = call(
        "virtual_networks.create",
        lambda c: c.zero_trust.networks.virtual_networks.create(account_id=account_id(), name=name, comment=comment),
        priority=Priority.INTERACTIVE,
    )
    return _record("virtual_networks.create", records.VirtualNetwork.from_sdk, vnet)


def virtual_network_rename(vnet_id: str, *, name: str) -> records.VirtualNetwork:
    vnet = call(
        "virtual_networks.edit",
        lambda c: c.zero_trust.networks.virtual_networks.edit(vnet_id, account_id=account_id(), name=name),
        priority=Priority.INTERACTIVE,
    )
    return _record("virtual_networks.edit", records.VirtualNetwork.from_sdk, vnet)


def virtual_network_delete(vnet_id: str) -> None:
    """Cloudflare refuses the default network, and one that still has routes."""
    call(
        "virtual_networks.delete",
        lambda c: c.zero_trust.networks.virtual_networks.delete(vnet_id, account_id=account_id()),
        priority=Priority.INTERACTIVE,
    )


def zones() -> list[records.Zone]:
    return _records(
        records.Zone.from_sdk,
        _all_pages(
            "zones.list", lambda c, page: c.zones.list(account={"id": account_id()}, page=page, per_page=50)
        ),
    )


def tunnel_dns_records(zone_id: str) -> list[records.DnsRecord]:
    """CNAME records of a zone that point at some tunnel (`<id>.cfargotunnel.com`)."""
    return _records(
        records.DnsRecord.from_sdk,
        _all_pages(
            "dns.list",
            lambda c, page: c.dns.records.list(
                zone_id=zone_id,
                type="CNAME",
                content={"endswith": ".cfargotunnel.com"},
                page=page,
                per_page=5000,
            ),
        ),
    )


def dns_cname_create(*, zone_id: str, name: str, target: str, comment: str) -> records.DnsRecord:
    record = call(
        "dns.create",
        lambda c: c.dns.records.create(
            zone_id=zone_id, name=name, type="CNAME", content=target, proxied=True, ttl=1, comment=comment
        ),
        priority=Priority.INTERACTIVE,
    )
    return _record("dns.create", records.DnsRecord.from_sdk, record)


def dns_records_named(zone_id: str, name: str) -> list[records.DnsRecord]:
    page = call(
        "dns.list_by_name",
        lambda c: c.dns.records.list(zone_id=zone_id, name={"exact": name}, per_page=100),
        priority=Priority.INTERACTIVE,
    )
    return _records(records.DnsRecord.from_sdk, page.result)


def dns_records_pointing(zone_id: str, target: str) -> list[records.DnsRecord]:
    """Every record of the zone whose content is exactly `target`, with its comment."""
    return _records(
        records.DnsRecord.from_sdk,
        _all_pages(
            "dns.list_by_content",
            lambda c, page: c.dns.records.list(
                zone_id=zone_id, content={"exact": target}, page=page, per_page=5000
            ),
            priority=Priority.INTERACTIVE,
        ),
    )


def dns_record_delete(zone_id: str, record_id: str) -> None:
    call(
        "dns.delete",
        lambda c: c.dns.records.delete(record_id, zone_id=zone_id),
        priority=Priority.INTERACTIVE,
    )


# --- Access applications for discovered origins (discovery app) --------------------------------------------


def access_reusable_policies() -> list[AccessPolicy]:
    """The account's reusable Access policies."""
    return access_policies_all()


# Cloudflare's documented maximum of destinations on one Access application.
ACCESS_APP_MAX_DESTINATIONS = 50


def access_private_app_ensure(
    *, name: str, destinations: list[dict[str, Any]], policy_id: str, app_id: str = "", owner_mark: str = ""
) -> AccessApplication:
    """A self-hosted Access application with these private destinations and one reusable policy, made so.

    With `app_id` (the one recorded earlier) the application is read and, if its name still carries
    `owner_mark`, replaced by a PUT with this name, destinations and policy. Otherwise the name is the caller's
    deterministic one: an application of that exact name is taken as ours from an earlier attempt (Cloudflare
    answered but the reply was lost) and updated, or else one is created. Cloudflare requires a self-hosted
    application's `domain`; a private one reports its first destination there, so that is what is sent.
    """
    if not destinations or len(destinations) > ACCESS_APP_MAX_DESTINATIONS:
        raise ValueError(f"an Access application takes 1 to {ACCESS_APP_MAX_DESTINATIONS} destinations")
    private = [_private_destination(dest) for dest in destinations]
    domain = private[0].get("hostname") or private[0]["cidr"]
    policies = [PolicyLink(id=policy_id, precedence=1)]
    existing: AccessApplication | None = None
    if app_id:
        try:
            existing = AccessApplication.from_sdk(
                call(
                    "access.applications.get",
                    lambda c: c.zero_trust.access.applications.get(app_id, account_id=account_id()),
                    priority=Priority.INTERACTIVE,
                )
            )
        except CloudflareNotFound:
            existing = None
        if existing is not None and owner_mark not in existing.name:
            raise CloudflareError(f"Access application {app_id} is not one Gatehouse created; it was left alone")
    if existing is None:
        found = call(
            "access.applications.list",
            lambda c: c.zero_trust.access.applications.list(account_id=account_id(), name=name, exact=True),
            priority=Priority.INTERACTIVE,
        )
        matches = [AccessApplication.from_sdk(app) for app in found.result or [] if getattr(app, "name", None) == name]
        existing = matches[0] if matches else None
    if existing is None:
        created = call(
            "access.applications.create",
            lambda c: c.zero_trust.access.applications.create(
                account_id=account_id(),
                type="self_hosted",
                name=name,
                domain=domain,
                destinations=private,
                policies=policies,
                session_duration="8h",
            ),
            priority=Priority.INTERACTIVE,
        )
        return AccessApplication.from_sdk(created)
    updated = call(
        "access.applications.update",
        lambda c: c.zero_trust.access.applications.update(
            existing.id,
            account_id=account_id(),
            type="self_hosted",
            name=name,
            domain=domain,
            destinations=private,
            policies=policies,
            session_duration="8h",
        ),
        priority=Priority.INTERACTIVE,
    )
    return AccessApplication.from_sdk(updated)


def _private_destination(dest: dict[str, Any]) -> PrivateDestination:
    """One destination as `discovery` describes it (`access_destinations`), in the SDK's shape."""
    if (
        dest.get("type") != "private"
        or not (dest.get("hostname") or dest.get("cidr"))
        or dest.get("l4_protocol") not in (None, "tcp", "udp")
    ):
        raise ValueError(f"not an Access private destination: {dest!r}")
    private = PrivateDestination(type="private")
    for key in ("cidr", "hostname", "port_range", "vnet_id", "l4_protocol"):
        if key in dest:
            private[key] = dest[key]
    return private


def access_private_app_delete(*, app_id: str, owner_mark: str) -> bool:
    """Delete an Access application Gatehouse created (its name carries `owner_mark`); False if already gone.

    Anything else under that id is refused, never deleted.
    """
    try:
        app = AccessApplication.from_sdk(
            call(
                "access.applications.get",
                lambda c: c.zero_trust.access.applications.get(app_id, account_id=account_id()),
                priority=Priority.INTERACTIVE,
            )
        )
    except CloudflareNotFound:
        return False
    if owner_mark not in app.name:
        raise CloudflareError(f"Access application {app_id} is not one Gatehouse created; it was left alone")
    try:
        call(
            "access.applications.delete",
            lambda c: c.zero_trust.access.applications.delete(app_id, account_id=account_id()),
            priority=Priority.INTERACTIVE,
        )
    except CloudflareNotFound:
        return False
    return True


# --- Access: applications, reusable policies, service tokens, users and revocation (vendors app) ---------------

ACCESS_PAGE_SIZE = 1000


def access_preload() -> None:
    """Import the SDK's Zero Trust modules now: the SDK imports them on first use, a second or more of CPU, which
    a worker pays once as it starts rather than on someone's first Revoke click. Forked pool processes inherit them.
    """
    importlib.import_module("cloudflare.resources.zero_trust")


def access_apps_all(*, priority: Priority = Priority.BACKGROUND) -> list[AccessApplication]:
    """Every Access application with its policies (reusable ones resolved) as Cloudflare reports them."""
    pages = _all_pages(
        "access.apps.list",
        lambda c, p: c.zero_trust.access.applications.list(account_id=account_id(), page=p, per_page=ACCESS_PAGE_SIZE),
        priority=priority,
    )
    return _records(AccessApplication.from_sdk, pages)


def access_app_get(app_id: str, *, priority: Priority = Priority.BACKGROUND) -> AccessApplication:
    """One application, read as plain data like the PUT's answer below.

    The SDK builds its validators for the application union the first time a process asks for one application,
    which costs a fresh worker process seconds, and this read is on the path of a Revoke click. The records check
    what Gatehouse uses; the simulator's answer is held to the SDK's model by the conformance tests.
    """
    path = f"/accounts/{account_id()}/access/apps/{app_id}"
    answer = call("access.apps.get", lambda c: c.get(path, cast_to=object), priority=priority)
    result = answer.get("result") if isinstance(answer, dict) else None
    return _record("access.apps.get", AccessApplication.from_sdk, result if isinstance(result, dict) else {})


def access_app_set_policies(
    app: AccessApplication, references: list[dict[str, Any]], *, priority: Priority = Priority.BACKGROUND
) -> AccessApplication:
    """Replace an application's policies with these reusable-policy references, keeping the rest as read.

    A PUT replaces the whole application, so every writable field read is sent back. Cloudflare refuses a list
    mixing references with inline policies, and dropping an application's inline policies would change who gets
    in, so an application that still has any is the caller's to refuse before calling.
    """
    if any(set(ref) != {"id", "precedence"} for ref in references):
        raise ValueError("only {id, precedence} references to reusable policies are sent")
    body = {**app.writable, "policies": references}
    path = f"/accounts/{account_id()}/access/apps/{app.id}"
    answer = call("access.apps.update", lambda c: c.put(path, body=body, cast_to=object), priority=priority)
    result = answer.get("result") if isinstance(answer, dict) else None
    return _record("access.apps.update", AccessApplication.from_sdk, result if isinstance(result, dict) else {})


def access_app_revoke_tokens(app_id: str, *, priority: Priority = Priority.BACKGROUND) -> None:
    call(
        "access.apps.revoke_tokens",
        lambda c: c.zero_trust.access.applications.revoke_tokens(app_id, account_id=account_id()),
        priority=priority,
    )


def access_policies_all(*, priority: Priority = Priority.BACKGROUND) -> list[AccessPolicy]:
    """The account's reusable policies."""
    pages = _all_pages(
        "access.policies.list",
        lambda c, p: c.zero_trust.access.policies.list(account_id=account_id(), page=p, per_page=ACCESS_PAGE_SIZE),
        priority=priority,
    )
    return _records(AccessPolicy.from_sdk, pages)


def access_policy_get(policy_id: str, *, priority: Priority = Priority.BACKGROUND) -> AccessPolicy:
    """One reusable policy as Cloudflare keeps it now, with how many applications use it."""
    policy = call(
        "access.policies.get",
        lambda c: c.zero_trust.access.policies.get(policy_id, account_id=account_id()),
        priority=priority,
    )
    return _record("access.policies.get", AccessPolicy.from_sdk, policy)


def access_policy_create(
    *,
    name: str,
    decision: str,
    include: list[dict[str, Any]],
    session_duration: str,
    priority: Priority = Priority.BACKGROUND,
) -> AccessPolicy:
    checked, rules = _decision(decision), _rules(include)
    policy = call(
        "access.policies.create",
        lambda c: c.zero_trust.access.policies.create(
            account_id=account_id(),
            name=name,
            decision=checked,
            include=rules,
            session_duration=session_duration,
        ),
        priority=priority,
    )
    return _record("access.policies.create", AccessPolicy.from_sdk, policy)


def access_policy_update(
    policy_id: str,
    *,
    name: str,
    decision: str,
    include: list[dict[str, Any]],
    session_duration: str,
    priority: Priority = Priority.BACKGROUND,
) -> AccessPolicy:
    checked, rules = _decision(decision), _rules(include)
    policy = call(
        "access.policies.update",
        lambda c: c.zero_trust.access.policies.update(
            policy_id,
            account_id=account_id(),
            name=name,
            decision=checked,
            include=rules,
            session_duration=session_duration,
        ),
        priority=priority,
    )
    return _record("access.policies.update", AccessPolicy.from_sdk, policy)


_DECISIONS: dict[str, Decision] = {decision: decision for decision in get_args(Decision)}


def _decision(decision: str) -> Decision:
    """The decision as the SDK types it; one Cloudflare does not know is refused as Cloudflare would refuse it."""
    try:
        return _DECISIONS[decision]
    except KeyError:
        raise CloudflareError(f"{decision!r} is not an Access policy decision") from None


def _rules(include: list[dict[str, Any]]) -> list[AccessRuleParam]:
    """Access rules are Cloudflare's own JSON (read back from it, or built by our forms in its shape); the SDK sends
    them as they are, so they are handed over unchanged rather than rebuilt as one of its 26 rule types."""
    return cast(list[AccessRuleParam], include)


def access_policy_delete(policy_id: str, *, priority: Priority = Priority.BACKGROUND) -> None:
    call(
        "access.policies.delete",
        lambda c: c.zero_trust.access.policies.delete(policy_id, account_id=account_id()),
        priority=priority,
    )


def access_groups_all(*, priority: Priority = Priority.BACKGROUND) -> list[AccessGroup]:
    pages = _all_pages(
        "access.groups.list",
        lambda c, p: c.zero_trust.access.groups.list(account_id=account_id(), page=p, per_page=ACCESS_PAGE_SIZE),
        priority=priority,
    )
    return _records(AccessGroup.from_sdk, pages)


def service_tokens_all(*, priority: Priority = Priority.BACKGROUND) -> list[ServiceToken]:
    pages = _all_pages(
        "access.service_tokens.list",
        lambda c, p: c.zero_trust.access.service_tokens.list(
            account_id=account_id(), page=p, per_page=ACCESS_PAGE_SIZE
        ),
        priority=priority,
    )
    return _records(ServiceToken.from_sdk, pages)


def service_token_get(token_id: str, *, priority: Priority = Priority.BACKGROUND) -> ServiceToken:
    """One token as Cloudflare keeps it, with its expiry (which the create answer does not carry)."""
    token = call(
        "access.service_tokens.get",
        lambda c: c.zero_trust.access.service_tokens.get(token_id, account_id=account_id()),
        priority=priority,
    )
    return _record("access.service_tokens.get", ServiceToken.from_sdk, token)


def service_token_create(*, name: str, duration: str, priority: Priority = Priority.BACKGROUND) -> NewServiceToken:
    """The answer carries the client secret, which Cloudflare never shows again: the caller must not log it."""
    token = call(
        "access.service_tokens.create",
        lambda c: c.zero_trust.access.service_tokens.create(account_id=account_id(), name=name, duration=duration),
        priority=priority,
    )
    return _record("access.service_tokens.create", NewServiceToken.from_sdk, token)


def service_token_rotate(token_id: str, *, priority: Priority = Priority.BACKGROUND) -> NewServiceToken:
    """A new client secret for the token; Cloudflare stops taking the previous one at once.

    The answer carries the new secret, which Cloudflare never shows again: the caller must not log it.
    """
    token = call(
        "access.service_tokens.rotate",
        lambda c: c.zero_trust.access.service_tokens.rotate(token_id, account_id=account_id()),
        priority=priority,
    )
    return _record("access.service_tokens.rotate", NewServiceToken.from_sdk, token)


def service_token_refresh(token_id: str, *, priority: Priority = Priority.BACKGROUND) -> ServiceToken:
    """Extend the token's expiry by its duration from now; the token as it now is."""
    token = call(
        "access.service_tokens.refresh",
        lambda c: c.zero_trust.access.service_tokens.refresh(token_id, account_id=account_id()),
        priority=priority,
    )
    return _record("access.service_tokens.refresh", ServiceToken.from_sdk, token)


def service_token_delete(token_id: str, *, priority: Priority = Priority.BACKGROUND) -> None:
    call(
        "access.service_tokens.delete",
        lambda c: c.zero_trust.access.service_tokens.delete(token_id, account_id=account_id()),
        priority=priority,
    )


def access_users(*, email: str = "", search: str = "", priority: Priority = Priority.BACKGROUND) -> list[AccessUser]:
    """Access users with exactly this email, or whose email or name contains `search`."""
    pages = _all_pages(
        "access.users.list",
        lambda c, p: c.zero_trust.access.users.list(
            account_id=account_id(),
            page=p,
            per_page=ACCESS_PAGE_SIZE,
            email=email or cloudflare.omit,
            search=cloudflare.omit if email else search,
        ),
        priority=priority,
    )
    return _records(AccessUser.from_sdk, pages)


def access_users_in_domain(domain: str, *, priority: Priority = Priority.BACKGROUND) -> list[AccessUser]:
    """Access users whose address is exactly `…@domain` (a search also finds `@domain.other` and names)."""
    suffix = "@" + domain.lower().lstrip("@")
    return [user for user in access_users(search=suffix, priority=priority) if user.email.endswith(suffix)]


def access_user_sessions(user_id: str, *, priority: Priority = Priority.BACKGROUND) -> list[AccessSession]:
    page = call(
        "access.users.active_sessions",
        lambda c: c.zero_trust.access.users.active_sessions.list(user_id, account_id=account_id()),
        priority=priority,
    )
    return [AccessSession.from_sdk(item) for item in (page.result or [])]


def access_revoke_user(email: str, *, priority: Priority = Priority.BACKGROUND) -> bool:
    """End the user's sessions on every application, and on their devices.

    Cloudflare answers False when it had nothing to revoke (no such user, or no session): not a failure.
    """
    answer = call(
        "access.organizations.revoke_user",
        lambda c: c.zero_trust.organizations.revoke_users(
            account_id=account_id(), email=email, query_devices=True, body_devices=True
        ),
        priority=priority,
    )
    return answer is True


# --- Push events: notification webhook destinations and policies, and an Access bypass for their path -----------
# Everything here is created under a deterministic name carrying Gatehouse's mark, so a retried step finds what
# an interrupted one made, and only objects with that mark are ever changed or deleted.


def webhook_destinations(*, priority: Priority = Priority.BACKGROUND) -> list[records.WebhookDestination]:
    page = call(
        "alerting.webhooks.list",
        lambda c: c.alerting.destinations.webhooks.list(account_id=account_id()),
        priority=priority,
    )
    return _records(records.WebhookDestination.from_sdk, page.result)


def webhook_destination_save(
    *, name: str, url: str, secret: str, webhook_id: str = "", priority: Priority = Priority.BACKGROUND
) -> str:
    """Create the destination (or replace the one with `webhook_id`); Cloudflare posts its test message first.

    The secret goes out in the body and is never logged; Cloudflare never sends it back.
    """
    answer: object
    if webhook_id:
        answer = call(
            "alerting.webhooks.update",
            lambda c: c.alerting.destinations.webhooks.update(
                webhook_id, account_id=account_id(), name=name, url=url, secret=secret
            ),
            priority=priority,
        )
    else:
        answer = call(
            "alerting.webhooks.create",
            lambda c: c.alerting.destinations.webhooks.create(
                account_id=account_id(), name=name, url=url, secret=secret
            ),
            priority=priority,
        )
    try:
        return records.created_id(answer, "webhook destination")
    except records.Malformed as exc:
        raise CloudflareError(f"alerting.webhooks.save: Cloudflare answered with {exc}") from None


def webhook_destination_delete(webhook_id: str, *, priority: Priority = Priority.BACKGROUND) -> bool:
    """False when it was already gone."""
    try:
        call(
            "alerting.webhooks.delete",
            lambda c: c.alerting.destinations.webhooks.delete(webhook_id, account_id=account_id()),
            priority=priority,
        )
    except CloudflareNotFound:
        return False
    return True


def notification_policies(*, priority: Priority = Priority.BACKGROUND) -> list[records.NotificationPolicy]:
    page = call(
        "alerting.policies.list", lambda c: c.alerting.policies.list(account_id=account_id()), priority=priority
    )
    return _records(records.NotificationPolicy.from_sdk, page.result)


def notification_policy_save(
    *, name: str, alert_type: str, webhook_id: str, policy_id: str = "", priority: Priority = Priority.BACKGROUND
) -> str:
    """An enabled policy sending every event of `alert_type` (no filters: every tunnel) to the one webhook."""
    checked = _alert_type(alert_type)
    mechanisms = MechanismParam(webhooks=[{"id": webhook_id}])
    description = "Tunnel events for Gatehouse; created and removed by Gatehouse."
    answer: object
    if policy_id:
        answer = call(
            "alerting.policies.update",
            lambda c: c.alerting.policies.update(
                policy_id,
                account_id=account_id(),
                name=name,
                alert_type=checked,
                enabled=True,
                mechanisms=mechanisms,
                description=description,
            ),
            priority=priority,
        )
    else:
        answer = call(
            "alerting.policies.create",
            lambda c: c.alerting.policies.create(
                account_id=account_id(),
                name=name,
                alert_type=checked,
                enabled=True,
                mechanisms=mechanisms,
                description=description,
            ),
            priority=priority,
        )
    try:
        return records.created_id(answer, "notification policy")
    except records.Malformed as exc:
        raise CloudflareError(f"alerting.policies.save: Cloudflare answered with {exc}") from None


# The alert types Gatehouse subscribes to (tunnels/push.py); the SDK types the field as a Literal of every type.
TunnelAlertType = Literal["tunnel_health_event", "tunnel_update_event"]
_ALERT_TYPES: dict[str, TunnelAlertType] = {kind: kind for kind in get_args(TunnelAlertType)}


def _alert_type(alert_type: str) -> TunnelAlertType:
    try:
        return _ALERT_TYPES[alert_type]
    except KeyError:
        raise ValueError(f"Gatehouse makes no notification policy for {alert_type!r}") from None


def notification_policy_delete(policy_id: str, *, priority: Priority = Priority.BACKGROUND) -> bool:
    try:
        call(
            "alerting.policies.delete",
            lambda c: c.alerting.policies.delete(policy_id, account_id=account_id()),
            priority=priority,
        )
    except CloudflareNotFound:
        return False
    return True


def access_bypass_app_create(*, name: str, domain: str, policy_id: str) -> AccessApplication:
    """A self-hosted Access application on one path (`host/path`) admitting everyone through a bypass policy."""
    created = call(
        "access.applications.create",
        lambda c: c.zero_trust.access.applications.create(
            account_id=account_id(),
            type="self_hosted",
            name=name,
            domain=domain,
            policies=[PolicyLink(id=policy_id, precedence=1)],
            session_duration="24h",
        ),
        priority=Priority.BACKGROUND,
    )
    return _record("access.applications.create", AccessApplication.from_sdk, created)


def access_apps_named(name: str) -> list[AccessApplication]:
    found = call(
        "access.applications.list",
        lambda c: c.zero_trust.access.applications.list(account_id=account_id(), name=name, exact=True),
    )
    return [app for app in _records(AccessApplication.from_sdk, found.result) if app.name == name]
