from typing import cast

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from dashboard import queue
from dashboard.forms import error_text, form_add_errors
from dashboard.models import User
from dashboard.permissions import role_required
from dashboard.rendering import template_for
from dashboard.requestinfo import RequestOrigin
from integrations.cloudflare import CloudflareError
from vendors import adopt, archive, drift, selectors, services, tokens
from vendors.forms import (
    AdoptForm,
    ExtendForm,
    GrantForm,
    RevokeSelectionForm,
    VendorChangeForm,
    VendorForm,
    VendorSettingsForm,
)
from vendors.models import Vendor


@require_GET
def vendor_list(request):
    archived = request.GET.get("archived") == "1"
    vendors = list(selectors.vendor_list(archived=archived))
    progress = selectors.runs_in_progress(vendors=vendors)
    for vendor in vendors:
        vendor.active_run = progress.get(vendor.pk)
    context = {
        "vendors": vendors,
        "archived": archived,
        "live": bool(progress),
        "can_revoke": request.user.has_role(User.Role.OPERATOR),
        "can_change": request.user.has_role(User.Role.OPERATOR),
        "can_administer": request.user.has_role(User.Role.ADMIN),
        "settings_form": VendorSettingsForm(
            initial={"auto_suspend_overdue": selectors.vendor_settings().auto_suspend_overdue}
        ),
    }
    return render(request, template_for(request, "vendors/vendor_list.html", "vendor-table"), context)


@require_GET
def application_list(request):
    context = {"applications": selectors.application_list(), "can_change": request.user.has_role(User.Role.OPERATOR)}
    return render(request, "vendors/application_list.html", context)


@require_GET
@role_required(User.Role.OPERATOR)
def vendor_new(request):
    return render(request, "vendors/vendor_form.html", {"form": VendorForm()})


@require_POST
@role_required(User.Role.OPERATOR)
def vendor_create(request):
    form = VendorForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            vendor = services.vendor_create(
                actor=request.user,
                name=data["name"],
                sponsor=data["sponsor"],
                contacts=data["contacts"],
                domains=data["domains"],
                review_due=data["review_due"],
                applications=list(data["applications"]),
                ends_at=form.ends_at,
                session_duration=data["session_duration"],
                service_tokens=data["service_tokens"],
                token_duration=data["token_duration"],
                request_origin=RequestOrigin.from_request(request),
                starts_at=form.starts_at,
            )
        except ValidationError as error:
            form_add_errors(form, error)
        else:
            run = vendor.runs.first()
            if run is None:
                messages.success(request, f"{vendor.name} is added; its access starts on {data['starts_on']:%Y-%m-%d}.")
                return redirect("vendors:vendor_detail", public_id=vendor.public_id)
            messages.success(request, f"Onboarding {vendor.name}.")
            return redirect("vendors:run_detail", public_id=run.public_id)
    return render(request, "vendors/vendor_form.html", {"form": form}, status=400)


@require_GET
@role_required(User.Role.OPERATOR)
def vendor_edit(request, public_id):
    vendor = selectors.vendor_get(public_id=public_id)
    return render(request, "vendors/vendor_change.html", {"vendor": vendor, "form": VendorChangeForm(vendor=vendor)})


@require_POST
@role_required(User.Role.OPERATOR)
def vendor_update(request, public_id):
    vendor = selectors.vendor_get(public_id=public_id)
    form = VendorChangeForm(request.POST, vendor=vendor)
    if form.is_valid():
        data = form.cleaned_data
        try:
            run = services.vendor_update(
                actor=request.user,
                vendor=vendor,
                contacts=data["contacts"],
                domains=data["domains"],
                review_due=data["review_due"],
                applications=list(data["applications"]),
                ends_at=form.ends_at,
                session_duration=data["session_duration"],
                service_tokens=data["service_tokens"],
                token_duration=data["token_duration"],
                request_origin=RequestOrigin.from_request(request),
                starts_at=form.starts_at,
            )
        except ValidationError as error:
            form_add_errors(form, error)
        else:
            if run is None:
                messages.success(request, f"Saved; {vendor.name}'s access starts on {data['starts_on']:%Y-%m-%d}.")
                return redirect("vendors:vendor_detail", public_id=vendor.public_id)
            messages.success(request, f"Applying the changes to {vendor.name}.")
            return redirect("vendors:run_detail", public_id=run.public_id)
    return render(request, "vendors/vendor_change.html", {"vendor": vendor, "form": form}, status=400)


