from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from alerts import selectors, services
from alerts.forms import AlertFilterForm, ChannelForm, SilenceForm
from alerts.models import Alert
from dashboard.forms import form_add_errors
from dashboard.models import User
from dashboard.permissions import role_required
from dashboard.rendering import template_for
from dashboard.requestinfo import RequestOrigin


@require_GET
def alert_list(request):
    form = AlertFilterForm(request.GET or None)
    state, page = "", 1
    if form.is_bound:
        # A broken page number leads to the first page, keeping the filter that is still valid.
        form.is_valid()
        state, page = form.cleaned_data.get("state") or "", form.cleaned_data.get("page") or 1
    alerts, has_next = selectors.alert_page(state=state, page=page)
    context = {
        "form": form,
        "alerts": alerts,
        "page": page,
        "has_next": has_next,
        "state": state,
        "failing": selectors.deliveries_failing(),
        "can_retry": request.user.has_role(User.Role.OPERATOR),
        "silence_form": SilenceForm(auto_id=False),
    }
    return render(request, template_for(request, "alerts/alert_list.html", "alert-table"), context)


@require_GET
def channel_list(request):
    return _render_channels(request, ChannelForm())


def _render_channels(request, form, status=200):
    context = {"channels": selectors.channels(), "form": form, "is_admin": request.user.has_role(User.Role.ADMIN)}
    return render(request, "alerts/channel_list.html", context, status=status)


@require_POST
@role_required(User.Role.ADMIN)
def channel_create(request):
    form = ChannelForm(request.POST)
    if form.is_valid():
        try:
            created = services.channel_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                kind=form.cleaned_data["kind"],
                target=form.cleaned_data["target"],
                request_origin=RequestOrigin.from_request(request),
            )
            messages.success(request, f"Channel {created.channel.name} added.")
            if not created.secret:
                return redirect("alerts:channel_list")
            # The signing secret is on this one answer and nowhere else: not in a later page, nor in a cache.
            response = render(
                request, "alerts/channel_secret.html", {"channel": created.channel, "secret": created.secret}
            )
            response["Cache-Control"] = "no-store"
            return response
        except ValidationError as exc:
            form_add_errors(form, exc)
    return _render_channels(request, form, status=400)


@require_POST
@role_required(User.Role.ADMIN)
def channel_delete(request, channel_id):
    channel = selectors.channel_get(public_id=channel_id)
    services.channel_delete(actor=request.user, channel=channel, request_origin=RequestOrigin.from_request(request))
    messages.success(request, f"Channel {channel.name} removed.")
    return redirect("alerts:channel_list")


@require_POST
@role_required(User.Role.OPERATOR)
def delivery_retry(request, delivery_id):
    delivery = selectors.delivery_get(public_id=delivery_id)
    delivery = services.delivery_retry(
        actor=request.user, delivery=delivery, request_origin=RequestOrigin.from_request(request)
    )
    messages.info(request, f"Delivery to {delivery.channel.name}: {delivery.get_state_display().lower()}.")
    return redirect("alerts:alert_list")


@require_POST
@role_required(User.Role.OPERATOR)
def alert_acknowledge(request, alert_id):
    alert = selectors.alert_get(public_id=alert_id)
    services.alert_acknowledge(actor=request.user, alert=alert, request_origin=RequestOrigin.from_request(request))
    messages.success(request, f"Acknowledged: {alert.subject}")
    return redirect(_back(request))


@require_POST
@role_required(User.Role.OPERATOR)
def alert_silence(request, alert_id):
    alert = selectors.alert_get(public_id=alert_id)
    form = SilenceForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long to silence the alert for.")
        return redirect(_back(request))
    hours = int(form.cleaned_data["hours"])
    services.alert_silence(
        actor=request.user, alert=alert, hours=hours, request_origin=RequestOrigin.from_request(request)
    )
    if hours:
        messages.success(request, f"Silenced for {services.SILENCE_CHOICES[hours]}: {alert.subject}")
    else:
        messages.success(request, f"Silence lifted: {alert.subject}")
    return redirect(_back(request))


def _back(request) -> str:
    """Back to the alert list with its filter, never to another site."""
    state = request.POST.get("state", "")
    url = reverse("alerts:alert_list")
    return f"{url}?state={state}" if state in Alert.State.values else url
