"""Ewald summation: parameter choice, the k-vector set and the reciprocal sum.

Units: positions and cell in A (cell rows are lattice vectors), charges in e,
energies in eV, the splitting parameter ``alpha`` in 1/A. The Coulomb
constant is :data:`jaxpot.units.KE` (eV A / e^2).

Ewald summation (e.g. Frenkel & Smit, ch. 12; Allen & Tildesley 6.2):
    E = E_real + E_recip + E_self + E_background
    E_real  = ke sum_pairs q_i q_j erfc(alpha r)/r          (r < rc)
    E_recip = ke/(2V) sum_{k != 0} 4 pi/k^2 exp(-k^2/(4 alpha^2)) |S(k)|^2,
              S(k) = sum_i q_i exp(i k.r_i),  k = 2 pi m @ inv(cell)^T
    E_self  = -ke alpha/sqrt(pi) sum_i q_i^2
    E_bg    = -ke pi Q^2/(2 V alpha^2)   (Q = sum_i q_i; a uniform
              neutralising background, which makes E independent of alpha
              for a charged cell; Hub et al., JCTC 10, 381 (2014))
The reciprocal sum runs over the half space of integer m (S(-k) = S(k)*);
S(k) on the box of m comes from per-axis phase tables contracted by a
matrix product (no per-k transcendental functions). E_real, E_self and E_bg
are assembled by :class:`jaxpot.electrostatics.coulomb.Coulomb`.

Parameters from a target accuracy delta, as OpenMM chooses them (NonbondedForce
documentation; ``NonbondedForceImpl::calcEwaldParameters``):
    alpha = sqrt(-ln(2 delta)) / rc
    Ewald: kmax_a = smallest integer with
           0.05 sqrt(L_a alpha) kmax exp(-(pi kmax/(L_a alpha))^2) < delta,
           L_a = |a_a| (a k-vector with |m_a| > kmax_a has |k| > 2 pi kmax_a/L_a);
           the sum keeps m with |m_a| <= kmax_a and |k| <= min_a 2 pi kmax_a/L_a
           (a sphere, which holds every dropped term below the estimate).
The PME grid recipe is in :mod:`jaxpot.electrostatics.pme`.
"""
from __future__ import annotations

import math
from typing import Optional

import jax.numpy as jnp
import numpy as np

from ..potentials.base import esum
from ..space import times3
from ..system import InputError
from ..units import KE


# --------------------------------------------------------------------------
# Parameter choice (OpenMM's recipes)
# --------------------------------------------------------------------------

def _check_cell(cell):
    cell = np.asarray(cell, dtype=np.float64)
    if cell.shape != (3, 3):
        raise InputError(f"cell must be a (3, 3) array of lattice vectors (rows), got shape {cell.shape}")
    if not np.all(np.isfinite(cell)) or abs(np.linalg.det(cell)) < 1e-6:
        raise InputError("cell is degenerate (zero volume) or not finite; Ewald/PME need a periodic cell")
    return cell


def _check_accuracy(accuracy):
    if not (0.0 < float(accuracy) < 0.5):
        raise InputError(f"accuracy must be in (0, 0.5), got {accuracy}")


def ewald_alpha(cutoff: float, accuracy: float) -> float:
    """alpha = sqrt(-ln(2 delta))/rc, 1/A (OpenMM), rc in A."""
    _check_accuracy(accuracy)
    if not cutoff > 0:
        raise InputError(f"cutoff must be positive, got {cutoff}")
    return math.sqrt(-math.log(2.0 * accuracy)) / float(cutoff)


def _ewald_kmax(length, alpha, accuracy):
    def err(k):
        t = k * math.pi / (length * alpha)
        return 0.05 * math.sqrt(length * alpha) * k * math.exp(-t * t)
    k = 1
    while err(k) > accuracy:
        k += 1
    return k


def ewald_parameters(cell, cutoff: float, accuracy: float = 1e-5, alpha: Optional[float] = None):
    """Ewald parameters for a cell (A), real-space cutoff (A) and accuracy.

    Returns ``(alpha 1/A, kmax (3,) ints)``; see the module docstring."""
    cell = _check_cell(cell)
    a = ewald_alpha(cutoff, accuracy) if alpha is None else float(alpha)
    lengths = np.linalg.norm(cell, axis=1)
    kmax = tuple(_ewald_kmax(L, a, accuracy) for L in lengths)
    return a, kmax


def _half_space(km):
    """Integer m with |m_a| <= kmax_a, one of each pair (m, -m), m != 0."""
    r = [np.arange(-k, k + 1) for k in km]
    m = np.stack(np.meshgrid(*r, indexing="ij"), axis=-1).reshape(-1, 3)
    pos = (m[:, 0] > 0) | ((m[:, 0] == 0) & ((m[:, 1] > 0) | ((m[:, 1] == 0) & (m[:, 2] > 0))))
    return m[pos].astype(np.float64)


