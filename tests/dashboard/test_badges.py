from io import StringIO

import pytest
from django.core.management import call_command
from django.template import Context, Template, TemplateSyntaxError

from dashboard.choices import ColouredChoices
from dashboard.models import User
from dashboard.operations import Operation
from tests.factories import make_user
from tunnels.models import Tunnel, TunnelChange
from vendors.models import WorkflowRun


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


def test_a_badge_of_a_value_no_choices_know_shows_it_as_stored_in_grey_and_logs_it(caplog):
    # A row older than a choice's removal must not take its page down.
    assert render("{% badge role %}", role="<retired>") == '<span class="badge badge-grey">&lt;retired&gt;</span>'
    assert "'<retired>'" in caplog.text


def test_a_badge_of_anything_but_a_choice_or_its_value_is_refused_not_shown_blank():
    with pytest.raises(TemplateSyntaxError, match="None"):
        render("{% badge role %}", role=None)
    with pytest.raises(TemplateSyntaxError, match="int"):
        render("{% badge role %}", role=3)


@pytest.mark.django_db
def test_a_choice_loaded_from_the_database_reads_back_as_its_member_with_label_and_colour():
    make_user(role=User.Role.OPERATOR, email="op@example.com")
    role = User.objects.get(email="op@example.com").role
    assert role is User.Role.OPERATOR
    assert (role.label, role.colour) == ("Operator", "blue")
    assert role == "operator"
    assert render("{% badge user.role %}", user=User.objects.get(email="op@example.com")) == (
        '<span class="badge badge-blue">Operator</span>'
    )


@pytest.mark.django_db
def test_a_deferred_choice_reads_back_as_its_member_once_fetched():
    make_user(role=User.Role.ADMIN, email="a@example.com")
    assert User.objects.only("email").get(email="a@example.com").role is User.Role.ADMIN


def test_a_choice_given_to_a_new_instance_reads_back_as_its_member_whether_given_as_text_or_member():
    assert Tunnel(status="down").status is Tunnel.Status.DOWN
    assert Tunnel(status=Tunnel.Status.DEGRADED).status.colour == "amber"
    assert Tunnel().status is Tunnel.Status.INACTIVE
    tunnel = Tunnel()
    tunnel.status = "healthy"
    assert tunnel.status is Tunnel.Status.HEALTHY


def test_a_field_redeclared_on_a_subclass_reads_back_in_the_subclass_choices():
    assert TunnelChange(status="succeeded").status is TunnelChange.Status.SUCCEEDED
    assert WorkflowRun(status="succeeded").status is Operation.Status.SUCCEEDED


@pytest.mark.django_db
def test_a_value_the_choices_do_not_know_comes_back_as_stored():
    user = make_user(email="old@example.com")
    User.objects.filter(pk=user.pk).update(role="retired")
    role = User.objects.get(pk=user.pk).role
    assert role == "retired" and type(role) is str
    assert Tunnel(status=None).status is None


@pytest.mark.django_db
def test_queries_still_see_plain_strings():
    make_user(role=User.Role.ADMIN, email="a@example.com")
    (role,) = User.objects.values_list("role", flat=True)
    assert role == "admin" and type(role) is str
    assert User.objects.get(role=User.Role.ADMIN).email == "a@example.com"


def test_migrations_see_the_choice_field_as_the_char_field_it_stands_for():
    _name, path, args, kwargs = User._meta.get_field("role").deconstruct()
    assert path == "django.db.models.CharField" and args == []
    assert kwargs == {"max_length": 16, "choices": User.Role.choices, "default": User.Role.VIEWER}


@pytest.mark.django_db
def test_makemigrations_finds_no_change():
    call_command("makemigrations", check_changes=True, dry_run=True, stdout=StringIO())
