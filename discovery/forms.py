import ipaddress
import re
from typing import cast

from django import forms
from django.utils.datastructures import MultiValueDict

from discovery import selectors
from discovery.models import AccessPolicy, Application, Protocol, ReviewState
from discovery.services import DECISION_LABELS, DECISIONS

_ANY = [("", "any")]
_VNET_ID = re.compile(r"^[0-9a-f-]{1,36}$")


class OriginFilterForm(forms.Form):
    state = forms.ChoiceField(label="Review", required=False, choices=_ANY + ReviewState.choices)
    vnet = forms.ChoiceField(label="Virtual network", required=False)
    protocol = forms.ChoiceField(required=False, choices=_ANY + Protocol.choices)
    port = forms.IntegerField(required=False, min_value=0, max_value=65535)
    cidr = forms.CharField(label="CIDR", required=False, max_length=50)
    source = forms.ChoiceField(required=False, choices=_ANY + [(s, s) for s in selectors.SOURCES])
    covered = forms.ChoiceField(
        label="Access", required=False, choices=[*_ANY, ("yes", "covered"), ("no", "not covered")]
    )
    route = forms.ChoiceField(
        label="Private route", required=False, choices=[*_ANY, ("yes", "carried by a route"), ("no", "no route")]
    )
    q = forms.CharField(label="Search", required=False, max_length=100)
    sort = forms.ChoiceField(
        required=False,
        choices=[("users", "users"), ("sessions", "sessions"), ("bytes", "bytes"), ("last_seen", "last seen")],
    )
    after = forms.CharField(required=False, max_length=80, widget=forms.HiddenInput)

    def __init__(self, *args, vnet_names: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        names = vnet_names or {}
        choices = [*_ANY, *sorted(names.items(), key=lambda item: item[1].lower())]
        # A network Gatehouse has not synchronised yet can still be asked for by its id.
        wanted = str(self.data.get("vnet", "")).strip().lower() if self.is_bound else ""
        if wanted and wanted not in names and _VNET_ID.match(wanted):
            choices.append((wanted, wanted))
        cast(forms.ChoiceField, self.fields["vnet"]).choices = choices

    def clean_cidr(self):
        text = self.cleaned_data["cidr"].strip()
        if not text:
            return None
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise forms.ValidationError("Not a CIDR, e.g. 10.0.0.0/16 or fd00::/8.") from None

    def clean_after(self):
        text = self.cleaned_data["after"]
        if not text:
            return None
        cursor = selectors.Cursor.decode(text)
        if cursor is None:
            raise forms.ValidationError("That page link is broken; start again from the first page.")
        return cursor

    def filters(self) -> selectors.OriginFilters:
        data = self.cleaned_data
        return selectors.OriginFilters(
            review_state=data.get("state") or "",
            vnet_id=(data.get("vnet") or "").lower(),
            protocol=data.get("protocol") or "",
            port=data.get("port"),
            cidr=data.get("cidr"),
            source=data.get("source") or "",
            covered={"yes": True, "no": False}.get(data.get("covered") or ""),
            text=(data.get("q") or "").strip(),
            routed={"yes": True, "no": False}.get(data.get("route") or ""),
        )


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=[(d, DECISION_LABELS[d]) for d in DECISIONS])
    reason = forms.CharField(required=False, max_length=500, widget=forms.TextInput)


class BulkForm(forms.Form):
    ACTIONS = [*[(d, DECISION_LABELS[d]) for d in DECISIONS], ("add", "add to application")]
    MAX_SELECTED = 500

    action = forms.ChoiceField(choices=ACTIONS)
    reason = forms.CharField(required=False, max_length=500)
    application = forms.ModelChoiceField(queryset=Application.objects.all(), to_field_name="public_id", required=False)
    origin = forms.TypedMultipleChoiceField(coerce=str, choices=[])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The choices are whatever ids were sent; the service looks them up and ignores unknown ones.
        sent = cast(MultiValueDict, self.data).getlist("origin")
        cast(forms.ChoiceField, self.fields["origin"]).choices = [(v, v) for v in sent[: self.MAX_SELECTED + 1]]

    def clean_origin(self):
        import uuid

        values = self.cleaned_data["origin"]
        if len(values) > self.MAX_SELECTED:
            raise forms.ValidationError(f"Select at most {self.MAX_SELECTED} origins at a time.")
        try:
            return [uuid.UUID(v) for v in values]
        except ValueError:
            raise forms.ValidationError("Unknown origin.") from None

    def clean(self):
        super().clean()
        data = self.cleaned_data
        if data.get("action") == "add" and not data.get("application"):
            self.add_error("application", "Choose the application to add the origins to.")
        return data


class ApplicationForm(forms.Form):
    name = forms.CharField(max_length=100)
    owner = forms.CharField(max_length=254, required=False)


class RenameForm(forms.Form):
    name = forms.CharField(max_length=100)


class ProtectForm(forms.Form):
    policy = forms.ModelChoiceField(
        queryset=AccessPolicy.objects.all(), to_field_name="cf_id", empty_label="Choose a reusable policy"
    )
