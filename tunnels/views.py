from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from dashboard.forms import error_text, form_add_errors
from dashboard.models import User
from dashboard.permissions import role_required
from dashboard.rendering import template_for
from dashboard.requestinfo import RequestOrigin
from tunnels import selectors, services
from tunnels.forms import (
    HostnameAddForm,
    HostnameRemoveForm,
    RouteAddForm,
    RouteLookupForm,
    TunnelCreateForm,
    TunnelDeleteForm,
    TunnelFilterForm,
    VnetCreateForm,
    VnetRenameForm,
)
from tunnels.models import Tunnel

PAGE_SIZE = 50


@require_GET
def tunnel_list(request):
    form = TunnelFilterForm(
        request.GET or None, versions=selectors.versions_known(), vnets=selectors.virtual_networks()
    )
    filters, page = selectors.TunnelFilters(), 1
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = selectors.TunnelFilters(
            q=data["q"],
            status=data["status"],
            version=data["version"],
            vnet=data["vnet"],
            sort=data["sort"] or "status",
        )
        page = data["page"] or 1
    counts = selectors.status_counts()
    current, rows = selectors.tunnel_page(filters=filters, page=page, size=PAGE_SIZE, counts=counts)
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": current,
        "rows": rows,
        "counts": counts,
        "statuses": Tunnel.Status,
        "can_change": request.user.has_role(User.Role.OPERATOR),
        "freshness": selectors.freshness(),
        "picture": selectors.picture(),
        "filter_query": query.urlencode(),
        "now": timezone.now(),
    }
    return render(request, template_for(request, "tunnels/tunnel_list.html", "tunnel-table"), context)


@require_GET
def tunnel_detail(request, tunnel_id):
    tunnel = selectors.tunnel_get(cf_id=tunnel_id)
    # A remotely managed tunnel's hostnames are read when someone looks (the sync reads the rest in rotation).
    services.tunnel_config_request(tunnel=tunnel)
    return _render_detail(request, tunnel)


def _render_detail(request, tunnel, *, status=200, **forms):
    detail = selectors.tunnel_detail(tunnel=tunnel)
    context = {
        "detail": detail,
        "tunnel": tunnel,
        "explained": selectors.connectors_explained(tunnel=tunnel, connectors=detail.connectors),
        "hostname_form": forms.get("hostname_form") or HostnameAddForm(),
        "route_form": forms.get("route_form") or RouteAddForm(),
        "route_confirm": forms.get("route_confirm"),
        "can_change": request.user.has_role(User.Role.OPERATOR),
        "now": timezone.now(),
    }
    return render(
        request, template_for(request, "tunnels/tunnel_detail.html", "tunnel-overview"), context, status=status
    )


@require_GET
@role_required(User.Role.OPERATOR)
def tunnel_new(request):
    return render(request, "tunnels/tunnel_new.html", {"form": TunnelCreateForm()})


@require_POST
@role_required(User.Role.OPERATOR)
def tunnel_create(request):
    form = TunnelCreateForm(request.POST)
    if form.is_valid():
        try:
            change = services.tunnel_create(
                actor=request.user, name=form.cleaned_data["name"], request_origin=RequestOrigin.from_request(request)
            )
            return redirect("tunnels:change_detail", change_id=change.public_id)
        except ValidationError as exc:
            form_add_errors(form, exc)
    return render(request, "tunnels/tunnel_new.html", {"form": form}, status=400)


@require_POST
@role_required(User.Role.OPERATOR)
def hostname_add(request, tunnel_id):
    tunnel = selectors.tunnel_get(cf_id=tunnel_id)
    form = HostnameAddForm(request.POST)
    if form.is_valid():
        try:
            change = services.hostname_add(
                actor=request.user,
                tunnel=tunnel,
                hostname=form.cleaned_data["hostname"],
                service=form.cleaned_data["service"],
                request_origin=RequestOrigin.from_request(request),
            )
            return redirect("tunnels:change_detail", change_id=change.public_id)
        except ValidationError as exc:
            form_add_errors(form, exc)
    return _render_detail(request, tunnel, status=400, hostname_form=form)


@require_POST
@role_required(User.Role.OPERATOR)
def hostname_remove(request, tunnel_id):
    tunnel = selectors.tunnel_get(cf_id=tunnel_id)
    form = HostnameRemoveForm(request.POST)
    if form.is_valid():
        try:
            change = services.hostname_remove(
                actor=request.user,
                tunnel=tunnel,
                hostname=form.cleaned_data["hostname"],
                request_origin=RequestOrigin.from_request(request),
            )
            return redirect("tunnels:change_detail", change_id=change.public_id)
        except ValidationError as exc:
            messages.error(request, error_text(exc))
    else:
        messages.error(request, "Choose a host name to remove.")
    return redirect("tunnels:tunnel_detail", tunnel_id=tunnel.cf_id)


