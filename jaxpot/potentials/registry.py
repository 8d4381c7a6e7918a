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
  reference docs (``docs/gen_tables.py``) and strict checks
  (:func:`check_keys`; ``None`` while the factory checks them itself).
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

import dataclasses
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


def check_keys(kind: str, table, config: dict, *, inapplicable: dict | None = None) -> None:
    """Check the keys of a ``[potential]`` table of ``kind`` (``kind`` itself
    left out) against the kind's :class:`~jaxpot.config.Table`: InputError for
    an unknown key (naming the kind, the key and the allowed keys), for a key
    that does not apply here (``inapplicable``: key -> reason; see
    :meth:`Table.check_known`) and for a value of the wrong type
    (:meth:`Key.validate` without coercion: ``true`` is not a number, 2.5 not
    an integer, ``"0.5"`` not a number). Only types are checked here: the
    values (ranges, choices) stay the kind's own checks, and nothing is
    filled in or converted."""
    given = {k: v for k, v in config.items() if k != "kind"}
    unknown = sorted(k for k in given if k not in table)
    if unknown:
        raise InputError(f"unknown key(s) for potential kind {kind!r}: {', '.join(unknown)} "
                         f"(allowed: {', '.join(table.names)})")
    table.check_known(given, inapplicable=inapplicable)
    for name, value in given.items():
        dataclasses.replace(table[name], choices=None, check=None).validate(value, f"potential kind {kind!r}:")


# kind -> "module:attribute" of the kind's KindSpec. The only place that lists the kinds.
_ENTRIES = {
    "lj": "jaxpot.forcefield.kinds:LJ_KIND",
    "harmonic": "jaxpot.forcefield.kinds:HARMONIC_KIND",
    "qtip4pf": "jaxpot.forcefield.water:QTIP4PF_KIND",
    "spcfw": "jaxpot.forcefield.water:SPCFW_KIND",
    "atomic_energies": "jaxpot.potentials.saved:ATOMIC_ENERGIES_KIND",
    "model": "jaxpot.potentials.saved:MODEL_KIND",
    "gaussian_electrostatics": "jaxpot.electrostatics.gaussian:GAUSSIAN_ELECTROSTATICS_KIND",
    "behler_parrinello": "jaxpot.ml.behler_parrinello:KIND",
    "nequip": "jaxpot.ml.equivariant:NEQUIP_KIND",
    "mace": "jaxpot.ml.equivariant:MACE_KIND",
    "kernel": "jaxpot.kernels.kind:KIND",
    "openmm": "jaxpot.interop.openmm.kind:KIND",
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
    if not isinstance(obj, KindSpec) or obj.name != kind:
        raise TypeError(f"{_ENTRIES[kind]} must be the KindSpec of kind {kind!r}")
    return obj
