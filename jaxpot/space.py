"""Displacements under periodic boundary conditions (orthorhombic and triclinic).

Convention: the cell has lattice vectors as rows (A); fractional coordinates
f satisfy r = f @ cell. Pair displacements always come with an explicit
integer image shift s (from the neighbor list), r_ij = r_j - r_i + s @ cell,
which keeps them exact for cells smaller than twice the cutoff and keeps the
energy differentiable in the cell (stress by strain derivative).

For users who want JAX MD's ``(displacement_fn, shift_fn)`` pair,
:func:`jax_md_space` returns the matching ``jax_md.space`` functions.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def perpendicular_widths(cell) -> np.ndarray:
    """Distances (A) between opposite faces of the cell: V / |a_j x a_k|."""
    cell = np.asarray(cell, dtype=np.float64)
    vol = abs(np.linalg.det(cell))
    a, b, c = cell
    return np.array([
        vol / np.linalg.norm(np.cross(b, c)),
        vol / np.linalg.norm(np.cross(c, a)),
        vol / np.linalg.norm(np.cross(a, b)),
    ])


def volume(cell):
    """Cell volume, A^3 (differentiable)."""
    return jnp.abs(jnp.linalg.det(cell))


def times3(v, m):
    """``v @ m`` for rows v (..., 3) and a 3 x 3 matrix m (cell or inverse
    cell), written out as three broadcast products: XLA fuses it with its
    neighbours, where a (K, 3) x (3, 3) dot goes to a matmul library that
    was measured 3x slower for this shape on CPU (1.5 ms for 134400 rows)."""
    return v[..., 0:1] * m[0] + v[..., 1:2] * m[1] + v[..., 2:3] * m[2]


def to_fractional(positions, cell):
    return times3(positions, jnp.linalg.inv(cell))


def wrap(positions, cell):
    """Positions wrapped into the cell [0, 1) in fractional coordinates."""
    f = to_fractional(positions, cell)
    return times3(f - jnp.floor(f), cell)


def minimum_image(dr, cell, inv=None):
    """Minimum-image displacement by rounding fractional coordinates;
    ``inv``: inv(cell) if already at hand.

    Exact for orthorhombic cells and for triclinic cells that are not too
    skewed (ASE/LAMMPS-style reduced cells)."""
    f = times3(dr, jnp.linalg.inv(cell) if inv is None else inv)
    return times3(f - jnp.round(f), cell)


def pair_vectors(positions, cell, idx, shifts):
    """r_ij = r_j - r_i + s_ij @ cell for pairs ``idx`` (2, K) with integer
    image shifts ``shifts`` (K, 3). Shape (K, 3), A."""
    i, j = idx
    return positions[j] - positions[i] + times3(shifts, cell)


def jax_md_space(cell, pbc=True):
    """``(displacement_fn, shift_fn)`` from ``jax_md.space`` for this cell.

    Free space when ``pbc`` is False, else ``periodic_general`` with the
    JAX MD convention (column lattice vectors, so the transpose of ours)."""
    from jax_md import space

    if not pbc:
        return space.free()
    return space.periodic_general(jnp.asarray(cell).T, fractional_coordinates=False)