@require_POST
@role_required(User.Role.OPERATOR)
def route_add(request, tunnel_id):
    tunnel = selectors.tunnel_get(cf_id=tunnel_id)
    form = RouteAddForm(request.POST)
    if form.is_valid():
        try:
            change = services.route_add(
                actor=request.user,
                tunnel=tunnel,
                network=form.cleaned_data["network"],
                virtual_network=form.cleaned_data["virtual_network"],
                comment=form.cleaned_data["comment"],
                request_origin=RequestOrigin.from_request(request),
                confirm_network=request.POST.get("confirm_network", ""),
            )
            return redirect("tunnels:change_detail", change_id=change.public_id)
        except ValidationError as exc:
            form_add_errors(form, exc)
            # A route that captures more than a private network: the box confirming it, naming what it captures.
            unconfirmed = [e for e in getattr(exc, "error_dict", {}).get("confirm_network", []) if e.params]
            if unconfirmed:
                return _render_detail(request, tunnel, status=400, route_form=form, route_confirm=unconfirmed[0].params)
    return _render_detail(request, tunnel, status=400, route_form=form)


@require_POST
@role_required(User.Role.OPERATOR)
def route_remove(request, route_id):
    route = selectors.route_get(cf_id=route_id)
    change = services.route_remove(actor=request.user, route=route, request_origin=RequestOrigin.from_request(request))
    return redirect("tunnels:change_detail", change_id=change.public_id)


@require_GET
@never_cache
def change_detail(request, change_id):
    change = selectors.change_get(public_id=change_id)
    # Reading the page takes nothing: the token waits for its creator to ask for it (change_token).
    context = {
        "change": change,
        "token": None,
        "token_waiting": change.token_available() and change.actor_id == request.user.pk,
        "can_retry": request.user.has_role(User.Role.OPERATOR) and change.retryable,
    }
    return render(request, template_for(request, "tunnels/change_detail.html", "change-status"), context)


@require_POST
@role_required(User.Role.OPERATOR)
def change_retry(request, change_id):
    change = selectors.change_get(public_id=change_id)
    try:
        services.tunnel_change_retry(
            actor=request.user, change=change, request_origin=RequestOrigin.from_request(request)
        )
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    return redirect("tunnels:change_detail", change_id=change.public_id)


@require_POST
@role_required(User.Role.OPERATOR)
@never_cache
def change_token(request, change_id):
    """Show the new tunnel's token to its creator, once: taking it wipes the stored copy."""
    change = selectors.change_get(public_id=change_id)
    token = services.tunnel_token_take(change=change, user=request.user)
    return render(request, "tunnels/change_detail.html", {"change": change, "token": token, "token_waiting": False})


@require_GET
def route_list(request):
    vnets = selectors.virtual_networks()
    lookup = RouteLookupForm(request.GET if "ip" in request.GET else None)
    match, searched = None, False
    if lookup.is_bound and lookup.is_valid():
        searched = True
        match = selectors.route_lookup(address=lookup.cleaned_data["ip"], vnet=lookup.cleaned_data["vnet"])
    vnet = request.GET.get("in", "")
    rows = selectors.routes_all(vnet=vnet if vnet in {str(v.cf_id) for v in vnets} else "")
    context = {
        "lookup": lookup,
        "match": match,
        "searched": searched,
        "rows": rows,
        "vnets": vnets,
        "vnet": vnet,
        "overlapping": sum(1 for r in rows if r.overlaps),
        "dangling": selectors.dangling_dns_records(),
    }
    return render(request, template_for(request, "tunnels/route_list.html", "route-lookup"), context)


def _change_or_back(request, tunnel, make) -> object:
    """Queue the change and show it, or go back to the tunnel with the reason it was refused."""
    try:
        change = make()
    except ValidationError as exc:
        messages.error(request, error_text(exc))
        return redirect("tunnels:tunnel_detail", tunnel_id=tunnel.cf_id)
    return redirect("tunnels:change_detail", change_id=change.public_id)


def _delete_context(tunnel: Tunnel, form) -> dict:
    return {"tunnel": tunnel, "form": form, **selectors.tunnel_delete_preview(tunnel=tunnel)}


