from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from dashboard import queue
from dashboard.csv_export import csv_response
from dashboard.forms import error_text
from dashboard.models import User
from dashboard.permissions import role_required
from dashboard.rendering import template_for
from dashboard.requestinfo import RequestOrigin
from discovery import selectors, services
from discovery.forms import ApplicationForm, BulkForm, OriginFilterForm, ProtectForm, RenameForm, ReviewForm
from discovery.models import AccessPolicy, ReviewState

PAGE_SIZE = 50


@require_GET
def origin_list(request):
    names = selectors.vnet_names()
    form = OriginFilterForm(request.GET or None, vnet_names=names)
    page = rows = None
    routes_known = False
    if not request.GET or form.is_valid():
        filters = form.filters() if form.is_bound else selectors.OriginFilters()
        sort = (form.cleaned_data.get("sort") if form.is_bound else "") or "users"
        after = form.cleaned_data.get("after") if form.is_bound else None
        routes = selectors.route_table()
        page = selectors.origin_page(filters=filters, sort=sort, after=after, size=PAGE_SIZE, routes=routes)
        rows = selectors.catalogue_rows(origins=page.origins, routes=routes, names=names)
        routes_known = routes.known
    query = request.GET.copy()
    query.pop("after", None)
    context = {
        "form": form,
        "page": page,
        "rows": rows,
        "routes_known": routes_known,
        "filter_query": query.urlencode(),
        "applications": selectors.applications() if request.user.has_role(User.Role.OPERATOR) else [],
        "can_change": request.user.has_role(User.Role.OPERATOR),
        "bulk_actions": BulkForm.ACTIONS,
    }
    if not request.htmx:
        context["freshness"] = selectors.freshness()
        context["inventory_run"] = selectors.last_inventory_run()
    return render(request, template_for(request, "discovery/origin_list.html", "origin-table"), context)


EXPORT_HEADER = [
    "origin", "address", "port", "protocol", "virtual network", "virtual network id", "source", "users", "sessions",
    "bytes", "first seen (UTC)", "last seen (UTC)", "review", "application", "private route", "tunnel",
    "hostnames", "inventory kind", "inventory id", "inventory name",
]  # fmt: skip


@require_GET
def origin_export(request):
    """The filtered catalogue as CSV, streamed: the same filters as the page, every origin they select."""
    names = selectors.vnet_names()
    form = OriginFilterForm(request.GET or None, vnet_names=names)
    if form.is_bound and not form.is_valid():
        messages.error(request, "Fix the filters before exporting.")
        return redirect("discovery:origin_list")
    filters = form.filters() if form.is_bound else selectors.OriginFilters()
    routes = selectors.route_table()

    def rows():
        for o in selectors.origins_for_export(filters=filters, routes=routes):
            route = routes.lookup(o)
            inventory = o.inventory or {}
            yield [
                o.label, o.address, o.port, o.protocol, names.get(o.vnet_id, ""), o.vnet_id, o.source, o.users,
                o.sessions, o.bytes_total, _stamp(o.first_seen), _stamp(o.last_seen), o.review_state.label,
                o.application.name if o.application else "", route.network if route else "",
                (route.tunnel_name or route.tunnel_cf_id) if route else "",
                " ".join(o.hostnames or []), inventory.get("kind", ""), inventory.get("id", ""),
                inventory.get("name", ""),
            ]  # fmt: skip

    return csv_response(name="origins", header=EXPORT_HEADER, rows=rows())


