"""The two ways a page shows a badge, both through templates/partials/badge.html: `{% badge vendor.status %}`
for a coloured choice with its label (a ChoiceField reads back as its member),
`{% textbadge "amber" %}{{ n }} overdue{% endtextbadge %}` for text."""

from django import template
from django.template.loader import render_to_string

from dashboard.choices import COLOURS, ColouredChoices

register = template.Library()


@register.inclusion_tag("partials/badge.html")
def badge(choice: ColouredChoices, *, title: str = "") -> dict:
    # A plain string (a value the choices do not know, or a field that is not a ChoiceField) has no label or colour.
    if not isinstance(choice, ColouredChoices):
        raise template.TemplateSyntaxError(f"badge takes a coloured choice, not {type(choice).__name__} {choice!r}.")
    return {"label": choice.label, "colour": choice.colour, "title": title}


@register.simple_block_tag
def textbadge(content: str, colour: str, *, title: str = "") -> str:
    if colour not in COLOURS:
        raise template.TemplateSyntaxError(f"{colour!r} is not a badge colour.")
    return render_to_string("partials/badge.html", {"label": content, "colour": colour, "title": title})
