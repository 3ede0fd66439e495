"""Setting which of a vendor's policies an application carries, without undoing anyone else's change to it."""

from collections.abc import Callable

from integrations import cloudflare as cf
from integrations import locks, records
from integrations.cloudflare import CloudflareTransient
from vendors.calls import Call
from vendors.models import Vendor
from vendors.steps.context import Context, StepFailed


def refuse_inline(apps: list[records.AccessApplication], reusable_ids: set[str]) -> None:
    """Stop before any write if an application to change still has app-scoped policies (see AccessApplication)."""
    names = [app.name for app in apps if app.inline_policies(reusable_ids)]
    if names:
        raise StepFailed(
            f"{', '.join(names)} still {'has' if len(names) == 1 else 'have'} application-scoped (legacy) policies, "
            "which Cloudflare does not combine with a vendor's reusable policy. At Cloudflare (Zero Trust → Access → "
            "Applications → the application → Policies), convert them to reusable policies, then retry."
        )


def app_generations(vendor: Vendor) -> dict[str, int]:
    """The lock generations of every application the vendor has been granted, noted before a step reads them."""
    app_ids = set(vendor.grants.values_list("application__cf_id", flat=True)) - {""}
    return {app_id: locks.generation(f"access-app:{app_id}") for app_id in app_ids}


def _set_policies(
    ctx: Context,
    app: records.AccessApplication,
    owned: Callable[[records.AccessPolicy], bool],
    target: set[str],
    known: set[str],
) -> str:
    refuse_inline([app], known)
    mine = {p.id for p in app.policies if owned(p)}
    if mine == target:
        return "already as wanted"
    refs = [ref for ref in app.references(known) if ref["id"] not in mine]
    top = max((ref["precedence"] for ref in refs), default=0)
    refs += [{"id": policy_id, "precedence": top + i} for i, policy_id in enumerate(sorted(target), 1)]
    cf.access_app_set_policies(app, refs, priority=ctx.priority)
    return "ok"


def app_write(
    ctx: Context,
    app: records.AccessApplication,
    owned: Callable[[records.AccessPolicy], bool],
    target: set[str],
    reusable: set[str],
    seen: dict[str, int],
) -> Call:
    """Set which of the vendor's policies the application carries (`target`), keeping everyone else's as they are.

    Cloudflare replaces the whole list on each PUT with no version check, so the write is made under the
    application's lock (see integrations.locks). If no run changed the application under the lock since the
    generation `seen` before this step's read, that read is written back as it is; otherwise the application is
    read again first, so another vendor's change is never undone.
    """
    verb = "attach to" if target else "detach from"

    def write() -> str:
        try:
            with locks.hold(f"access-app:{app.id}") as held:
                if seen.get(app.id) == held.generation:
                    fresh, known = app, reusable | target
                else:
                    fresh = cf.access_app_get(app.id, priority=ctx.priority)
                    known = reusable | target
                    if any(p.id not in known for p in fresh.policies):
                        # Attached since this step read the policies (another run's): read them again, not guess.
                        known |= {p.id for p in cf.access_policies_all(priority=ctx.priority)}
                answer = _set_policies(ctx, fresh, owned, target, known)
                if answer == "ok":
                    held.changed()
                return answer
        except locks.LockTimeout:
            raise CloudflareTransient(f"access.apps.update: {app.name} is being changed by another run") from None

    return Call("access.apps.update", f"{verb} {app.name}", write, missing_ok=not target, describe=str)
