"""Potential energy surfaces: every kind follows the contract in :mod:`.base`.

:func:`build_potential` turns a ``[potential]`` table (TOML / dict, metal
units) into a :class:`~jaxpot.potentials.base.Potential` for a system.
"""
from __future__ import annotations

import importlib

from ..system import InputError, System
from .base import Context, Potential, sum_potentials  # noqa: F401  (re-exported)

# kind -> "module:factory"; factories are (config: dict, system) -> Potential.
# Imported lazily so optional dependencies stay optional.
KINDS = {
    "lj": "jaxpot.potentials.classical:lj_from_config",
    "harmonic": "jaxpot.potentials.classical:harmonic_from_config",
    "qtip4pf": "jaxpot.potentials.water:qtip4pf_from_config",
    "spcfw": "jaxpot.potentials.water:spcfw_from_config",
    "atomic_energies": "jaxpot.potentials.saved:atomic_energies_from_config",
    "model": "jaxpot.potentials.saved:model_from_config",
    "gaussian_electrostatics": "jaxpot.potentials.electrostatics:gaussian_electrostatics_from_config",
    "behler_parrinello": "jaxpot.potentials.behler_parrinello:behler_parrinello_from_config",
    "nequip": "jaxpot.potentials.equivariant:nequip_from_config",
    "mace": "jaxpot.potentials.equivariant:mace_from_config",
    "kernel": "jaxpot.potentials.kernels:kernel_from_config",
    "openmm": "jaxpot.interop.openmm:openmm_from_config",
}


def build_potential(config: dict, system: System) -> Potential:
    """A Potential from a ``[potential]`` table, e.g. ``{"kind": "qtip4pf"}``."""
    if not isinstance(config, dict):
        raise InputError("[potential] must be a table with a 'kind' key")
    kind = config.get("kind")
    if kind is None:
        raise InputError("[potential] has no 'kind' (one of: " + ", ".join(sorted(KINDS) + ["sum"]) + ")")
    if kind == "sum":
        terms = config.get("terms")
        if not terms or not isinstance(terms, list):
            raise InputError("potential kind 'sum' needs a non-empty list 'terms'")
        unknown = set(config) - {"kind", "terms"}
        if unknown:
            raise InputError(f"unknown key(s) for potential kind 'sum': {', '.join(sorted(unknown))}")
        return sum_potentials([build_potential(t, system) for t in terms])
    if kind not in KINDS:
        raise InputError(f"unknown potential kind {kind!r} (known: {', '.join(sorted(KINDS) + ['sum'])})")
    module, factory = KINDS[kind].split(":")
    try:
        fn = getattr(importlib.import_module(module), factory)
    except (ImportError, AttributeError) as err:
        raise InputError(f"potential kind {kind!r} is not available in this version of jaxpot ({err})") from err
    return fn(dict(config), system)
