from datetime import datetime
from typing import cast

from django import forms
from django.core.exceptions import ValidationError

from dashboard.models import User
from dashboard.selectors import AuditCursor, AuditFilters, audit_action_choices


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=254, label="Actor email")
    action = forms.ChoiceField(required=False)
    target = forms.CharField(required=False, max_length=200, help_text="An id or a name, exactly")
    since = forms.DateTimeField(
        required=False, label="From (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, label="Until (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    before = forms.CharField(required=False, max_length=40, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["action"]).choices = [("", "Any action"), *audit_action_choices()]

    def clean_before(self) -> AuditCursor | None:
        text = self.cleaned_data.get("before")
        if not text:
            return None
        try:
            return AuditCursor.parse(text)
        except ValueError:
            raise ValidationError("That page link is not valid; start from the newest entries.") from None

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        since: datetime | None = cleaned.get("since")
        until: datetime | None = cleaned.get("until")
        if since and until and since >= until:
            raise ValidationError("“From” must be earlier than “Until”.")
        return cleaned

    def filters(self) -> AuditFilters:
        data = self.cleaned_data
        return AuditFilters(
            actor=data.get("actor", "").strip(),
            action=data.get("action", ""),
            target=data.get("target", "").strip(),
            since=data.get("since"),
            until=data.get("until"),
        )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=User.Role.choices)


# A service refuses with a ValidationError; these are the one way a view shows it.


def form_add_errors(form: forms.BaseForm, error: ValidationError) -> None:
    """Put a service's refusal on the form: each field's messages on that field, or on the form as a whole when
    it has no such field, and messages that name no field on the form as a whole."""
    if hasattr(error, "error_dict"):
        for field, problems in error.message_dict.items():
            for problem in problems:
                form.add_error(field if field in form.fields else None, problem)
    else:
        for problem in error.messages:
            form.add_error(None, problem)


def error_text(error: ValidationError) -> str:
    """A service's refusal as one line, for a message above the page."""
    return " ".join(error.messages)