@require_GET
def vendor_detail(request, public_id):
    vendor = selectors.vendor_get(public_id=public_id)
    tokens_ = list(selectors.vendor_tokens(vendor=vendor))
    changing = selectors.token_changes_active(vendor=vendor)
    for token in tokens_:
        token.active_change = changing.get(token.pk)
    context = {
        "vendor": vendor,
        "grants": selectors.vendor_grants(vendor=vendor),
        "tokens": tokens_,
        "runs": selectors.vendor_runs(vendor=vendor),
        "extend_form": ExtendForm(),
        "can_change": request.user.has_role(User.Role.OPERATOR),
        "can_change_grants": request.user.has_role(User.Role.OPERATOR)
        and vendor.status not in (Vendor.Status.REVOKED, Vendor.Status.REVOKING, Vendor.Status.SUSPENDED),
    }
    return render(request, "vendors/vendor_detail.html", context)


@require_GET
@role_required(User.Role.OPERATOR)
def vendor_revoke_confirm(request, public_id):
    """The confirmation a browser without JavaScript gets instead of the dialog."""
    vendor = selectors.vendor_get(public_id=public_id)
    return render(request, "vendors/vendor_revoke_confirm.html", {"vendor": vendor})


@require_POST
@role_required(User.Role.OPERATOR)
def vendor_revoke(request, public_id):
    vendor = selectors.vendor_get(public_id=public_id)
    try:
        run = services.vendor_revoke(
            actor=request.user, vendor=vendor, request_origin=RequestOrigin.from_request(request)
        )
    except ValidationError as error:
        messages.error(request, error_text(error))
        return redirect("vendors:vendor_detail", public_id=vendor.public_id)
    messages.warning(request, f"Revoking {vendor.name}.")
    if request.htmx:
        return HttpResponseClientRedirect(reverse("vendors:run_detail", kwargs={"public_id": run.public_id}))
    return redirect("vendors:run_detail", public_id=run.public_id)


@require_GET
@role_required(User.Role.OPERATOR)
def vendors_revoke_confirm(request):
    """The one confirmation for the vendors ticked on the list (a GET form: choosing changes nothing)."""
    form = RevokeSelectionForm(request.GET)
    if not form.is_valid():
        messages.error(request, error_text(ValidationError(cast(list, form.errors["vendors"]))))
        return redirect("vendors:vendor_list")
    return render(request, "vendors/vendors_revoke_confirm.html", {"vendors": form.cleaned_data["vendors"]})


@require_POST
@role_required(User.Role.OPERATOR)
def vendors_revoke(request):
    form = RevokeSelectionForm(request.POST)
    if not form.is_valid():
        messages.error(request, error_text(ValidationError(cast(list, form.errors["vendors"]))))
        return redirect("vendors:vendor_list")
    vendors = list(form.cleaned_data["vendors"])
    try:
        services.vendors_revoke(actor=request.user, vendors=vendors, request_origin=RequestOrigin.from_request(request))
    except ValidationError as error:
        messages.error(request, error_text(error))
        return redirect("vendors:vendor_list")
    messages.warning(request, f"Revoking {len(vendors)} vendors: {', '.join(v.name for v in vendors)}.")
    return redirect("vendors:vendor_list")


@require_GET
def run_detail(request, public_id):
    run = selectors.run_get(public_id=public_id)
    context = {"run": run, "can_change": request.user.has_role(User.Role.OPERATOR)}
    return render(request, template_for(request, "vendors/run_detail.html", "run-progress"), context)


