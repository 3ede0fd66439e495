"""The vendor's own rows as steps read them, and how a step tells the vendor's objects at Cloudflare from others."""

from collections.abc import Callable

from integrations import cloudflare as cf
from integrations import records
from vendors.calls import Call, run_concurrently
from vendors.models import Grant, ServiceToken, Vendor
from vendors.steps.context import Context


def _recorded_policy_ids(vendor: Vendor) -> set[str]:
    ids = vendor.grants.values_list("cf_policy_id", "cf_service_policy_id")
    return {policy_id for pair in ids for policy_id in pair} - {""}


def owned_by(vendor: Vendor) -> Callable[[records.AccessPolicy], bool]:
    """Whether a policy is the vendor's own: by its deterministic name, or by an id Gatehouse recorded."""
    recorded = _recorded_policy_ids(vendor)
    return lambda policy: vendor.owns_policy_name(policy.name) or (bool(policy.id) and policy.id in recorded)


def active_tokens(vendor: Vendor) -> list[ServiceToken]:
    return list(vendor.service_tokens.filter(status=ServiceToken.Status.ACTIVE).exclude(cf_id=""))


def active_grants(vendor: Vendor) -> list[Grant]:
    return list(vendor.grants.filter(status=Grant.Status.ACTIVE).select_related("application"))


def our_tokens(vendor: Vendor, tokens: list[records.ServiceToken]) -> list[records.ServiceToken]:
    recorded = set(vendor.service_tokens.exclude(cf_id="").values_list("cf_id", flat=True))
    return [t for t in tokens if t.id in recorded or t.name.startswith(vendor.token_prefix)]


def wanted_on(grant: Grant, with_tokens: bool) -> set[str]:
    return {grant.cf_policy_id} | ({grant.cf_service_policy_id} if with_tokens else set())


def read_apps_and_policies(ctx: Context) -> tuple[list[records.AccessApplication], list[records.AccessPolicy]]:
    apps, policies = run_concurrently(
        ctx,
        [
            Call("access.apps.list", "account", lambda: cf.access_apps_all(priority=ctx.priority)),
            Call("access.policies.list", "account", lambda: cf.access_policies_all(priority=ctx.priority)),
        ],
    )
    return apps, policies
