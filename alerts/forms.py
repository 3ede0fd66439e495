from django import forms

from alerts.models import Alert, Channel
from alerts.services import SILENCE_CHOICES


class ChannelForm(forms.ModelForm):
    class Meta:
        model = Channel
        fields = ["name", "kind", "target"]
        labels = {"target": "Email addresses or URL"}
        help_texts = {"target": "Comma-separated addresses for email; an http:// or https:// URL for webhooks."}


class AlertFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "All"), *Alert.State.choices])
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


class SilenceForm(forms.Form):
    hours = forms.TypedChoiceField(
        coerce=int, choices=[(0, "Lift the silence"), *SILENCE_CHOICES.items()], initial=4, label="Silence for"
    )