def ewald_kspace(cell_np, cutoff: float, accuracy: float, alpha: float, kmax=None):
    """The Ewald k-vector set for a cell (3, 3) A (rows, float64 numpy),
    real-space cutoff (A), accuracy and alpha (1/A).

    Returns ``(kmax (3,) ints, kvectors (K, 3) integer m of the half space,
    kweights on the m_1 >= 0 box)``. kmax (int or 3 ints) overrides the
    choice of :func:`ewald_parameters`; without it the sum keeps the sphere
    |k| <= min_a 2 pi kmax_a/L_a (module docstring)."""
    lengths = np.linalg.norm(cell_np, axis=1)
    if kmax is None:
        _, km = ewald_parameters(cell_np, cutoff, accuracy, alpha=alpha)
        kcut = min(2.0 * math.pi * k / L for k, L in zip(km, lengths))
    else:
        km = (int(kmax),) * 3 if np.ndim(kmax) == 0 else tuple(int(k) for k in kmax)
        if len(km) != 3 or min(km) < 0:
            raise InputError(f"kmax must be a non-negative int or 3 ints, got {kmax}")
        kcut = None
    mvec = _half_space(km)
    if kcut is not None:
        k = 2.0 * np.pi * mvec @ np.linalg.inv(cell_np).T
        mvec = mvec[np.linalg.norm(k, axis=1) <= kcut * (1 + 1e-12)]
    weights = np.zeros((km[0] + 1, 2 * km[1] + 1, 2 * km[2] + 1))
    mi = mvec.astype(int)
    # kept half-space vectors: m_1 > 0 stands for +-m (weight 2); on the
    # m_1 = 0 plane both m and -m are in the box, each with weight 1
    weights[mi[:, 0], mi[:, 1] + km[1], mi[:, 2] + km[2]] = np.where(mi[:, 0] > 0, 2.0, 1.0)
    plane = mi[:, 0] == 0
    weights[0, -mi[plane, 1] + km[1], -mi[plane, 2] + km[2]] = 1.0
    return tuple(km), mvec, weights


def ewald_reciprocal(positions, charges, cell, alpha: float, kmax, kweights):
    """Reciprocal-space Ewald energy, eV: ke/(2V) sum_{k != 0} 4 pi/k^2
    exp(-k^2/(4 alpha^2)) |S(k)|^2 for positions (S, 3) A, charges (S,) e,
    cell (3, 3) A (rows), alpha 1/A, kmax (3,) ints and kweights (the
    m_1 >= 0 box of weights from :func:`ewald_kspace`)."""
    # exp(i k.r) = prod_a exp(2 pi i m_a f_a) with f = r @ inv(cell), so the
    # structure factor on the box of m is a tensor contraction of three
    # per-axis phase tables (S x (2 kmax_a + 1)): a matrix product instead
    # of S x K transcendental evaluations. Only m_1 >= 0 is formed
    # (S(-m) = S(m)*); kweights holds 2 for m_1 > 0, 1 for m_1 = 0,
    # 0 for m = 0 and outside the k-sphere.
    k1, k2, k3 = kmax
    inv = jnp.linalg.inv(cell)
    theta = 2.0 * jnp.pi * times3(positions, inv)                  # (S, 3)
    ctype = jnp.complex128 if positions.dtype == jnp.float64 else jnp.complex64
    m1 = jnp.arange(0, k1 + 1, dtype=positions.dtype)
    m2 = jnp.arange(-k2, k2 + 1, dtype=positions.dtype)
    m3 = jnp.arange(-k3, k3 + 1, dtype=positions.dtype)
    e1 = jnp.exp(1j * (theta[:, 0:1] * m1)).astype(ctype)    # (S, k1+1)
    e2 = jnp.exp(1j * (theta[:, 1:2] * m2)).astype(ctype)    # (S, 2k2+1)
    e3 = jnp.exp(1j * (theta[:, 2:3] * m3)).astype(ctype)    # (S, 2k3+1)
    t12 = (charges.astype(ctype)[:, None, None] * e1[:, :, None] * e2[:, None, :])
    sk = jnp.einsum("iab,ic->abc", t12, e3)                   # (k1+1, 2k2+1, 2k3+1)
    power = jnp.real(sk) ** 2 + jnp.imag(sk) ** 2
    mint = np.stack(np.meshgrid(np.arange(0, k1 + 1), np.arange(-k2, k2 + 1), np.arange(-k3, k3 + 1),
                                indexing="ij"), axis=-1).astype(np.float64)
    kvec = 2.0 * jnp.pi * (jnp.asarray(mint, positions.dtype) @ inv.T)   # 1/A
    k2sq = jnp.sum(kvec * kvec, axis=-1)
    w = jnp.asarray(kweights, positions.dtype)
    k2safe = jnp.where(w > 0, k2sq, 1.0)
    vol = jnp.abs(jnp.linalg.det(cell))
    # E = ke/(2V) sum_{k != 0} 4 pi/k^2 exp(-k^2/(4 alpha^2)) |S(k)|^2
    coef = w * 2.0 * jnp.pi / vol * jnp.exp(-k2safe / (4.0 * alpha ** 2)) / k2safe
    return KE * esum(coef * power)
