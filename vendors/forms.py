from datetime import date, datetime, time, timedelta
from typing import cast

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from dashboard.models import User
from vendors.models import CONSUMER_DOMAINS, AccessApplication, Vendor, parse_session, validate_domain

_MAX_LINES = 200


def _lines(value: str) -> list[str]:
    items = [part.strip().lower() for part in value.replace(",", "\n").splitlines() if part.strip()]
    if len(items) > _MAX_LINES:
        raise ValidationError(f"At most {_MAX_LINES} entries.")
    return sorted(set(items))


class ApplicationChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: AccessApplication) -> str:
        if obj.inline_policies:
            return f"{obj.name} (cannot be granted yet: convert its app-scoped policies at Cloudflare)"
        return obj.name


def _end_of(day: date) -> datetime:
    """Access granted until `day` lasts until 23:59 that day, in Gatehouse's time zone."""
    return datetime.combine(day, time(23, 59), tzinfo=timezone.get_current_timezone())


class VendorForm(forms.Form):
    name = forms.CharField(max_length=120)
    sponsor = forms.ModelChoiceField(queryset=User.objects.none(), help_text="An operator or admin who answers for it.")
    contacts = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), required=False, help_text="Email addresses, one per line."
    )
    domains = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text="Email domains admitted as a whole (everyone @domain), one per line.",
    )
    confirm_consumer_domains = forms.BooleanField(
        required=False, label="Yes, admit everyone with an address at the consumer domain(s) above"
    )
    review_due = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    applications = ApplicationChoiceField(
        queryset=AccessApplication.objects.filter(present=True), widget=forms.CheckboxSelectMultiple
    )
    starts_on = forms.DateField(
        label="Access from",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Leave empty to grant access now; a later date is started by Gatehouse on that day.",
    )
    ends_on = forms.DateField(label="Access until", widget=forms.DateInput(attrs={"type": "date"}))
    session_duration = forms.CharField(max_length=16, initial="8h", help_text="15m to 730h, e.g. 8h or 1h30m.")
    service_tokens = forms.IntegerField(min_value=0, max_value=5, initial=0, help_text="For machine access.")
    token_duration = forms.ChoiceField(
        choices=[("720h", "30 days"), ("2160h", "90 days"), ("8760h", "1 year")],
        initial="2160h",
        label="Service tokens expire after",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["sponsor"]).queryset = User.objects.filter(
            role__in=[User.Role.OPERATOR, User.Role.ADMIN], is_active=True
        )
        self.fields["review_due"].initial = date.today() + timedelta(days=90)
        self.fields["ends_on"].initial = date.today() + timedelta(days=30)

    def clean_contacts(self) -> list[str]:
        emails = _lines(self.cleaned_data["contacts"])
        bad = []
        for email in emails:
            try:
                validate_email(email)
            except ValidationError:
                bad.append(email)
        if bad:
            raise ValidationError(f"Not an email address: {', '.join(bad[:5])}.")
        return emails

    def clean_domains(self) -> list[str]:
        domains = [d.lstrip("@") for d in _lines(self.cleaned_data["domains"])]
        bad = []
        for domain in domains:
            try:
                validate_domain(domain)
            except ValidationError:
                bad.append(domain)
        if bad:
            raise ValidationError(f"Not a domain name: {', '.join(bad[:5])}.")
        return domains

    def clean_session_duration(self) -> str:
        value = self.cleaned_data["session_duration"].strip()
        parse_session(value)
        return value

    def clean_ends_on(self) -> date:
        value = self.cleaned_data["ends_on"]
        if value <= timezone.localdate():
            raise ValidationError("Access must last at least until tomorrow; this date is today or in the past.")
        return value

    def clean_review_due(self) -> date:
        value = self.cleaned_data["review_due"]
        if value <= timezone.localdate():
            raise ValidationError("The review date must be in the future.")
        return value

    def clean(self):
        super().clean()
        data = self.cleaned_data
        consumer = sorted(set(data.get("domains") or []) & CONSUMER_DOMAINS)
        if consumer and not data.get("confirm_consumer_domains"):
            self.add_error(
                "domains",
                f"{', '.join(consumer)} is a consumer email provider: a domain rule would admit anyone with a free "
                "account there. Tick the confirmation below if you mean it.",
            )
        if "contacts" in data and "domains" in data and not data["contacts"] and not data["domains"]:
            self.add_error("contacts", "Give at least one contact email or email domain.")
        starts, ends = data.get("starts_on"), data.get("ends_on")
        if starts and starts < timezone.localdate():
            self.add_error("starts_on", "The start is in the past; leave it empty to grant access now.")
        elif starts and ends and ends <= starts:
            self.add_error("ends_on", "Access must end after it starts.")
        return data

    @property
    def ends_at(self) -> datetime:
        return _end_of(self.cleaned_data["ends_on"])

    @property
    def starts_at(self) -> datetime | None:
        """The start of the chosen day; None (now) when no day or today is chosen."""
        day = self.cleaned_data.get("starts_on")
        if not day or day <= timezone.localdate():
            return None
        return datetime.combine(day, time(0, 0), tzinfo=timezone.get_current_timezone())


