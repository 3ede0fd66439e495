"""Choices whose members each carry the colour of their badge, and the model field that reads them back as members."""

from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models.query_utils import DeferredAttribute

if TYPE_CHECKING:
    # The stubs give TextChoices a metaclass of their own; deriving from it keeps members typed as members.
    from django.db.models.enums import _TextChoicesType as ChoicesType
    from django.db.models.expressions import Combinable

    # The stubs' CharField is generic in what it is set to and what it reads back; Django's is not subscriptable.
    _CharField = models.CharField
else:
    from django.db.models.enums import ChoicesType

    class _Subscript:
        def __getitem__(self, _types: object) -> type[models.CharField]:
            return models.CharField

    _CharField = _Subscript()

# The badge colours the stylesheet defines (static/css/app.css, .badge-<colour>).
COLOURS = frozenset({"grey", "blue", "purple", "green", "amber", "red"})


class ColouredChoicesType(ChoicesType):
    """Takes the colour off each member's declaration (`NAME = "value", "Label", "colour"`) before Django's
    choices see it, so value and label, and therefore the database and migrations, stay as they were."""

    def __new__(metacls, classname, bases, classdict, **kwds):
        colours: list[str] = []
        for key in classdict._member_names:
            *declared, colour = classdict[key]
            if colour not in COLOURS:
                raise ValueError(f"{classname}.{key}: {colour!r} is not a badge colour ({', '.join(sorted(COLOURS))}).")
            colours.append(colour)
            # Use dict.__setitem__() to get past enum's defence against assigning a member twice, as Django does.
            dict.__setitem__(classdict, key, tuple(declared))
        cls = super().__new__(metacls, classname, bases, classdict, **kwds)
        member: Any
        for member, colour in zip(cls.__members__.values(), colours, strict=True):
            member._colour_ = colour
        return cls


class ColouredChoices(models.TextChoices, metaclass=ColouredChoicesType):
    _colour_: str

    @property
    def colour(self) -> str:
        return self._colour_


class ChoiceAttribute(DeferredAttribute):
    """Reads a ChoiceField's stored value back as its member; a value the choices do not know (None, or one left
    in an old row) comes back as stored. Setting stores the value as given: the member is made on each read."""

    field: "ChoiceField[Any, Any]"

    def __get__(self, instance, cls=None):
        value = super().__get__(instance, cls)
        if instance is None:
            return value
        try:
            return self.field.choices_class(value)
        except ValueError:
            return value

    # A descriptor with __set__ is read even once the instance holds the value, which a plain DeferredAttribute
    # is not.
    def __set__(self, instance, value):
        instance.__dict__[self.field.attname] = value


class ChoiceField[ST, GT](_CharField[ST, GT]):
    """A CharField of coloured choices whose value reads back as its member, so that `vendor.status.label`,
    `vendor.status.colour` and `{% badge vendor.status %}` are the one way from a stored value to its label and
    colour. Members are str, so `vendor.status == "active"` holds; queries and `values_list` see plain strings.

    Migrations see the CharField it stands for: the choices class is Python only and never reaches the database.
    """

    descriptor_class = ChoiceAttribute

    def __init__[C: ColouredChoices](
        self: "ChoiceField[str | int | Combinable, C]", choices_class: type[C], *args: Any, **kwargs: Any
    ):
        self.choices_class = choices_class
        kwargs["choices"] = choices_class.choices
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.CharField", args, kwargs

    # Field.clone() rebuilds from deconstruct(), which leaves the choices class out; migrations' state clones.
    def clone(self):
        _name, _path, args, kwargs = super().deconstruct()
        del kwargs["choices"]
        return self.__class__(self.choices_class, *args, **kwargs)
