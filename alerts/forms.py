from django import forms

from alerts.models import Alert, Channel
from alerts.services import SILENCE_CHOICES

MAX_PAGE = 100_000  # 5,000,000 alerts at 50 a page


class ChannelForm(forms.ModelForm):
    class Meta:
        model = Channel
        fields = ["name", "kind", "target"]
        labels = {"target": "Email addresses or URL"}
        help_texts = {"target": "Comma-separated addresses for email; an http:// or https:// URL for webhooks."}


class AlertFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "All"), *Alert.State.choices])
    # Bounded so that the offset it makes fits the database's integer (a larger one made the page fail).
    page = forms.IntegerField(required=False, min_value=1, max_value=MAX_PAGE, widget=forms.HiddenInput)


class SilenceForm(forms.Form):
    hours = forms.TypedChoiceField(
        coerce=int, choices=[(0, "Lift the silence"), *SILENCE_CHOICES.items()], initial=4, label="Silence for"
    )
