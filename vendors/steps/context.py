"""What a vendor workflow step is given (its run, vendor, priority and receipt) and how it says it cannot go on."""

from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from integrations.cloudflare import Priority
from vendors.models import Vendor, WorkflowRun

_MAX_ANSWER = 300


class StepFailed(Exception):
    """The step cannot succeed as things stand; the run stops with this reason until someone retries it."""


class VerificationFailed(Exception):
    """Cloudflare, read back, does not show what the run was meant to achieve."""

    def __init__(self, findings: list[str]):
        super().__init__("; ".join(findings))
        self.findings = findings


class StepWait(Exception):
    """Not yet: try the same step again after `seconds`."""

    def __init__(self, seconds: float):
        super().__init__(f"waiting {seconds:.1f} s")
        self.seconds = seconds


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
