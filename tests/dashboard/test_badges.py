import pytest
from django.template import Context, Template, TemplateSyntaxError

from dashboard.choices import ColouredChoices
from dashboard.models import User


class Light(ColouredChoices):
    GO = "go", "Go", "green"
    STOP = "stop", "Stop & wait", "red"


def render(source: str, **context) -> str:
    return Template("{% load badges %}" + source).render(Context(context))


def test_a_coloured_choice_keeps_its_value_and_label_and_carries_its_colour():
    assert Light.choices == [("go", "Go"), ("stop", "Stop & wait")]
    assert Light("stop").colour == "red" and Light.GO.colour == "green"


def test_a_colour_the_stylesheet_does_not_define_is_refused_when_the_class_is_made():
    with pytest.raises(ValueError, match="pink"):

        class Wrong(ColouredChoices):
            ODD = "odd", "Odd", "pink"


def test_the_badge_of_a_choice_shows_its_label_escaped_in_its_colour():
    assert render("{% badge light %}", light=Light.STOP) == '<span class="badge badge-red">Stop &amp; wait</span>'


def test_a_badge_title_is_escaped():
    html = render("{% badge role title=t %}", role=User.Role.ADMIN, t='say "hi"')
    assert html == '<span class="badge badge-purple" title="say &quot;hi&quot;">Admin</span>'


def test_a_text_badge_shows_its_escaped_content_once_in_the_colour_named():
    html = render('{% textbadge "amber" title="Late" %}{{ n }} overdue{% endtextbadge %}', n="<3 & more")
    assert html == '<span class="badge badge-amber" title="Late">&lt;3 &amp; more overdue</span>'


def test_a_text_badge_in_a_colour_the_stylesheet_does_not_define_is_refused():
    with pytest.raises(TemplateSyntaxError, match="pink"):
        render('{% textbadge "pink" %}x{% endtextbadge %}')
