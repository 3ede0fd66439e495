import uuid
from typing import ClassVar

from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone

from dashboard.choices import ChoiceField, ColouredChoices


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email, password=None, **extra_fields):
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra_fields):
        return self.create_user(email, role=User.Role.ADMIN, **extra_fields)


class User(AbstractUser):
    """A person who signs in with Google. Gatehouse keeps no passwords."""

    class Role(ColouredChoices):
        VIEWER = "viewer", "Viewer", "grey"
        OPERATOR = "operator", "Operator", "blue"
        ADMIN = "admin", "Admin", "purple"

        @property
        def rank(self) -> int:
            return [self.VIEWER, self.OPERATOR, self.ADMIN].index(self)

    username = None  # type: ignore[assignment]  # stubs: a custom user may drop it, as Django documents
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField("email address", unique=True)
    role = ChoiceField(Role, max_length=16, default=Role.VIEWER)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []
    # The stubs type AbstractUser's manager as auth's UserManager; Django documents a BaseUserManager of one's own.
    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]

    class Meta:
        ordering = ["email"]

    def __str__(self):
        return self.email

    def has_role(self, role: "User.Role") -> bool:
        return User.Role(self.role).rank >= User.Role(role).rank


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("The audit log is append-only")

    def delete(self):
        raise TypeError("The audit log is append-only")


class AuditEntry(models.Model):
    """One row per mutating action. Rows are never changed or removed (a database trigger agrees)."""

    at = models.DateTimeField(default=timezone.now)
    # The actor is kept as text, not a foreign key, so the entry outlives any change to the user.
    actor_email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        # Pages are read newest first by (at, id); each filter has an index that ends in those two columns, so
        # a page is an index seek whatever the filter, the time range or the depth.
        indexes = [
            models.Index(fields=["at", "id"], name="audit_at_id"),
            models.Index(fields=["actor_email", "at", "id"], name="audit_actor_at_id"),
            models.Index(fields=["action", "at", "id"], name="audit_action_at_id"),
            models.Index(fields=["target_id", "at", "id"], name="audit_target_at_id"),
            models.Index(fields=["target_label", "at", "id"], name="audit_label_at_id"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_email or 'system'} {self.action}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("The audit log is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("The audit log is append-only")

    @property
    def actor_display(self) -> str:
        if self.actor_email:
            return self.actor_email
        # A refused sign-in has no actor: whoever tried was never signed in (the address they claimed is a detail).
        return "not signed in" if self.action.startswith("auth.") else "system"

    @property
    def action_label(self) -> str:
        from dashboard.audit_actions import AUDIT_ACTIONS

        return AUDIT_ACTIONS.get(self.action, self.action)


class Heartbeat(models.Model):
    """When a background process last proved it was alive; the Settings page shows it."""

    name = models.CharField(max_length=32, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} at {self.seen_at:%H:%M:%S}"
