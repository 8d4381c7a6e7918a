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


def dataset_species(structures) -> list[str]:
    """Element symbols present, ordered by atomic number."""
    from ase.data import chemical_symbols

    zs = sorted(set(int(z) for s in structures for z in s.numbers))
    return [chemical_symbols[z] for z in zs]


def half_pairs(s, cutoff: float):
    """Half neighbor list (i, j, shifts) within ``cutoff`` A, every periodic
    image included: each pair once, r_ij = x_j - x_i + shift @ cell."""
    from ase.neighborlist import primitive_neighbor_list

    pbc = np.array([s.pbc] * 3)
    cell = s.cell if s.pbc else np.eye(3) * (np.ptp(s.positions, axis=0).max() + 2 * cutoff + 1.0)
    i, j, S = primitive_neighbor_list("ijS", pbc, cell, s.positions, cutoff, self_interaction=False)
    keep = (i < j) | ((i == j) & ((S[:, 0] > 0) | ((S[:, 0] == 0) & ((S[:, 1] > 0) | ((S[:, 1] == 0) & (S[:, 2] > 0))))))
    return i[keep], j[keep], S[keep]


def species_and_scale(t: dict, train) -> dict:
    """``species`` of the data and, without an explicit ``energy_scale``, the
    RMS of the reference force components (eV/A; MACE's choice)."""
    t.setdefault("species", dataset_species(train))
    if "energy_scale" not in t and any(s.forces is not None for s in train):
        f = np.concatenate([s.forces.ravel() for s in train if s.forces is not None])
        t["energy_scale"] = float(max(np.sqrt(np.mean(f * f)), 1e-3))
    return t
