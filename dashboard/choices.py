"""Choices whose members each carry the colour of their badge."""

from django.db import models
from django.db.models.enums import ChoicesType

# The badge colours the stylesheet defines (static/css/app.css, .badge-<colour>).
COLOURS = frozenset({"grey", "blue", "purple", "green", "amber", "red"})


class ColouredChoicesType(ChoicesType):
    """Takes the colour off each member's declaration (`NAME = "value", "Label", "colour"`) before Django's
    choices see it, so value and label, and therefore the database and migrations, stay as they were."""

    def __new__(metacls, classname, bases, classdict, **kwds):
        colours = []
        for key in classdict._member_names:
            *declared, colour = classdict[key]
            if colour not in COLOURS:
                raise ValueError(f"{classname}.{key}: {colour!r} is not a badge colour ({', '.join(sorted(COLOURS))}).")
            colours.append(colour)
            # Use dict.__setitem__() to get past enum's defence against assigning a member twice, as Django does.
            dict.__setitem__(classdict, key, tuple(declared))
        cls = super().__new__(metacls, classname, bases, classdict, **kwds)
        for member, colour in zip(cls.__members__.values(), colours, strict=True):
            member._colour_ = colour
        return cls


class ColouredChoices(models.TextChoices, metaclass=ColouredChoicesType):
    @property
    def colour(self) -> str:
        return self._colour_
