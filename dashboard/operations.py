"""One engine for the changes Gatehouse makes at Cloudflare: a row per operation, ordered step rows, a lease, retries
and audit, so every operation is visible while it runs and resumable the same way.

An operation is a row (`Operation`) with ordered steps (`OperationStep`), advanced one step at a time by a task.
A worker holds a lease on the row while it executes a step; a replacement waits out the lease instead of racing
the first. Each step is committed with the receipt of the Cloudflare calls it made before the next starts, so a
worker killed between steps leaves the operation where the database says, for a retry or a resume sweep to take
up. An app says what its steps do and what follows success or a stop by subclassing `Engine`.

Each run is about one subject (a row: the vendor, the application, the tunnel), and the engine carries out one run
per subject at a time. `Engine.start` records runs under the subject's row lock and says what becomes of a request
while another run on the subject is under way (`WhenBusy`: refused, waits its turn, or folded into the active run);
`advance` lets a run go on only once every run recorded before it on its subject has ended.
"""

import enum
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from dashboard.choices import ChoiceField, ColouredChoices
from dashboard.leases import Renewal, lease_seconds
from dashboard.requestinfo import RequestOrigin
from integrations.cloudflare import CloudflareError, CloudflareTransient

if TYPE_CHECKING:
    from django.db.models.expressions import Combinable
    from django.db.models.fields.related_descriptors import RelatedManager

log = logging.getLogger(__name__)


