# amaranth: UnusedElaboratable=no
"""The registry of exportable units: one declarative table, cheap to import.

Every entry names a unit in snake_case, the component class (imported only when the unit is
built, so importing this package pulls in neither Amaranth nor NumPy), a one-line description,
and its parameters (name, type, default, one-line help), all as strings the way a command line
gives them. Units whose constructors take arrays (weights, thresholds, per-lane α/β) get a
small `arguments` function that turns the scalar parameters into constructor arguments.

`UNITS[name].build({"lanes": "8"})` parses, fills in defaults and constructs the component.
Every bad input, including a TypeError/ValueError raised by the component's own validation,
becomes a `ParameterError` whose message names the parameter, the value and what was
expected. Nothing here prints or exits.

The first line silences Amaranth's "created but never used" warning for components made here:
a constructor that rejects its arguments leaves a half-made component behind, and the warning
it would print when collected is noise on top of the one-line usage error.
"""

import dataclasses
import importlib
import math
import re
from collections.abc import Callable

__all__ = ["ParameterError", "Type", "Param", "Unit", "Built", "UNITS", "unit",
           "INT", "BOOL", "FLOAT", "QFMT", "choice"]


class ParameterError(ValueError):
    """A unit name, parameter name or parameter value that cannot be used; one line."""


@dataclasses.dataclass(frozen=True)
class Type:
    """How a parameter's text becomes a value: `parse` raises ValueError("expected ...")."""
    name: str
    parse: Callable[[str], object]
    show: Callable[[object], object]


def _parse_int(text):
    try:
        return int(text, 10)
    except ValueError:
        pass
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError("expected an integer") from None


def _parse_bool(text):
    value = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}.get(text.strip().lower())
    if value is None:
        raise ValueError("expected a boolean (true/false, 1/0, yes/no)")
    return value


def _parse_float(text):
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _parse_q(text):
    match = re.fullmatch(r"[Qq](\d+)\.(\d+)", text.strip())
    if not match:
        raise ValueError("expected a fixed-point format Q<int_bits>.<frac_bits>, e.g. Q8.8")
    from ..model import Q
    return Q(int(match[1]), int(match[2]))


INT = Type("int", _parse_int, int)
BOOL = Type("bool", _parse_bool, bool)
FLOAT = Type("float", _parse_float, float)
QFMT = Type("Q", _parse_q, str)


def choice(*options):
    """A parameter that takes one of a few fixed words."""
    def parse(text):
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return text
    return Type("|".join(options), parse, str)


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    type: Type
    default: str       # as it would be written on the command line
    help: str


@dataclasses.dataclass(frozen=True)
class Built:
    """A constructed component and the values that made it."""
    unit: "Unit"
    component: object
    given: dict        # name -> text, as given
    resolved: dict     # name -> parsed value, defaults filled in
    arguments: dict    # keyword arguments the component was constructed with


@dataclasses.dataclass(frozen=True)
class Unit:
    """One exportable unit.

    `component` is "module:Class" relative to this package (imported lazily), or a class.
    `arguments(values)` maps the parsed parameters to constructor keyword arguments; without
    it the parameters are passed through by name."""
    name: str
    component: object
    description: str
    params: tuple
    arguments: Callable[[dict], dict] | None = None

    def param(self, name):
        for param in self.params:
            if param.name == name:
                return param
        raise ParameterError(f"{self.name}: unknown parameter {name!r}; valid parameters: "
                             f"{', '.join(p.name for p in self.params) or '(none)'}")

    def component_class(self):
        if not isinstance(self.component, str):
            return self.component
        module, _, cls = self.component.partition(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)

    def resolve(self, given):
        """Parse `given` (name -> text) and fill in defaults: name -> value."""
        for name in given:
            self.param(name)
        values = {}
        for param in self.params:
            text = given.get(param.name, param.default)
            try:
                values[param.name] = param.type.parse(text)
            except (TypeError, ValueError) as error:
                raise ParameterError(f"{self.name}: {param.name}={text}: {error}") from None
        return values

    def build(self, given=None):
        given = dict(given or {})
        values = self.resolve(given)
        cls = self.component_class()
        try:
            arguments = self.arguments(values) if self.arguments else dict(values)
            component = cls(**arguments)
        except (TypeError, ValueError) as error:
            context = " ".join(f"{name}={text}" for name, text in given.items())
            context = f"{self.name}: {context}" if context else self.name
            raise ParameterError(f"{context}: {error}") from None
        return Built(self, component, given, values, arguments)

    def shown(self, values):
        """`values` (name -> parsed value) as JSON-able values."""
        return {p.name: p.type.show(values[p.name]) for p in self.params}


def unit(name):
    """The registered unit called `name`, or a ParameterError listing the valid names."""
    try:
        return UNITS[name]
    except KeyError:
        raise ParameterError(f"unknown unit {name!r}; valid units: "
                             f"{', '.join(sorted(UNITS)) or '(none)'}") from None


UNITS = {u.name: u for u in (
)}
