"""The steps of vendor workflows, by the key a WorkflowStep row names.

Each step reads Cloudflare's current state before changing it, so a step run twice (a worker killed mid-step, a
message delivered again) leaves the world as after once.
"""

from collections.abc import Callable

from vendors.steps.context import Context
from vendors.steps.ending import step_cut_off, step_end_access, step_end_grant_sessions, step_quiesce
from vendors.steps.granting import step_attach, step_notify, step_policy, step_tokens, step_validate
from vendors.steps.verifying import step_verify_granted, step_verify_grants_ended, step_verify_revoked

STEP_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "validate": step_validate,
    "policy": step_policy,
    "attach": step_attach,
    "tokens": step_tokens,
    "notify": step_notify,
    "verify_granted": step_verify_granted,
    "end_grant_sessions": step_end_grant_sessions,
    "quiesce": step_quiesce,
    "cut_off": step_cut_off,
    "end_access": step_end_access,
    "verify_revoked": step_verify_revoked,
    "verify_grants_ended": step_verify_grants_ended,
}
