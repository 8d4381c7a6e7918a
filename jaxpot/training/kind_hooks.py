"""TEMPORARY (issue 18): the one training hook still kept outside its kind's
module, until ``gaussian_electrostatics`` declares its own
:class:`~jaxpot.potentials.registry.KindSpec` (its module is being moved to
``jaxpot/electrostatics/``). The consolidation pass then deletes this file
and training calls ``registry.spec`` instead of :func:`kind_spec`.

Every other kind (behler_parrinello, nequip, mace, kernel, atomic_energies,
model, openmm, ...) declares its hooks in its own module's KindSpec, which
:func:`kind_spec` returns unchanged.

Left here:

- ``gaussian_electrostatics``: ``padded_batches`` (its energy accepts padded
  batches of structures of different sizes: padding atoms of species 0
  carry no charge).
"""
from __future__ import annotations

import dataclasses

from ..potentials import registry

# REMAINING HOOKS (move into jaxpot/electrostatics/gaussian.py as its KindSpec, then delete this file)
_HOOKS = {
    "gaussian_electrostatics": dict(padded_batches=True),
}


def kind_spec(kind: str) -> registry.KindSpec:
    """``registry.spec(kind)``, with the temporary hooks above for the kinds
    that do not declare a KindSpec yet."""
    spec = registry.spec(kind)
    if kind in _HOOKS:
        spec = dataclasses.replace(spec, **_HOOKS[kind])
    return spec
