"""TEMPORARY (issue 18): the training hooks of the potential kinds, until
each moves into its kind's own module (the consolidation pass then deletes
this file and :func:`kind_spec` becomes ``registry.spec``).

Training never names a kind: it reads the kind's
:class:`~jaxpot.potentials.registry.KindSpec` through :func:`kind_spec`,
which adds the hooks below to the registry's entry:

- ``learned``: parameters stepped in absolute units (ML networks, fitted
  per-element energies, kernel weights); every other kind is a physics model
  whose parameters the optimiser steps relative to their initial values
  (``[fit] relative_parameters = "auto"``).
- ``padded_batches``: the energy accepts padded batches of structures of
  different sizes (one model for every structure).
- ``from_data(term, structures) -> term``: defaults that are statistics of
  the training data: the Behler-Parrinello triplet capacity
  (``max_neighbors``), the NequIP/MACE mean neighbor count
  (``avg_num_neighbors``, within the kind's default cutoff unless one is
  given), ``species`` and ``energy_scale`` (RMS of the reference force
  components, eV/A, as in MACE).
- ``fit_params(potential, params, batch) -> params``: Behler-Parrinello
  feature standardisation from one padded statistics batch.
- ``fit(config, structures, energies, fit_table) -> (config, params)``: the
  kernel's closed-form fit (:func:`jaxpot.potentials.kernels.fit_kernel`).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..potentials import registry
from .data import Labelled, dataset_species, half_pairs


def _species_and_scale(t: dict, train: list[Labelled]) -> dict:
    """``species`` of the data and, without an explicit ``energy_scale``, the
    RMS of the reference force components (eV/A; MACE's choice)."""
    t.setdefault("species", dataset_species(train))
    if "energy_scale" not in t and any(s.forces is not None for s in train):
        f = np.concatenate([s.forces.ravel() for s in train if s.forces is not None])
        t["energy_scale"] = float(max(np.sqrt(np.mean(f * f)), 1e-3))
    return t


def behler_parrinello_from_data(t: dict, train: list[Labelled]) -> dict:
    t = dict(t)
    if "max_neighbors" not in t:
        # triplet-list capacity from the data (the dense-liquid default is far
        # too large for clusters); MD on denser systems raises it at build time
        from ..potentials.behler_parrinello import DEFAULTS as BP_DEFAULTS

        rc = float(t.get("cutoff", BP_DEFAULTS["cutoff"]))
        most = max(int(np.bincount(np.concatenate(half_pairs(s, rc)[:2]), minlength=s.n_atoms).max())
                   if s.n_atoms > 1 else 0 for s in train)
        t["max_neighbors"] = int(8 * math.ceil((1.25 * most + 4) / 8))
    return _species_and_scale(t, train)


def _equivariant_from_data(defaults_name: str):
    def from_data(t: dict, train: list[Labelled]) -> dict:
        t = dict(t)
        if "avg_num_neighbors" not in t:
            # messages are divided by the mean neighbor count of the training data (as MACE does)
            from ..potentials import equivariant

            rc = float(t.get("cutoff", getattr(equivariant, defaults_name)["cutoff"]))
            pairs_total = sum(2 * len(half_pairs(s, rc)[0]) for s in train)
            t["avg_num_neighbors"] = float(max(pairs_total / sum(s.n_atoms for s in train), 1.0))
        return _species_and_scale(t, train)
    return from_data


def behler_parrinello_fit_params(potential, params, batch):
    """Feature standardisation of the networks from a padded batch of
    training structures (positions A)."""
    from ..potentials.behler_parrinello import standardize_from_data

    return standardize_from_data(potential, params, batch.positions, batch.context)


def kernel_fit(config: dict, structures: list[Labelled], energies, fit_table: dict):
    """Closed-form kernel regression on the training structures (energies eV,
    forces eV/A); ``fit_table`` is not used (the kernel's fit options are
    [model] keys)."""
    from ase import Atoms

    from ..potentials import kernels

    atoms = [Atoms(numbers=s.numbers, positions=s.positions, cell=s.cell, pbc=s.pbc) for s in structures]
    return kernels.fit_kernel(dict(config), atoms, np.asarray(energies), [s.forces for s in structures])


_HOOKS = {
    "behler_parrinello": dict(learned=True, padded_batches=True, from_data=behler_parrinello_from_data,
                              fit_params=behler_parrinello_fit_params),
    "nequip": dict(learned=True, padded_batches=True, from_data=_equivariant_from_data("NEQUIP_DEFAULTS")),
    "mace": dict(learned=True, padded_batches=True, from_data=_equivariant_from_data("MACE_DEFAULTS")),
    "atomic_energies": dict(learned=True, padded_batches=True),
    "gaussian_electrostatics": dict(padded_batches=True),
    "kernel": dict(learned=True, padded_batches=True, fit=kernel_fit),
}


def kind_spec(kind: str) -> registry.KindSpec:
    """The registry's KindSpec of ``kind`` with its training hooks."""
    return dataclasses.replace(registry.spec(kind), **_HOOKS.get(kind, {}))
