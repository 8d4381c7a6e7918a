"""Typed configuration tables: one declaration per TOML table, checked strictly.

Every table that a user writes (``[md]``, ``[output]``, ``[fit]``, a
``[potential]`` of some kind, ...) is declared once as a :class:`Table` of
:class:`Key` s. A key carries its type, default, unit, allowed choices and a
one-line meaning; :meth:`Table.resolve` fills defaults and rejects, with a
one-line :class:`~jaxpot.errors.InputError` that names the table and the key:

- unknown keys (the message lists the allowed ones),
- keys that do not apply in this case (``inapplicable``: e.g. PIMD-only keys
  with ``ensemble = "nvt"``),
- wrong types, without coercion: ``true`` is not a number, ``200.7`` is not an
  integer, the string ``"0.5"`` is not a number; an integer is accepted where
  a float is expected,
- values outside ``choices`` or rejected by the key's ``check``.

:meth:`Table.markdown` writes the reference table that ``docs/config.md``
shows, so the documentation and the checks come from one declaration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import InputError


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED = _Required()
"""Default of a key the user must give."""

# the TOML types a key may declare, and their names in messages and docs
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "a table"}


def _type_ok(value, kind) -> bool:
    if kind is Any:
        return True
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _type_name(kind) -> str:
    if kind is Any:
        return "anything"
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, getattr(k, "__name__", str(k))) for k in kinds)


def _toml(value) -> str:
    """A default as the user would write it in TOML (true, "text", [1, 2])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


@dataclass(frozen=True)
class Key:
    """One key of a table.

    type: a Python type (bool, int, float, str, list, dict), a tuple of them,
        or ``typing.Any``; ``None`` is always allowed when the default is None.
    default: the value used when the key is absent (``REQUIRED``: must be given).
    unit: metal unit of the value ("K", "fs", "A", "eV", "bar", ...), "" if none.
    doc: one line for the reference table.
    choices: the allowed values, if a closed set.
    check: ``check(value) -> str | None``: a reason the value is wrong, or None.
    """
    name: str
    type: Any
    default: Any = REQUIRED
    unit: str = ""
    doc: str = ""
    choices: Optional[tuple] = None
    check: Optional[Callable[[Any], Optional[str]]] = None

    def validate(self, value, where: str):
        """The value, checked; InputError naming ``where`` and this key otherwise."""
        if value is None and self.default is None:
            return None
        kinds = self.type if isinstance(self.type, tuple) else (self.type,)
        if not any(_type_ok(value, k) for k in kinds):
            unit = f" ({self.unit})" if self.unit else ""
            raise InputError(f"{where} {self.name} must be {_type_name(self.type)}{unit}, "
                             f"got {value!r} ({type(value).__name__})")
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{where} {self.name} must be finite, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise InputError(f"{where} {self.name} = {value!r} is not one of: "
                             f"{', '.join(map(repr, self.choices))}")
        if self.check is not None:
            reason = self.check(value)
            if reason:
                raise InputError(f"{where} {self.name} {reason}, got {value!r}")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool) and int not in kinds:
            value = float(value)
        return value


# common checks, as ``check=`` arguments
def positive(v) -> Optional[str]:
    return None if v > 0 else "must be positive"


def non_negative(v) -> Optional[str]:
    return None if v >= 0 else "must be >= 0"


def at_least(n) -> Callable[[Any], Optional[str]]:
    return lambda v: None if v >= n else f"must be >= {n}"


@dataclass(frozen=True)
class Table:
    """A TOML table: its name as the user writes it (``"[md]"``) and its keys."""
    name: str
    keys: tuple
    doc: str = ""
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        index = {k.name: k for k in self.keys}
        if len(index) != len(self.keys):
            raise ValueError(f"{self.name}: duplicate key declarations")
        object.__setattr__(self, "_index", index)

    def __contains__(self, name) -> bool:
        return name in self._index

    def __getitem__(self, name) -> Key:
        return self._index[name]

    @property
    def names(self) -> tuple:
        return tuple(self._index)

    def defaults(self) -> dict:
        """Every key's default (REQUIRED ones left out)."""
        return {k.name: k.default for k in self.keys if k.default is not REQUIRED}

    def check_known(self, data: dict, *, inapplicable: dict | None = None) -> None:
        """InputError for a key that this table does not have, or one given where it does not
        apply (``inapplicable``: key -> the reason, e.g. "applies to ensemble = 'pimd' only")."""
        if not isinstance(data, dict):
            raise InputError(f"{self.name} must be a table, got {type(data).__name__}")
        unknown = sorted(k for k in data if k not in self._index)
        if unknown:
            raise InputError(f"unknown key(s) in {self.name}: {', '.join(unknown)} "
                             f"(allowed: {', '.join(self.names)})")
        for key, reason in (inapplicable or {}).items():
            if key in data:
                raise InputError(f"{self.name} {key} {reason}")

    def check(self, data: dict, *, inapplicable: dict | None = None) -> None:
        """:meth:`check_known`, then the type, choices and check of every given key;
        nothing is filled in or converted (for factories that fill their own defaults)."""
        self.check_known(data, inapplicable=inapplicable)
        for name, value in data.items():
            self._index[name].validate(value, self.name)

    def resolve(self, data: dict | None, *, inapplicable: dict | None = None) -> dict:
        """A new dict with every key of this table: the given values checked, defaults filled."""
        data = {} if data is None else data
        self.check_known(data, inapplicable=inapplicable)
        out = {}
        for key in self.keys:
            if key.name in data:
                out[key.name] = key.validate(data[key.name], self.name)
            elif key.default is REQUIRED:
                raise InputError(f"{self.name} needs {key.name!r}" + (f" ({key.doc})" if key.doc else ""))
            else:
                out[key.name] = key.default
        return out

    def markdown(self) -> str:
        """The reference table (key | type | default | unit | meaning) for docs/config.md."""
        rows = ["| key | type | default | unit | meaning |", "|---|---|---|---|---|"]
        for k in self.keys:
            default = "required" if k.default is REQUIRED else ("auto" if k.default is None else _toml(k.default))
            meaning = k.doc.rstrip()
            if k.choices:
                sep = " " if not meaning or meaning.endswith(".") else ". "
                meaning += f"{sep}One of: {', '.join(f'`{_toml(c)}`' for c in k.choices)}."
            rows.append(f"| `{k.name}` | {_type_name(k.type).replace('a ', '').replace('an ', '')} | `{default}` | {k.unit} | {meaning} |")
        return "\n".join(rows)
