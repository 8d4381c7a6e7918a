"""The registry of potential kinds: one :class:`KindSpec` per ``[potential] kind``.

A kind's own module declares everything jaxpot needs to know about it in a
``KindSpec`` (its factory, its typed key table, whether ``jaxpot train`` can
fit it, its data-dependent initialisation), so no other module names a kind.
The registry only knows where each kind's module is (``_ENTRIES``), and
imports it lazily so optional dependencies (OpenMM, tblite) stay optional.

Contract of the hooks (all optional, metal units):

- ``factory(config, system) -> Potential``: build the potential from a
  ``[potential]`` table (``config`` includes ``kind``).
- ``table``: the :class:`~jaxpot.config.Table` of the kind's keys, for the
  reference docs and strict checks (``None`` while the factory checks them).
- ``learned``: the kind has parameters that ``jaxpot train`` fits with
  gradients (``init(key, system)`` gives random ones).
- ``padded_batches``: its energy accepts padded batches of structures
  (padding atoms of species 0 contribute nothing).
- ``from_data(config, structures) -> config``: fills keys whose defaults are
  statistics of the training data (neighbor counts, ...), before the model
  is built.
- ``fit_params(potential, params, batches) -> params``: sets parameters from
  data after ``init`` (feature scaling, ...), before gradient steps.
- ``fit(config, structures, energies, fit_table) -> (config, params)``: a
  closed-form fit that replaces gradient training (kernel regression).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..errors import InputError


@dataclass(frozen=True)
class KindSpec:
    """What jaxpot knows about one potential kind (see the module docstring)."""
    name: str
    factory: Callable
    table: Any = None
    learned: bool = False
    padded_batches: bool = False
    from_data: Optional[Callable] = None
    fit_params: Optional[Callable] = None
    fit: Optional[Callable] = None
    doc: str = ""


# kind -> "module:attribute", the attribute being a KindSpec or (for kinds not yet
# declared as specs) the factory itself. The only place that lists the kinds.
_ENTRIES = {
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
COMPOSITE = "sum"
"""The kind that adds other kinds (``terms = [...]``); handled by :func:`build_potential`."""


def names() -> list[str]:
    """Every kind, ``sum`` included, sorted."""
    return sorted(_ENTRIES) + [COMPOSITE]


def spec(kind: str) -> KindSpec:
    """The KindSpec of ``kind``; InputError naming the known kinds otherwise."""
    if kind not in _ENTRIES:
        raise InputError(f"unknown potential kind {kind!r} (known: {', '.join(names())})")
    module, attr = _ENTRIES[kind].split(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise InputError(f"potential kind {kind!r} is not available in this version of jaxpot ({err})") from err
    if isinstance(obj, KindSpec):
        return obj
    return KindSpec(name=kind, factory=obj)
