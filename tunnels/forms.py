from typing import cast

from django import forms

from tunnels.models import Tunnel, VirtualNetwork
from tunnels.selectors import SORTS


class TunnelFilterForm(forms.Form):
    q = forms.CharField(label="Name", required=False, max_length=100)
    status = forms.ChoiceField(label="Status", required=False, choices=[("", "Any"), *Tunnel.Status.choices])
    version = forms.ChoiceField(label="cloudflared", required=False)
    vnet = forms.ChoiceField(label="Virtual network", required=False)
    sort = forms.ChoiceField(
        label="Sort", required=False, choices=[(k, k.capitalize()) for k in SORTS], initial="status"
    )
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, versions: list[str], vnets: list[VirtualNetwork], **kwargs):
        super().__init__(*args, **kwargs)
        version, vnet = cast(forms.ChoiceField, self.fields["version"]), cast(forms.ChoiceField, self.fields["vnet"])
        version.choices = [("", "Any"), *((v, v) for v in reversed(versions))]
        vnet.choices = [("", "Any"), *((str(v.cf_id), v.name) for v in vnets)]


class TunnelCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Letters, digits, dots, hyphens or underscores.")


class HostnameAddForm(forms.Form):
    hostname = forms.CharField(label="Public hostname", max_length=253)
    service = forms.CharField(
        max_length=500,
        help_text="http://host:port, https://…, tcp://…, ssh://…, rdp://…, unix:/path or http_status:404",
    )


class HostnameRemoveForm(forms.Form):
    hostname = forms.CharField(max_length=253)


class RouteAddForm(forms.Form):
    network = forms.CharField(label="Network (CIDR)", max_length=50)
    virtual_network = forms.ModelChoiceField(
        queryset=VirtualNetwork.objects.filter(deleted_at__isnull=True), to_field_name="cf_id"
    )
    comment = forms.CharField(required=False, max_length=100)


class RouteLookupForm(forms.Form):
    ip = forms.GenericIPAddressField(label="IP address")
    vnet = forms.ModelChoiceField(
        label="Virtual network",
        queryset=VirtualNetwork.objects.filter(deleted_at__isnull=True),
        to_field_name="cf_id",
        empty_label=None,
    )


class TunnelDeleteForm(forms.Form):
    confirm = forms.CharField(label="Type the tunnel's name to confirm", max_length=255)

    def __init__(self, *args, tunnel: Tunnel, **kwargs):
        super().__init__(*args, **kwargs)
        self.tunnel = tunnel

    def clean_confirm(self):
        if self.cleaned_data["confirm"].strip() != self.tunnel.name:
            raise forms.ValidationError(f"Type {self.tunnel.name} exactly to delete this tunnel.")
        return self.cleaned_data["confirm"]


class VnetCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Letters, digits, spaces, dots, hyphens or underscores.")
    comment = forms.CharField(required=False, max_length=100)


class VnetRenameForm(forms.Form):
    name = forms.CharField(label="New name", max_length=100)