class Operation(models.Model):
    """The row of one operation: who asked, from where, how far it got, and what its steps pass on to the next."""

    class Status(ColouredChoices):
        PENDING = "pending", "Waiting", "blue"
        RUNNING = "running", "Running", "blue"
        SUCCEEDED = "succeeded", "Done", "green"
        FAILED = "failed", "Stopped", "red"
        NEEDS_ATTENTION = "needs_attention", "Needs attention", "red"
        CANCELLED = "cancelled", "Cancelled", "grey"

    ACTIVE = (Status.PENDING, Status.RUNNING)

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # An app may name the statuses its pages show in a Status of its own (the values stay the engine's).
    status: "ChoiceField[str | int | Combinable, ColouredChoices]" = ChoiceField(
        Status, max_length=20, default=Status.PENDING
    )
    reason = models.CharField(max_length=1000, blank=True)
    actor_email = models.CharField(max_length=254, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    # What one step learns at Cloudflare and a later step needs (ids found, applications touched).
    data = models.JSONField(default=dict, blank=True)
    # While a worker runs a step it holds the lease and renews it (dashboard/leases.py); a replacement worker
    # waits out a lease that is no longer renewed (its worker died) before taking over.
    lease_until = models.DateTimeField(null=True, blank=True)
    # When the task that comes back for it (after a retry's backoff, or a wait) is due: until a while after, the
    # resume pass leaves the operation to that task.
    resume_after = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    # What every concrete operation has: its manager, and its steps (the step model's `run`, related_name "steps").
    objects: ClassVar[models.Manager[Self]]
    steps: "RelatedManager[Any]"

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.created_at
        return None

    @property
    def request_origin(self) -> RequestOrigin:
        return RequestOrigin(source_ip=self.source_ip, request_id=self.request_id)


class OperationStep(models.Model):
    """One step of an operation (the concrete model adds `run`, a foreign key with related_name "steps")."""

    class Status(ColouredChoices):
        PENDING = "pending", "Waiting", "grey"
        RUNNING = "running", "Running", "blue"
        DONE = "done", "Done", "green"
        FAILED = "failed", "Failed", "red"

    OPEN = (Status.PENDING, Status.RUNNING)

    position = models.PositiveSmallIntegerField()
    key = models.CharField(max_length=32)
    label = models.CharField(max_length=200)
    status = ChoiceField(Status, max_length=16, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Every Cloudflare call the step made and what Cloudflare answered: the receipt.
    answers = models.JSONField(default=list, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[models.Manager[Self]]

    class Meta:
        abstract = True

    def __str__(self):
        return f"{self.position}. {self.label}"

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class StepFailed(Exception):
    """The step cannot succeed as things stand; the operation stops with this reason until someone retries it."""


class VerificationFailed(Exception):
    """Cloudflare, read back, does not show what the operation was meant to achieve."""

    def __init__(self, findings: list[str]):
        super().__init__("; ".join(findings))
        self.findings = findings


class StepWait(Exception):
    """Not yet: try the same step again after `seconds`; `reason` says why, and is the operation's if the task
    runs out of tries."""

    def __init__(self, seconds: float, *, reason: str = ""):
        super().__init__(reason or f"waiting {seconds:.1f} s")
        self.seconds = seconds
        self.reason = reason


class SubjectBusy(ValidationError):
    """Another run on the same subject is under way: the request is refused, with what to do."""


class WhenBusy(enum.Enum):
    """What becomes of a request for a run while another run on the same subject is under way."""

    # Refused with the engine's `busy_message`.
    REFUSE = "refuse"
    # Recorded, and carried out once every run recorded before it on the subject has ended.
    WAIT = "wait"
    # Joined to the active run, which reads its subject afresh: one not started yet will see the request anyway;
    # a running one is marked `again` (the run model's boolean), for the engine's `succeeded` or `stopped` to follow
    # it with another run.
    FOLD = "fold"


class Receipt(Protocol):
    """What a step is given: it notes each call it makes in `answers`, which the step row keeps."""

    answers: list[dict[str, Any]]


# What the step row keeps of one answer: enough to say what Cloudflare said, bounded.
_MAX_ANSWER = 300


def note(receipt: Receipt, *, call: str, target: str, answer: str) -> None:
    """Add one Cloudflare call and its answer to the step's receipt."""
    receipt.answers.append(
        {"at": timezone.now().isoformat(), "call": call, "target": target[:200], "answer": answer[:_MAX_ANSWER]}
    )


@dataclass(frozen=True)
class Outcome:
    """What the task should do next: nothing (`done`), the same operation again after `wait` seconds, or (`go_on`)
    its next step at once: the step just done is committed, so the worker that did it may take the next one itself.
    A step that asked to wait says why in `reason` (empty when another worker holds the lease), as does a run
    left to wait its turn (done: the run ahead sends its task when it ends)."""

    done: bool = True
    wait: float = 0.0
    go_on: bool = False
    reason: str = ""


# A step tried this often without an answer (its worker killed or timed out each time) stops the operation, rather
# than being sent to worker after worker for ever.
MAX_STEP_ATTEMPTS = 20


def retry_countdown(*, retries: int, retry_after: float | None, first: float = 1.0, cap: float = float("inf")) -> float:
    """Seconds before a task retries after a temporary Cloudflare error: `first`, doubling with each retry up to
    `cap`, or longer when Cloudflare (or the call budget) says when to come back."""
    return max(retry_after or 0.0, min(cap, first * 2.0**retries))


def background_read_retry(task: Any, exc: CloudflareTransient, *, what: str, first: float) -> None:
    """A scheduled read that met a temporary Cloudflare error (a 5xx, a 429, the call budget spent): try again with
    `retry_countdown`'s backoff; once the task's retries are spent, give way with a warning, since beat's schedule
    reads again (an error would be counted as a task that failed)."""
    retries = task.request.retries
    if retries >= task.max_retries:
        log.warning("%s: %s; the next scheduled pass reads again", what, exc.message)
        return
    raise task.retry(countdown=retry_countdown(retries=retries, retry_after=exc.retry_after, first=first, cap=300.0))


class Engine[RunT: Operation, StepT: OperationStep, ReceiptT: Receipt]:
    """Runs the steps of one kind of operation. A subclass names its models and says what its steps do (`receipt`,
    `execute`), which task advances a run (`enqueue`), how it is audited (`audit`), and what follows success
    (`succeeded`), a stop (`stopped`) or a retry (`retried`). Every engine is listed in GATEHOUSE_OPERATION_ENGINES,
    so that the resume pass finds its runs."""

    run_model: type[RunT]
    step_model: type[StepT]
    # Relations a step and the hooks read from the run, loaded with it.
    related: ClassVar[tuple[str, ...]] = ()
    # The foreign key naming what a run is about (the vendor, the application, the tunnel). The engine locks that
    # row before the run, as the apps' services lock it before they touch its runs, so that a request and a worker
    # never each hold what the other waits for; and it carries out one run per subject at a time, `when_busy`
    # saying what becomes of a request meanwhile. A run whose subject is null (a tunnel not made yet) is alone.
    subject: ClassVar[str] = ""
    when_busy: ClassVar[WhenBusy] = WhenBusy.REFUSE
    # A task meeting temporary Cloudflare errors retries after `retry_first` seconds, doubling up to `retry_cap`,
    # at most `max_retries` times before the operation stops with Cloudflare's reason.
    retry_first: ClassVar[float] = 1.0
    retry_cap: ClassVar[float] = float("inf")
    # How long one task goes on from step to step before handing the run back to the broker, so that a long run
    # cannot hold a worker from other runs (and stays far inside the task time limit).
    go_on_seconds: ClassVar[float] = 20.0

    def enqueue(self, run_id: int, *, countdown: float = 0.0) -> None:
        """Send the task that advances the run."""
        raise NotImplementedError

    def receipt(self, run: RunT) -> ReceiptT:
        raise NotImplementedError

    def execute(self, step: StepT, receipt: ReceiptT) -> None:
        raise NotImplementedError

    def audit(self, run: RunT, event: str, details: dict[str, Any]) -> None:
        raise NotImplementedError

    def succeeded(self, run: RunT) -> dict[str, Any]:
        """After every step is done, in the same transaction; returns what the audit entry adds."""
        return {}

    def stopped(self, run: RunT, step: StepT, *, reason: str, findings: list[str]) -> None:
        """After the operation stopped at `step`, in the same transaction."""

    def retried(self, run: RunT, *, actor: Any, request_origin: RequestOrigin | None) -> None:
        """After `actor` asked for a stopped operation to go on, in the same transaction: the app's own state and
        its audit entry."""

    def busy_message(self, active: RunT) -> str:
        """What a request is told when `active`, on the same subject, keeps it from being carried out now."""
        return "Another change to this is under way; wait for it to finish."

    def waiting_message(self, ahead: RunT) -> str:
        """What a run waiting for `ahead` (recorded before it on the same subject) shows on its open step."""
        return "Waiting for the change asked before it to finish."

    def start(self, run: RunT, *, steps: list[tuple[str, str]], enqueue: bool = True) -> RunT:
        """Record `run` (unsaved) with these steps, its task sent once this commits unless `enqueue` is False — or,
        while a run on the same subject is under way, refuse it (SubjectBusy) or return the active run it is
        folded into, as `when_busy` says. Requests for one subject are recorded one after another under its row
        lock, so that runs on a subject are carried out in the order they were recorded."""
        with transaction.atomic():
            subject_id = self._subject_lock(run)
            active = self._active_on(subject_id).order_by("-pk").first() if subject_id is not None else None
            if active is not None and self.when_busy is WhenBusy.REFUSE:
                raise SubjectBusy(self.busy_message(active))
            if active is not None and self.when_busy is WhenBusy.FOLD:
                # `again` is a field of the run models of FOLD engines only.
                if active.status == Operation.Status.RUNNING and not cast(Any, active).again:
                    self.run_model.objects.filter(pk=active.pk).update(again=True)
                return active
            run.save()
            self.create_steps(run, steps)
            if enqueue:
                transaction.on_commit(lambda: self.enqueue(run.pk))
        return run

    def _subject_field(self) -> Any:
        """The run's foreign key to its subject (whose model is the app's, so typed loosely)."""
        return self.run_model._meta.get_field(self.subject)

    def _subject_id(self, run: RunT) -> Any:
        return getattr(run, self._subject_field().attname) if self.subject else None

    def _subject_lock(self, run: RunT) -> Any:
        """Lock the run's subject row until the transaction ends; its id (None for a run without one)."""
        subject_id = self._subject_id(run)
        if subject_id is not None:
            subject = self._subject_field().related_model
            list(subject.objects.select_for_update().filter(pk=subject_id).values_list("pk", flat=True))
        return subject_id

    def _active_on(self, subject_id: Any) -> "models.QuerySet[RunT]":
        attname = self._subject_field().attname
        return self.run_model.objects.filter(**{attname: subject_id}, status__in=Operation.ACTIVE)

    def _turn(self, run_id: int) -> Outcome | None:
        """None when the run may go on. Otherwise a run recorded before it on its subject is under way: its open
        step names that run, and the task is done with it. The run ahead sends its task again as it ends
        (`_hand_over`), and the resume pass, should that be lost."""
        run = self.run_model.objects.filter(pk=run_id, status__in=Operation.ACTIVE).first()
        subject_id = self._subject_id(run) if run is not None else None
        if subject_id is None:
            return None
        ahead = self._active_on(subject_id).filter(pk__lt=run_id).order_by("pk").first()
        if ahead is None:
            return None
        open_steps = self.step_model.objects.filter(run_id=run_id, status__in=OperationStep.OPEN).order_by("position")
        if (step_id := open_steps.values_list("pk", flat=True).first()) is not None:
            self.step_model.objects.filter(pk=step_id).update(error=self.waiting_message(ahead)[:1000])
        return Outcome(reason=self.waiting_message(ahead))

    def _hand_over(self, run: RunT) -> None:
        """The run has ended: send the task of the next run waiting on its subject. (Under the other rules, the
        only run that can follow is one a hook started, and `start` sends its task.)"""
        subject_id = self._subject_id(run)
        if subject_id is None or self.when_busy is not WhenBusy.WAIT:
            return
        following = self._active_on(subject_id).exclude(pk=run.pk).order_by("pk").values_list("pk", flat=True)
        if (next_id := following.first()) is not None:
            transaction.on_commit(lambda: self.enqueue(next_id))

    def create_steps(self, run: RunT, steps: list[tuple[str, str]]) -> None:
        self.step_model.objects.bulk_create(
            self.step_model(run=run, position=i, key=key, label=label) for i, (key, label) in enumerate(steps, 1)
        )

    def _lock(self, run_id: int) -> RunT | None:
        """The run, locked until the transaction ends (after its subject's row)."""
        if self.subject:
            field = self._subject_field()
            subject = self.run_model.objects.filter(pk=run_id).values(field.attname)
            list(field.related_model.objects.select_for_update().filter(pk__in=subject).values_list("pk", flat=True))
        locked = self.run_model.objects.select_for_update()
        locked = locked.select_related(*self.related) if self.related else locked
        return locked.filter(pk=run_id).first()

    def advance(self, *, run_id: int) -> Outcome:
        """Run the next step of the operation, if it is still active, its turn has come and no other worker holds
        it."""
        if (waiting := self._turn(run_id)) is not None:
            return waiting
        now = timezone.now()
        with transaction.atomic():
            run = self._lock(run_id)
            if run is None or not run.is_active:
                return Outcome()
            if run.lease_until and run.lease_until > now:
                return Outcome(done=False, wait=(run.lease_until - now).total_seconds() + 0.1)
            step = run.steps.filter(status__in=OperationStep.OPEN).first()
            if step is None:
                self._finish(run)
                return Outcome()
            worn_out = step.attempts >= MAX_STEP_ATTEMPTS
            if run.status == Operation.Status.PENDING:
                run.started_at = now
                self.audit(run, "started", {})
            run.status = Operation.Status.RUNNING
            run.lease_until = now + timedelta(seconds=lease_seconds())
            run.save(update_fields=["status", "started_at", "lease_until", "updated_at"])
            step.status = OperationStep.Status.RUNNING
            step.attempts += 1
            step.started_at = step.started_at or now
            if not worn_out:
                step.save(update_fields=["status", "attempts", "started_at"])
        receipt = self.receipt(run)
        if worn_out:
            reason = f"Stopped after {MAX_STEP_ATTEMPTS} attempts at this step that never finished (a worker was "
            self._stop(run, step, receipt, status=Operation.Status.FAILED, reason=reason + "stopped or timed out).")
            return Outcome()
        held = [run.lease_until]
        try:
            with Renewal(lambda until: self._renew(run.pk, held, until)):
                self.execute(step, receipt)
        except StepWait as wait:
            self._release(run, step, receipt, error=wait.reason, lease=held[0])
            return Outcome(done=False, wait=wait.seconds, reason=wait.reason)
        except CloudflareTransient as exc:
            self._release(run, step, receipt, error=exc.message, lease=held[0])
            raise
        except VerificationFailed as exc:
            self._stop(
                run,
                step,
                receipt,
                status=Operation.Status.NEEDS_ATTENTION,
                reason=str(exc),
                findings=exc.findings,
                lease=held[0],
            )
            return Outcome()
        except (CloudflareError, StepFailed) as exc:
            self._stop(run, step, receipt, status=Operation.Status.FAILED, reason=str(exc), lease=held[0])
            return Outcome()
        except Exception as exc:
            # A fault of Gatehouse's own (or a step that ran out of time): stop visibly, for a retry once it is
            # fixed, rather than leave the operation running for the resume pass to send round again.
            log.exception("%s %s stopped at step %s", self.run_model.__name__, run.pk, step.key)
            reason = f"Gatehouse could not carry out this step ({type(exc).__name__}); the worker's log says why."
            self._stop(run, step, receipt, status=Operation.Status.FAILED, reason=reason, lease=held[0])
            return Outcome()
        if self._complete(run, step, receipt, lease=held[0]):
            return Outcome(done=False, go_on=True)
        return Outcome()

    def _renew(self, run_id: int, held: list, until) -> bool:
        """Move the lease this worker holds to `until`; False once it is not this worker's (taken over, ended)."""
        if not self.run_model.objects.filter(pk=run_id, lease_until=held[0]).update(lease_until=until):
            return False
        held[0] = until
        return True

    def give_up(self, *, run_id: int, reason: str) -> None:
        """Cloudflare kept answering with temporary errors past every retry: stop the operation where it is."""
        with transaction.atomic():
            run = self._lock(run_id)
            if run is None or not run.is_active:
                return
            step = run.steps.filter(status__in=OperationStep.OPEN).first()
        if step is not None:
            self._stop(run, step, self.receipt(run), status=Operation.Status.FAILED, reason=reason)

    def advance_for_a_while(self, *, run_id: int) -> Outcome:
        """Advance the run step after step for up to `go_on_seconds`; the outcome says what is left to do (`go_on`
        still set: time is up, the next step is for another task). CloudflareTransient is the caller's."""
        give_back_at = time.monotonic() + self.go_on_seconds
        outcome = self.advance(run_id=run_id)
        while outcome.go_on and time.monotonic() < give_back_at:
            outcome = self.advance(run_id=run_id)
        return outcome

    def drive(self, task: Any, run_id: int) -> None:
        """The body of the Celery task that advances a run (`task` is bound). Temporary Cloudflare errors and
        waits that give a reason spend one of the task's retries, with the backoff of `retry_countdown`; once they
        are spent, the operation stops with the last reason. A run another worker holds is looked at again when
        its lease lapses, without spending a retry."""
        retries = task.request.retries
        try:
            outcome = self.advance_for_a_while(run_id=run_id)
        except CloudflareTransient as exc:
            if retries >= task.max_retries:
                self.give_up(run_id=run_id, reason=f"Cloudflare kept failing: {exc.message}")
                return
            countdown = retry_countdown(
                retries=retries, retry_after=exc.retry_after, first=self.retry_first, cap=self.retry_cap
            )
            self.coming_back(run_id, countdown=countdown)
            raise task.retry(countdown=countdown) from None
        if outcome.done:
            return
        if outcome.go_on or not outcome.reason:
            self.enqueue_later(run_id, countdown=outcome.wait)
            return
        if retries >= task.max_retries:
            self.give_up(run_id=run_id, reason=outcome.reason)
            return
        countdown = retry_countdown(
            retries=retries, retry_after=outcome.wait, first=self.retry_first, cap=self.retry_cap
        )
        self.coming_back(run_id, countdown=countdown)
        raise task.retry(countdown=countdown)

    def coming_back(self, run_id: int, *, countdown: float) -> None:
        """Note when the task that comes back for the run is due, so that the resume pass does not send another
        one meanwhile (which would not wait out the backoff)."""
        due = timezone.now() + timedelta(seconds=countdown)
        self.run_model.objects.filter(pk=run_id).update(resume_after=due)

    def enqueue_later(self, run_id: int, *, countdown: float) -> None:
        if countdown > 0:
            self.coming_back(run_id, countdown=countdown)
        self.enqueue(run_id, countdown=countdown)

    def runs_to_resume(self, *, idle_for: timedelta) -> list[int]:
        """Active operations nobody is working on: no lease (or an expired one), no progress for a while, and no
        task due to come back for them (or one that is overdue by as long)."""
        now = timezone.now()
        return list(
            self.run_model.objects.filter(status__in=Operation.ACTIVE, updated_at__lt=now - idle_for)
            .exclude(lease_until__gt=now)
            .exclude(resume_after__gt=now - idle_for)
            .values_list("pk", flat=True)
        )

    def runs_to_resume_on_start(self) -> list[int]:
        """What a starting worker takes (perhaps in place of one that was killed): every active run, leased or not
        (the task waits out a dead worker's lease itself), but those whose task is due to come back later."""
        active = self.run_model.objects.filter(status__in=Operation.ACTIVE)
        return list(active.exclude(resume_after__gt=timezone.now()).values_list("pk", flat=True))

    def resume(self, *, on_start: bool = False) -> int:
        """Send the task again for active runs no worker is on (a worker died, or its message was lost)."""
        if on_start:
            runs = self.runs_to_resume_on_start()
        else:
            runs = self.runs_to_resume(idle_for=timedelta(seconds=min(30.0, lease_seconds())))
        for run_id in runs:
            self.enqueue(run_id)
        return len(runs)

    def retry(self, *, run_id: int, actor: Any, request_origin: RequestOrigin | None) -> RunT:
        """Go on with a stopped operation from the step that stopped it; its task is sent once this commits."""
        with transaction.atomic():
            run = self._lock(run_id)
            assert run is not None  # the caller has just read it
            if run.status not in (Operation.Status.FAILED, Operation.Status.NEEDS_ATTENTION):
                raise ValidationError("Only a stopped change can be retried.")
            subject_id = self._subject_id(run)
            if subject_id is not None and (active := self._active_on(subject_id).first()) is not None:
                raise SubjectBusy(self.busy_message(active))
            run.steps.filter(status=OperationStep.Status.FAILED).update(
                status=OperationStep.Status.PENDING, finished_at=None
            )
            run.status = Operation.Status.RUNNING
            run.reason = ""
            run.finished_at = None
            run.save(update_fields=["status", "reason", "finished_at", "updated_at"])
            self.retried(run, actor=actor, request_origin=request_origin)
            transaction.on_commit(lambda: self.enqueue(run.pk))
        return run

    def _superseded(self, run_id: int, lease: datetime | None) -> bool:
        """Whether another worker took the run over while this one worked on its step (its lease lapsed unrenewed):
        then this worker records nothing of the step, which the other carries out again."""
        if lease is None or self.run_model.objects.filter(pk=run_id, lease_until=lease).exists():
            return False
        log.warning(
            "%s %s: another worker took the step over; this worker's result is dropped", self.run_model.__name__, run_id
        )
        return True

    def _release(self, run: RunT, step: StepT, receipt: ReceiptT, *, error: str, lease: datetime | None = None) -> None:
        with transaction.atomic():
            if lease is not None:
                self._lock(run.pk)
            if self._superseded(run.pk, lease):
                return
            self.step_model.objects.filter(pk=step.pk).update(
                answers=step.answers + receipt.answers, error=error[:1000]
            )
            self.run_model.objects.filter(pk=run.pk).update(lease_until=None, data=run.data, updated_at=timezone.now())

    def _complete(self, run: RunT, step: StepT, receipt: ReceiptT, *, lease: datetime | None = None) -> bool:
        """Record the step as done, in its own transaction; whether the operation still has work (not cancelled,
        and still this worker's)."""
        with transaction.atomic():
            current = self._lock(run.pk)
            assert current is not None  # the run this worker holds
            if self._superseded(run.pk, lease):
                return False
            step.status = OperationStep.Status.DONE
            step.finished_at = timezone.now()
            step.answers = step.answers + receipt.answers
            step.error = ""
            step.save(update_fields=["status", "finished_at", "answers", "error"])
            current.lease_until = None
            current.data = run.data
            current.save(update_fields=["lease_until", "data", "updated_at"])
            self.audit(
                current, "step_done", {"step": step.label, "calls": len(receipt.answers), "attempts": step.attempts}
            )
        return current.is_active

    def _finish(self, run: RunT) -> None:
        """Every step is done: the operation succeeded."""
        run.status = Operation.Status.SUCCEEDED
        run.finished_at = timezone.now()
        run.lease_until = None
        run.save(update_fields=["status", "finished_at", "lease_until", "updated_at"])
        self.audit(run, "succeeded", self.succeeded(run))
        self._hand_over(run)

    def _stop(
        self,
        run: RunT,
        step: StepT,
        receipt: ReceiptT,
        *,
        status: Operation.Status,
        reason: str,
        findings: list[str] | None = None,
        lease: datetime | None = None,
    ) -> None:
        with transaction.atomic():
            current = self._lock(run.pk)
            assert current is not None  # the run this worker holds
            if self._superseded(run.pk, lease):
                return
            step.status = OperationStep.Status.FAILED
            step.finished_at = timezone.now()
            step.answers = step.answers + receipt.answers
            step.error = reason[:1000]
            step.save(update_fields=["status", "finished_at", "answers", "error"])
            current.lease_until = None
            current.data = run.data
            if not current.is_active:
                current.save(update_fields=["lease_until", "data", "updated_at"])
                return
            current.status = status
            current.reason = reason[:1000]
            current.finished_at = timezone.now()
            current.save(update_fields=["status", "reason", "lease_until", "data", "finished_at", "updated_at"])
            self.stopped(current, step, reason=reason, findings=findings or [])
            event = "needs_attention" if status == Operation.Status.NEEDS_ATTENTION else "failed"
            self.audit(current, event, {"step": step.label, "reason": reason, "findings": findings or []})
            self._hand_over(current)


@cache
def engines() -> list[Engine[Any, Any, Any]]:
    """One of each engine GATEHOUSE_OPERATION_ENGINES names."""
    return [import_string(path)() for path in settings.GATEHOUSE_OPERATION_ENGINES]


def operations_resume(*, on_start: bool = False) -> int:
    """The resume pass over every kind of operation: how many runs were sent to a worker again."""
    return sum(engine.resume(on_start=on_start) for engine in engines())