@require_POST
@role_required(User.Role.OPERATOR)
def run_retry(request, public_id):
    run = selectors.run_get(public_id=public_id)
    try:
        services.run_retry(actor=request.user, run=run, request_origin=RequestOrigin.from_request(request))
    except ValidationError as error:
        messages.error(request, error_text(error))
    return redirect("vendors:run_detail", public_id=run.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def grant_extend(request, public_id):
    grant = selectors.grant_get(public_id=public_id)
    form = ExtendForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long to extend the grant by.")
        return redirect("vendors:vendor_detail", public_id=grant.vendor.public_id)
    try:
        run = services.grant_extend(
            actor=request.user,
            grant=grant,
            days=form.cleaned_data["days"],
            request_origin=RequestOrigin.from_request(request),
        )
    except ValidationError as error:
        messages.error(request, error_text(error))
        return redirect("vendors:vendor_detail", public_id=grant.vendor.public_id)
    messages.success(request, f"Extending {grant.application.name} for {grant.vendor.name}.")
    return redirect("vendors:run_detail", public_id=run.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def grant_update(request, public_id):
    grant = selectors.grant_get(public_id=public_id)
    form = GrantForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("vendors:vendor_detail", public_id=grant.vendor.public_id)
    try:
        run = services.grant_update(
            actor=request.user,
            grant=grant,
            session_duration=form.cleaned_data["session_duration"],
            ends_at=form.ends_at,
            request_origin=RequestOrigin.from_request(request),
        )
    except ValidationError as error:
        messages.error(request, error_text(error))
        return redirect("vendors:vendor_detail", public_id=grant.vendor.public_id)
    messages.success(request, f"Changing {grant.vendor.name}'s grant of {grant.application.name}.")
    if run is None:
        return redirect("vendors:vendor_detail", public_id=grant.vendor.public_id)
    return redirect("vendors:run_detail", public_id=run.public_id)


@require_GET
@role_required(User.Role.OPERATOR)
def grant_end_confirm(request, public_id):
    """The confirmation a browser without JavaScript gets instead of the dialog."""
    return render(request, "vendors/grant_end_confirm.html", {"grant": selectors.grant_get(public_id=public_id)})


@require_POST
@role_required(User.Role.OPERATOR)
def grant_end(request, public_id):
    grant = selectors.grant_get(public_id=public_id)
    try:
        run = services.grant_end(actor=request.user, grant=grant, request_origin=RequestOrigin.from_request(request))
    except ValidationError as error:
        messages.error(request, error_text(error))
        target = reverse("vendors:vendor_detail", kwargs={"public_id": grant.vendor.public_id})
    else:
        messages.warning(request, f"Ending {grant.vendor.name}'s access to {grant.application.name}.")
        target = reverse(
            "vendors:run_detail" if run else "vendors:vendor_detail",
            kwargs={"public_id": run.public_id if run else grant.vendor.public_id},
        )
    if request.htmx:
        return HttpResponseClientRedirect(target)
    return redirect(target)


@require_POST
@role_required(User.Role.OPERATOR)
def token_reveal(request, public_id):
    token = selectors.token_get(public_id=public_id)
    try:
        secret = services.token_secret_reveal(
            actor=request.user, token=token, request_origin=RequestOrigin.from_request(request)
        )
    except ValidationError as error:
        messages.error(request, error_text(error))
        return redirect("vendors:vendor_detail", public_id=token.vendor.public_id)
    response = render(request, "vendors/token_secret.html", {"token": token, "secret": secret})
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(User.Role.OPERATOR)
def apps_refresh(request):
    services.access_apps_refresh_request()
    if not queue.unsent(request):
        messages.info(request, "Refreshing the list of Access applications from Cloudflare.")
    return redirect("vendors:application_list")


@require_POST
@role_required(User.Role.ADMIN)
def settings_update(request):
    form = VendorSettingsForm(request.POST)
    if form.is_valid():
        services.vendor_settings_update(
            actor=request.user,
            auto_suspend_overdue=form.cleaned_data["auto_suspend_overdue"],
            request_origin=RequestOrigin.from_request(request),
        )
        messages.success(request, "Vendor settings saved.")
    return redirect("vendors:vendor_list")


# --- adopting existing access, drift, token rotation and archiving -----------------------------------------------


@require_GET
@role_required(User.Role.OPERATOR)
def adopt_list(request):
    """Access policies Gatehouse does not own that look like vendor access, as last read; this changes nothing."""
    context = {"candidates": adopt.adopt_candidates(), "can_administer": request.user.has_role(User.Role.ADMIN)}
    return render(request, "vendors/adopt_list.html", context)


def _adopt_page(request, candidate, form, *, status=200):
    return render(request, "vendors/adopt_confirm.html", {"candidate": candidate, "form": form}, status=status)


def _adopt_read(request, policy_id):
    """The candidate and the Service Auth policies that may come with it, as Cloudflare holds them now, or a
    redirect saying why not; 404 for a policy Gatehouse does not know as a candidate."""
    try:
        adopt.stored_candidate(str(policy_id))
    except adopt.NotAdoptable:
        raise Http404("No such policy to adopt.") from None
    try:
        candidate = adopt.adopt_candidate(str(policy_id))
        choices = adopt.service_policy_choices_now(candidate) if not candidate.problem else []
    except adopt.NotAdoptable as error:
        messages.error(request, error_text(error))
        return None, [], redirect("vendors:adopt_list")
    except CloudflareError as error:
        messages.error(request, f"Cloudflare could not be read: {error.message}")
        return None, [], redirect("vendors:adopt_list")
    return candidate, choices, None


@require_GET
@role_required(User.Role.ADMIN)
def adopt_confirm(request, policy_id):
    candidate, choices, refused = _adopt_read(request, policy_id)
    if refused:
        return refused
    form = AdoptForm(
        service_choices=choices,
        initial={"name": candidate.policy.name.removeprefix("Vendor: ")[:120], "fingerprint": candidate.fingerprint()},
    )
    return _adopt_page(request, candidate, form)


@require_POST
@role_required(User.Role.ADMIN)
def adopt_create(request, policy_id):
    candidate, choices, refused = _adopt_read(request, policy_id)
    if refused:
        return refused
    form = AdoptForm(request.POST, service_choices=choices)
    if form.is_valid():
        data = form.cleaned_data
        service_policy_id, service_fingerprint = form.chosen_service_policy
        try:
            vendor = adopt.vendor_adopt(
                actor=request.user,
                policy_id=candidate.policy.id,
                fingerprint=data["fingerprint"],
                service_policy_id=service_policy_id,
                service_fingerprint=service_fingerprint,
                name=data["name"],
                sponsor=data["sponsor"],
                review_due=data["review_due"],
                ends_at=form.ends_at,
                request_origin=RequestOrigin.from_request(request),
            )
        except CloudflareError as error:
            form.add_error(None, f"Cloudflare could not be read: {error.message}")
        except ValidationError as error:
            form_add_errors(form, error)
            # What Cloudflare holds now is what the admin confirms next time.
            form.data = {**cast(QueryDict, form.data).dict(), "fingerprint": candidate.fingerprint()}
        else:
            messages.success(request, f"Adopting {vendor.name}: Gatehouse now marks its policy at Cloudflare.")
            return redirect("vendors:run_detail", public_id=vendor.runs.get().public_id)
    return _adopt_page(request, candidate, form, status=400)


@require_POST
@role_required(User.Role.OPERATOR)
def drift_check(request, public_id):
    vendor = selectors.vendor_get(public_id=public_id)
    try:
        vendor = drift.drift_check_vendor(
            actor=request.user, vendor=vendor, request_origin=RequestOrigin.from_request(request)
        )
    except ValidationError as error:
        messages.error(request, error_text(error))
    except CloudflareError as error:
        messages.error(request, f"Cloudflare could not be read: {error.message}")
    else:
        if vendor.drift:
            messages.warning(request, f"{vendor.name} differs from what Gatehouse applied; see below.")
        else:
            messages.success(request, f"{vendor.name} is at Cloudflare as Gatehouse applied it.")
    return redirect("vendors:vendor_detail", public_id=vendor.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def drift_reapply(request, public_id):
    vendor = selectors.vendor_get(public_id=public_id)
    try:
        run = drift.drift_reapply(actor=request.user, vendor=vendor, request_origin=RequestOrigin.from_request(request))
    except ValidationError as error:
        messages.error(request, error_text(error))
        return redirect("vendors:vendor_detail", public_id=vendor.public_id)
    messages.success(request, f"Re-applying {vendor.name} at Cloudflare.")
    return redirect("vendors:run_detail", public_id=run.public_id)


def _token_action(request, public_id, action, asked: str):
    token = selectors.token_get(public_id=public_id)
    try:
        change = action(actor=request.user, token=token, request_origin=RequestOrigin.from_request(request))
    except ValidationError as error:
        messages.error(request, error_text(error))
        return redirect("vendors:vendor_detail", public_id=token.vendor.public_id)
    messages.success(request, asked.format(label=token.label))
    return redirect("vendors:token_change_detail", public_id=change.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def token_rotate(request, public_id):
    return _token_action(
        request,
        public_id,
        tokens.token_rotate,
        "Rotating {label}: once Cloudflare has given it a new secret, the old one no longer works. Show the new one "
        "here (once).",
    )


@require_POST
@role_required(User.Role.OPERATOR)
def token_refresh(request, public_id):
    return _token_action(request, public_id, tokens.token_refresh, "Extending the expiry of {label}.")


@require_GET
def token_change_detail(request, public_id):
    change = selectors.token_change_get(public_id=public_id)
    context = {"change": change, "token": change.token, "can_change": request.user.has_role(User.Role.OPERATOR)}
    return render(request, template_for(request, "vendors/token_change_detail.html", "token-change-status"), context)


@require_POST
@role_required(User.Role.OPERATOR)
def token_change_retry(request, public_id):
    change = selectors.token_change_get(public_id=public_id)
    try:
        tokens.token_change_retry(actor=request.user, change=change, request_origin=RequestOrigin.from_request(request))
    except ValidationError as error:
        messages.error(request, error_text(error))
    return redirect("vendors:token_change_detail", public_id=change.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def vendor_archive(request, public_id):
    vendor = selectors.vendor_get(public_id=public_id)
    try:
        archive.vendor_archive(actor=request.user, vendor=vendor, request_origin=RequestOrigin.from_request(request))
    except ValidationError as error:
        messages.error(request, error_text(error))
    else:
        messages.success(request, f"{vendor.name} is archived: off the list, its history kept.")
    return redirect("vendors:vendor_detail", public_id=vendor.public_id)
