from django.http import HttpRequest


def template_for(request: HttpRequest, template: str, partial: str) -> str:
    """The partial alone for an HTMX request that targets it; the whole page otherwise (and for boosted links)."""
    if request.htmx and not request.htmx.boosted:
        return f"{template}#{partial}"
    return template