def _stamp(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _review_context(request, origin) -> dict:
    return {
        "detail": selectors.origin_detail(origin=origin),
        "origin": origin,
        "can_change": request.user.has_role(User.Role.OPERATOR),
        "review_form": ReviewForm(),
        "states": ReviewState,
        "decisions": [(d, services.DECISION_LABELS[d]) for d in services.review_decisions(origin.review_state)],
    }


@require_GET
def origin_detail(request, public_id):
    origin = selectors.origin_get(public_id=public_id)
    return render(
        request,
        template_for(request, "discovery/origin_detail.html", "origin-review"),
        _review_context(request, origin),
    )


@require_POST
@role_required(User.Role.OPERATOR)
def origin_review(request, public_id):
    origin = selectors.origin_get(public_id=public_id)
    form = ReviewForm(request.POST)
    if form.is_valid():
        try:
            services.origin_review(
                actor=request.user,
                origins=[origin],
                decision=form.cleaned_data["decision"],
                reason=form.cleaned_data["reason"],
                request_origin=RequestOrigin.from_request(request),
            )
            origin.refresh_from_db()
            messages.success(request, f"{origin.label} is now {origin.review_state.label.lower()}.")
        except ValidationError as exc:
            messages.error(request, error_text(exc))
    else:
        messages.error(request, "Choose a decision (and say why, under 500 characters).")
    if request.htmx:
        origin.refresh_from_db()
        return render(request, "discovery/origin_detail.html#origin-review", _review_context(request, origin))
    return redirect("discovery:origin_detail", public_id=origin.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def origin_bulk(request):
    form = BulkForm(request.POST)
    back = request.POST.get("back", "")[:1000]
    target = back if back.startswith("?") else ""
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect(f"{reverse('discovery:origin_list')}{target}")
    origins = selectors.origins_by_public_ids(public_ids=form.cleaned_data["origin"])
    action = form.cleaned_data["action"]
    try:
        if action == "add":
            application = form.cleaned_data["application"]
            count = services.application_add_origins(
                actor=request.user,
                application=application,
                origins=origins,
                request_origin=RequestOrigin.from_request(request),
            )
            messages.success(request, f"{count} origin(s) added to {application.name}.")
        else:
            rows = services.origin_review(
                actor=request.user,
                origins=origins,
                decision=action,
                reason=form.cleaned_data["reason"],
                request_origin=RequestOrigin.from_request(request),
            )
            messages.success(request, f"{len(rows)} origin(s) updated.")
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    return redirect(f"{reverse('discovery:origin_list')}{target}")


@require_GET
def application_list(request):
    context = {
        "applications": selectors.applications(),
        "form": ApplicationForm(),
        "can_change": request.user.has_role(User.Role.OPERATOR),
    }
    return render(request, "discovery/application_list.html", context)


@require_POST
@role_required(User.Role.OPERATOR)
def application_create(request):
    form = ApplicationForm(request.POST)
    if form.is_valid():
        try:
            application = services.application_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                owner=form.cleaned_data["owner"],
                request_origin=RequestOrigin.from_request(request),
            )
            messages.success(request, f"Application {application.name} created.")
            return redirect("discovery:application_detail", public_id=application.public_id)
        except ValidationError as exc:
            messages.error(request, error_text(exc))
    else:
        messages.error(request, "Give the application a name (up to 100 characters).")
    return redirect("discovery:application_list")


@require_GET
def application_detail(request, public_id):
    application = selectors.application_get(public_id=public_id)
    change = selectors.protection_change_latest(application=application)
    can_change = request.user.has_role(User.Role.OPERATOR)
    context = {
        "application": application,
        "members": selectors.application_origins(application=application),
        "protect_form": ProtectForm(),
        "policies": AccessPolicy.objects.all(),
        "can_change": can_change,
        "change": change,
        "can_retry": can_change and change is not None and change.status == change.Status.FAILED,
    }
    return render(request, template_for(request, "discovery/application_detail.html", "protection"), context)


@require_POST
@role_required(User.Role.OPERATOR)
def application_protect(request, public_id):
    application = selectors.application_get(public_id=public_id)
    form = ProtectForm(request.POST)
    if form.is_valid():
        policy = form.cleaned_data["policy"]
        try:
            left_out = services.application_protect(
                actor=request.user,
                application=application,
                policy_id=policy.cf_id,
                policy_name=policy.name,
                request_origin=RequestOrigin.from_request(request),
            )
            messages.success(request, f"Putting the approved origins of {application.name} behind Access.")
            if left_out:
                names = ", ".join(o.label for o in left_out[:10])
                more = f" and {len(left_out) - 10} more" if len(left_out) > 10 else ""
                messages.warning(request, f"Not approved, so not behind Access: {names}{more}.")
        except ValidationError as exc:
            messages.error(request, error_text(exc))
    else:
        messages.error(request, "Choose one of the reusable policies.")
    return redirect("discovery:application_detail", public_id=application.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def application_rename(request, public_id):
    application = selectors.application_get(public_id=public_id)
    form = RenameForm(request.POST)
    if form.is_valid():
        try:
            application = services.application_rename(
                actor=request.user,
                application=application,
                name=form.cleaned_data["name"],
                request_origin=RequestOrigin.from_request(request),
            )
            messages.success(request, f"Renamed to {application.name}.")
        except ValidationError as exc:
            messages.error(request, error_text(exc))
    else:
        messages.error(request, "Give the application a name (up to 100 characters).")
    return redirect("discovery:application_detail", public_id=application.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def application_origin_remove(request, public_id, origin_id):
    application = selectors.application_get(public_id=public_id)
    origin = selectors.origin_get(public_id=origin_id)
    try:
        services.application_remove_origin(
            actor=request.user,
            application=application,
            origin=origin,
            request_origin=RequestOrigin.from_request(request),
        )
        messages.success(request, f"{origin.label} is no longer in {application.name}.")
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    return redirect("discovery:application_detail", public_id=application.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def application_unprotect(request, public_id):
    application = selectors.application_get(public_id=public_id)
    try:
        services.application_unprotect(
            actor=request.user, application=application, request_origin=RequestOrigin.from_request(request)
        )
        messages.success(request, f"Removing the Access applications Gatehouse created for {application.name}.")
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    return redirect("discovery:application_detail", public_id=application.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def application_protect_retry(request, public_id):
    application = selectors.application_get(public_id=public_id)
    change = selectors.protection_change_latest(application=application)
    if change is None:
        messages.error(request, "Gatehouse has made no change to Access for this application.")
    else:
        try:
            services.protection_change_retry(
                actor=request.user, change=change, request_origin=RequestOrigin.from_request(request)
            )
            messages.success(request, f"Retrying the change to Access for {application.name}.")
        except ValidationError as exc:
            messages.error(request, error_text(exc))
    return redirect("discovery:application_detail", public_id=application.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
def application_delete(request, public_id):
    application = selectors.application_get(public_id=public_id)
    try:
        count = services.application_delete(
            actor=request.user, application=application, request_origin=RequestOrigin.from_request(request)
        )
    except ValidationError as exc:
        messages.error(request, error_text(exc))
        return redirect("discovery:application_detail", public_id=application.public_id)
    messages.success(request, f"Deleted {application.name}; its {count} origins stay in the catalogue.")
    return redirect("discovery:application_list")


@require_POST
@role_required(User.Role.OPERATOR)
def access_policies_refresh(request):
    services.access_policies_refresh_request()
    if not queue.unsent(request):
        messages.success(request, "Reading the reusable Access policies from Cloudflare.")
    back = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect("discovery:application_list")


@require_GET
def ingest_list(request):
    return render(request, "discovery/ingest_list.html", {"runs": selectors.ingest_runs()})
