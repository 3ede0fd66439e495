"""What a vendor workflow step is given (its run, vendor, priority and receipt) and how it says it cannot go on
(the shared engine's StepFailed, StepWait and VerificationFailed)."""

from dataclasses import dataclass, field
from typing import Any

from dashboard import operations
from dashboard.operations import StepFailed, StepWait, VerificationFailed
from integrations.cloudflare import Priority
from vendors.models import Vendor, WorkflowRun


@dataclass
class Context:
    run: WorkflowRun
    vendor: Vendor
    priority: Priority
    answers: list[dict[str, Any]] = field(default_factory=list)

    def note(self, call: str, target: str, answer: str) -> None:
        operations.note(self, call=call, target=target, answer=answer)


__all__ = ["Context", "StepFailed", "StepWait", "VerificationFailed"]
