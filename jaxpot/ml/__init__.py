"""Machine-learned potential kinds (energies eV, lengths A):

- :mod:`.behler_parrinello`: atom-centred symmetry functions and one
  feed-forward network per element (``kind = "behler_parrinello"``), on the
  descriptors of :mod:`.acsf`;
- :mod:`.equivariant`: the ``nequip`` and ``mace`` kinds (configuration,
  graph inputs, the Potential wrapper) on the networks of :mod:`.nequip` and
  :mod:`.mace`, built from the shared layers of :mod:`.equivariant_layers`;
- :mod:`.data_defaults`: defaults that are statistics of the training data
  (the ``from_data`` hooks of these kinds).

Each kind's module declares its keys (a :class:`jaxpot.config.Table`) and
its :class:`~jaxpot.potentials.registry.KindSpec` (``KIND``,
``NEQUIP_KIND``, ``MACE_KIND``), which the registry of kinds points at.

Names that two kinds share (``resolve_config``, ``DEFAULTS``) are reached
through their module, e.g. ``jaxpot.ml.behler_parrinello.DEFAULTS``.
"""
from __future__ import annotations

from . import behler_parrinello, equivariant  # noqa: F401
from .behler_parrinello import (behler_parrinello_from_config, max_neighbor_count, radial_grid,
                                standardize_from_data, symmetry_function_parameters, symmetry_functions)
from .equivariant import build_module, intermediate_features, mace_from_config, nequip_from_config
from .equivariant_layers import polynomial_envelope

__all__ = [
    "behler_parrinello_from_config", "build_module", "intermediate_features", "mace_from_config",
    "max_neighbor_count", "nequip_from_config", "polynomial_envelope", "radial_grid",
    "standardize_from_data", "symmetry_function_parameters", "symmetry_functions",
]
