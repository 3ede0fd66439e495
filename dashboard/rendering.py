from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

    class HtmxHttpRequest(HttpRequest):
        htmx: HtmxDetails


def template_for(request: "HtmxHttpRequest", template: str, partial: str) -> str:
    """The partial alone for an HTMX request that targets it; the whole page otherwise (and for boosted links)."""
    if request.htmx and not request.htmx.boosted:
        return f"{template}#{partial}"
    return template
