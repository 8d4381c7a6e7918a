"""Potential energy surfaces: every kind follows the contract in :mod:`.base`.

:func:`build_potential` turns a ``[potential]`` table (TOML / dict, metal
units) into a :class:`~jaxpot.potentials.base.Potential` for a system.
"""
from __future__ import annotations

from ..errors import InputError
from ..system import System
from . import registry
from .base import Context, Potential, sum_potentials  # noqa: F401  (re-exported)
from .registry import KindSpec  # noqa: F401


def build_potential(config: dict, system: System) -> Potential:
    """A Potential from a ``[potential]`` table, e.g. ``{"kind": "qtip4pf"}``."""
    if not isinstance(config, dict):
        raise InputError("[potential] must be a table with a 'kind' key")
    kind = config.get("kind")
    if kind is None:
        raise InputError("[potential] has no 'kind' (one of: " + ", ".join(registry.names()) + ")")
    if kind == registry.COMPOSITE:
        terms = config.get("terms")
        if not terms or not isinstance(terms, list):
            raise InputError("potential kind 'sum' needs a non-empty list 'terms'")
        unknown = set(config) - {"kind", "terms"}
        if unknown:
            raise InputError(f"unknown key(s) for potential kind 'sum': {', '.join(sorted(unknown))}")
        return sum_potentials([build_potential(t, system) for t in terms])
    return registry.spec(kind).factory(dict(config), system)
