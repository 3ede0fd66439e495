import json

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dashboard import selectors, services
from dashboard.csv_export import csv_response
from dashboard.forms import AuditFilterForm, RoleForm, error_text
from dashboard.models import User
from dashboard.permissions import role_required
from dashboard.rendering import template_for
from dashboard.requestinfo import RequestOrigin
from tunnels import push
from tunnels import selectors as tunnel_selectors


@require_GET
def home(request):
    context = {
        "recent_entries": selectors.audit_page(filters=selectors.AuditFilters(), before=None, size=8).entries,
        "heartbeats": selectors.heartbeats(),
        **tunnel_selectors.overview(),
    }
    return render(request, "dashboard/home.html", context)


@require_GET
def audit_list(request):
    form = AuditFilterForm(request.GET or None)
    page = None
    if not request.GET or form.is_valid():
        filters = form.filters() if form.is_bound else selectors.AuditFilters()
        before = form.cleaned_data.get("before") if form.is_bound else None
        page = selectors.audit_page(filters=filters, before=before, size=settings.GATEHOUSE_AUDIT_PAGE_SIZE)
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "form": form,
        "page": page,
        "filter_query": query.urlencode(),
        "can_export": request.user.has_role(User.Role.ADMIN),
    }
    return render(request, template_for(request, "dashboard/audit_list.html", "audit-table"), context)


@require_GET
@role_required(User.Role.ADMIN)
def audit_export(request):
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        messages.error(request, "Fix the filters before exporting.")
        return redirect("dashboard:audit_list")
    filters = form.filters() if form.is_bound else selectors.AuditFilters()
    services.audit_record(
        action="audit.exported",
        actor=request.user,
        details={k: str(v) for k, v in filters.__dict__.items() if v},
        request_origin=RequestOrigin.from_request(request),
    )
    header = ["id", "at", "actor", "action", "target_type", "target_id", "target", "details", "source_ip", "request_id"]
    # csv_response neutralises every cell: an actor's address, an action name or an id is text someone chose, too.
    rows = (
        [
            entry.id,
            entry.at.isoformat(),
            entry.actor_display,
            entry.action,
            entry.target_type,
            entry.target_id,
            entry.target_label,
            json.dumps(entry.details, ensure_ascii=False, sort_keys=True),
            entry.source_ip or "",
            entry.request_id,
        ]
        for entry in selectors.audit_entries(filters=filters).iterator(chunk_size=2000)
    )
    return csv_response(name="audit", header=header, rows=rows)


@require_GET
def settings_page(request):
    context = {
        "users": selectors.users_for_admin() if request.user.has_role(User.Role.ADMIN) else None,
        "roles": User.Role,
        "can_administer": request.user.has_role(User.Role.ADMIN),
        "heartbeats": selectors.heartbeats(),
        "push": push.overview(),
        # What the admin registers at Google: the callback allauth actually serves, on the host this page came from.
        "google_redirect_uri": request.build_absolute_uri(
            reverse(
                "openid_connect_callback",
                kwargs={"provider_id": settings.SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"][0]["provider_id"]},
            )
        ),
    }
    return render(request, "dashboard/settings.html", context)


@require_POST
@role_required(User.Role.ADMIN)
def user_role_update(request, public_id):
    user = selectors.user_get(public_id=public_id)
    form = RoleForm(request.POST)
    error = None
    if form.is_valid():
        try:
            user = services.user_set_role(
                actor=request.user,
                user=user,
                role=form.cleaned_data["role"],
                request_origin=RequestOrigin.from_request(request),
            )
            messages.success(request, f"{user.email} is now {user.role.label.lower()}.")
        except ValidationError as exc:
            error = error_text(exc)
    else:
        error = "Choose one of the roles."
    if error:
        messages.error(request, f"{user.email}: {error}")
    if request.htmx:
        user.refresh_from_db()
        return render(request, "dashboard/settings.html#user-row", {"account": user, "roles": User.Role})
    return redirect("dashboard:settings")


def permission_denied(request, exception=None):
    return render(request, "403.html", {"reason": str(exception or "")}, status=403)