@require_GET
@role_required(User.Role.OPERATOR)
def tunnel_delete_confirm(request, tunnel_id):
    tunnel = selectors.tunnel_get(cf_id=tunnel_id)
    return render(request, "tunnels/tunnel_delete.html", _delete_context(tunnel, TunnelDeleteForm(tunnel=tunnel)))


@require_POST
@role_required(User.Role.OPERATOR)
def tunnel_delete(request, tunnel_id):
    tunnel = selectors.tunnel_get(cf_id=tunnel_id)
    form = TunnelDeleteForm(request.POST, tunnel=tunnel)
    if form.is_valid():
        try:
            change = services.tunnel_delete(
                actor=request.user, tunnel=tunnel, request_origin=RequestOrigin.from_request(request)
            )
            return redirect("tunnels:change_detail", change_id=change.public_id)
        except ValidationError as exc:
            form_add_errors(form, exc)
    return render(request, "tunnels/tunnel_delete.html", _delete_context(tunnel, form), status=400)


@require_POST
@role_required(User.Role.OPERATOR)
def connections_cleanup(request, tunnel_id):
    tunnel = selectors.tunnel_get(cf_id=tunnel_id)
    request_origin = RequestOrigin.from_request(request)
    return _change_or_back(
        request,
        tunnel,
        lambda: services.connections_cleanup(actor=request.user, tunnel=tunnel, request_origin=request_origin),
    )


@require_GET
@role_required(User.Role.OPERATOR)
def token_rotate_confirm(request, tunnel_id):
    return render(request, "tunnels/token_rotate.html", {"tunnel": selectors.tunnel_get(cf_id=tunnel_id)})


@require_POST
@role_required(User.Role.OPERATOR)
def token_rotate(request, tunnel_id):
    tunnel = selectors.tunnel_get(cf_id=tunnel_id)
    request_origin = RequestOrigin.from_request(request)
    return _change_or_back(
        request, tunnel, lambda: services.token_rotate(actor=request.user, tunnel=tunnel, request_origin=request_origin)
    )


def _render_vnets(request, *, status=200, create_form=None, rename=None):
    context = {
        "rows": selectors.virtual_networks_with_routes(),
        "create_form": create_form or VnetCreateForm(),
        "rename": rename,
        "can_change": request.user.has_role(User.Role.OPERATOR),
    }
    return render(request, "tunnels/vnet_list.html", context, status=status)


@require_GET
def vnet_list(request):
    return _render_vnets(request)


@require_POST
@role_required(User.Role.OPERATOR)
def vnet_create(request):
    form = VnetCreateForm(request.POST)
    if form.is_valid():
        try:
            change = services.vnet_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                comment=form.cleaned_data["comment"],
                request_origin=RequestOrigin.from_request(request),
            )
            return redirect("tunnels:change_detail", change_id=change.public_id)
        except ValidationError as exc:
            form_add_errors(form, exc)
    return _render_vnets(request, status=400, create_form=form)


@require_POST
@role_required(User.Role.OPERATOR)
def vnet_rename(request, vnet_id):
    vnet = selectors.virtual_network_get(cf_id=vnet_id)
    form = VnetRenameForm(request.POST)
    if form.is_valid():
        try:
            change = services.vnet_rename(
                actor=request.user,
                vnet=vnet,
                name=form.cleaned_data["name"],
                request_origin=RequestOrigin.from_request(request),
            )
            return redirect("tunnels:change_detail", change_id=change.public_id)
        except ValidationError as exc:
            form_add_errors(form, exc)
    return _render_vnets(request, status=400, rename=(vnet, form))


@require_GET
@role_required(User.Role.OPERATOR)
def vnet_delete_confirm(request, vnet_id):
    vnet = selectors.virtual_network_get(cf_id=vnet_id)
    return render(request, "tunnels/vnet_delete.html", {"vnet": vnet, "routes": vnet.routes.count()})


@require_POST
@role_required(User.Role.OPERATOR)
def vnet_delete(request, vnet_id):
    vnet = selectors.virtual_network_get(cf_id=vnet_id)
    try:
        change = services.vnet_delete(actor=request.user, vnet=vnet, request_origin=RequestOrigin.from_request(request))
    except ValidationError as exc:
        context = {"vnet": vnet, "routes": vnet.routes.count(), "errors": exc.messages}
        return render(request, "tunnels/vnet_delete.html", context, status=400)
    return redirect("tunnels:change_detail", change_id=change.public_id)
