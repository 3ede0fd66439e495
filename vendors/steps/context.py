"""What a vendor workflow step is given (its run, vendor, priority and receipt) and how it says it cannot go on
(the shared engine's StepFailed, StepWait and VerificationFailed)."""

from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from dashboard.operations import StepFailed, StepWait, VerificationFailed
from integrations.cloudflare import Priority
from vendors.models import Vendor, WorkflowRun

_MAX_ANSWER = 300


@dataclass
class Context:
    run: WorkflowRun
    vendor: Vendor
    priority: Priority
    answers: list[dict[str, Any]] = field(default_factory=list)

    def note(self, call: str, target: str, answer: str) -> None:
        self.answers.append(
            {"at": timezone.now().isoformat(), "call": call, "target": target[:200], "answer": answer[:_MAX_ANSWER]}
        )


__all__ = ["Context", "StepFailed", "StepWait", "VerificationFailed"]