class VendorChangeForm(VendorForm):
    """Contacts, domains, review date, more applications and more tokens for an existing vendor."""

    def __init__(self, *args, vendor=None, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["name"]
        del self.fields["sponsor"]
        self.fields["applications"].required = False
        self.fields["applications"].label = "Grant (or re-grant) applications"
        if vendor is not None and not self.is_bound:
            self.initial.update(
                {
                    "contacts": "\n".join(vendor.contacts),
                    "domains": "\n".join(vendor.domains),
                    "review_due": vendor.review_due,
                    "confirm_consumer_domains": bool(set(vendor.domains) & CONSUMER_DOMAINS),
                }
            )


class GrantForm(forms.Form):
    """One grant's own session length and end."""

    session_duration = forms.CharField(max_length=16, help_text="15m to 730h, e.g. 8h or 1h30m.")
    ends_on = forms.DateField(label="Until", widget=forms.DateInput(attrs={"type": "date"}))

    def clean_session_duration(self) -> str:
        value = self.cleaned_data["session_duration"].strip()
        parse_session(value)
        return value

    def clean_ends_on(self) -> date:
        value = self.cleaned_data["ends_on"]
        if value < timezone.localdate():
            raise ValidationError("The end is in the past; end the grant instead.")
        return value

    @property
    def ends_at(self) -> datetime:
        return _end_of(self.cleaned_data["ends_on"])


class RevokeSelectionForm(forms.Form):
    """The vendors ticked on the list, to revoke together."""

    vendors = forms.ModelMultipleChoiceField(
        queryset=Vendor.objects.exclude(status=Vendor.Status.REVOKED),
        to_field_name="public_id",
        error_messages={
            "required": "Tick the vendors to revoke first.",
            "invalid_choice": "One of the selected vendors is revoked already or no longer exists.",
            "invalid_pk_value": "That is not a vendor.",
        },
    )

    def clean_vendors(self):
        vendors = self.cleaned_data["vendors"]
        if len(vendors) > _MAX_LINES:
            raise ValidationError(f"Revoke at most {_MAX_LINES} vendors at once.")
        return vendors


class ExtendForm(forms.Form):
    days = forms.TypedChoiceField(choices=[(7, "7 days"), (30, "30 days"), (90, "90 days")], coerce=int, initial=30)


class VendorSettingsForm(forms.Form):
    auto_suspend_overdue = forms.BooleanField(required=False, label="Suspend vendors whose review is overdue")


class AdoptForm(forms.Form):
    """Who answers for an adopted vendor and how long its access lasts; who it admits comes from Cloudflare."""

    name = forms.CharField(max_length=120)
    sponsor = forms.ModelChoiceField(queryset=User.objects.none(), help_text="An operator or admin who answers for it.")
    review_due = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    ends_on = forms.DateField(label="Access until", widget=forms.DateInput(attrs={"type": "date"}))
    service_policy = forms.ChoiceField(required=False, label="Service Auth policy to adopt with it")
    fingerprint = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, service_choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["sponsor"]).queryset = User.objects.filter(
            role__in=[User.Role.OPERATOR, User.Role.ADMIN], is_active=True
        )
        # Each choice carries the fingerprint of the policy as shown, so that a change before confirming is caught.
        cast(forms.ChoiceField, self.fields["service_policy"]).choices = [("", "None")] + [
            (
                f"{c.policy.id}:{c.fingerprint()}",
                f"{c.policy.name}: service tokens {', '.join(t.name for t in c.tokens) or 'none left'}",
            )
            for c in service_choices
        ]
        self.fields["review_due"].initial = date.today() + timedelta(days=90)
        self.fields["ends_on"].initial = date.today() + timedelta(days=90)

    clean_review_due = VendorForm.clean_review_due
    clean_ends_on = VendorForm.clean_ends_on

    @property
    def ends_at(self) -> datetime:
        return _end_of(self.cleaned_data["ends_on"])

    @property
    def chosen_service_policy(self) -> tuple[str, str]:
        """(policy id, fingerprint) of the Service Auth policy chosen, or ("", "")."""
        chosen = self.cleaned_data.get("service_policy") or ""
        policy_id, _, fingerprint = chosen.partition(":")
        return policy_id, fingerprint
