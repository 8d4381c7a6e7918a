"""Host-side pair lists for preparing data (numpy, variable size, built with
ASE's ``primitive_neighbor_list``): the pairs of one structure for packing
training graphs and for data statistics. On-device lists with static
capacity for MD are :mod:`jaxpot.partition.pairs` and
:mod:`jaxpot.partition.clusters`.

Units: lengths A.
"""
from __future__ import annotations

import numpy as np


def half_pairs(s, cutoff: float):
    """Half neighbor list (i, j, shifts) within ``cutoff`` A of a structure ``s``
    (numpy ``positions`` (N, 3) A, ``cell`` (3, 3) A, ``pbc`` bool), every periodic
    image included: each pair once, r_ij = x_j - x_i + shift @ cell."""
    from ase.neighborlist import primitive_neighbor_list

    pbc = np.array([s.pbc] * 3)
    cell = s.cell if s.pbc else np.eye(3) * (np.ptp(s.positions, axis=0).max() + 2 * cutoff + 1.0)
    i, j, S = primitive_neighbor_list("ijS", pbc, cell, s.positions, cutoff, self_interaction=False)
    keep = (i < j) | ((i == j) & ((S[:, 0] > 0) | ((S[:, 0] == 0) & ((S[:, 1] > 0) | ((S[:, 1] == 0) & (S[:, 2] > 0))))))
    return i[keep], j[keep], S[keep]
