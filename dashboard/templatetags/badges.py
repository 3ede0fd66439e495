"""The two ways a page shows a badge, both through templates/partials/badge.html: `{% badge vendor.status %}`
for a coloured choice with its label (a ChoiceField reads back as its member),
`{% textbadge "amber" %}{{ n }} overdue{% endtextbadge %}` for text."""

import logging

from django import template
from django.template.loader import render_to_string

from dashboard.choices import COLOURS, ColouredChoices

register = template.Library()
log = logging.getLogger(__name__)


@register.inclusion_tag("partials/badge.html")
def badge(choice: ColouredChoices | str, *, title: str = "") -> dict:
    if isinstance(choice, ColouredChoices):
        return {"label": choice.label, "colour": choice.colour, "title": title}
    # A value the choices do not know (a row older than a choice's removal) still shows, as stored and grey: the
    # page stays up, and the log says which value to look at.
    if isinstance(choice, str):
        log.warning("badge of a value no choices know: %r", choice[:50])
        return {"label": choice, "colour": "grey", "title": title}
    raise template.TemplateSyntaxError(f"badge takes a coloured choice, not {type(choice).__name__} {choice!r}.")


@register.simple_block_tag
def textbadge(content: str, colour: str, *, title: str = "") -> str:
    if colour not in COLOURS:
        raise template.TemplateSyntaxError(f"{colour!r} is not a badge colour.")
    return render_to_string("partials/badge.html", {"label": content, "colour": colour, "title": title})
