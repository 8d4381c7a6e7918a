"""Defaults of the machine-learned kinds that are statistics of the training
data (the ``from_data`` hooks of their KindSpecs, see
:mod:`jaxpot.potentials.registry`): the elements present, the energy scale
and neighbor counts within a cutoff.

The structures are ``jaxpot.training.data.Labelled`` (host-side numpy:
``numbers``, ``positions`` A, ``cell`` A, ``pbc``, ``forces`` eV/A or None,
``n_atoms``); this module only reads those attributes, so it sits below
training. Units: lengths A, forces eV/A, energy scale eV/A (MACE's choice:
the RMS of the reference force components).
"""
from __future__ import annotations

import numpy as np

from ..partition.host import half_pairs  # noqa: F401  (the from_data hooks count neighbors with it)


def dataset_species(structures) -> list[str]:
    """Element symbols present, ordered by atomic number."""
    from ase.data import chemical_symbols

    zs = sorted(set(int(z) for s in structures for z in s.numbers))
    return [chemical_symbols[z] for z in zs]


def species_and_scale(t: dict, train) -> dict:
    """``species`` of the data and, without an explicit ``energy_scale``, the
    RMS of the reference force components (eV/A; MACE's choice)."""
    t.setdefault("species", dataset_species(train))
    if "energy_scale" not in t and any(s.forces is not None for s in train):
        f = np.concatenate([s.forces.ravel() for s in train if s.forces is not None])
        t["energy_scale"] = float(max(np.sqrt(np.mean(f * f)), 1e-3))
    return t
