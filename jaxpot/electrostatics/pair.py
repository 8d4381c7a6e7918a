"""Coulomb pair kernels, self energies and dense all-pairs sums.

Units: distances in A, charges in e, energies in eV, the Ewald splitting
parameter ``alpha`` in 1/A, Gaussian widths in A; a kernel f(r) is in 1/A so
that a pair contributes ke q_i q_j f(r) eV with ke = :data:`jaxpot.units.KE`
(eV A / e^2). Every kernel is safe at r -> 0 with finite gradients.

Gaussian charges (``widths`` w_i, A): site i carries the density
rho_i(r) = q_i (pi w_i^2)^(-3/2) exp(-r^2/w_i^2), so a pair interacts with
f_ij(r) = erf(r/gamma_ij)/r, gamma_ij = sqrt(w_i^2 + w_j^2); w = 0 is a point
charge exactly. For Ewald/PME the real-space kernel becomes
[erf(r/gamma) - erf(alpha r)]/r = [erfc(alpha r) - erfc(r/gamma)]/r
(short ranged as long as gamma << rc); the Gaussian self-interaction
ke q_i^2/(sqrt(2 pi) w_i) is not part of the pair energy and is given
separately by :func:`gaussian_self_energy` (charge-equilibration hardness
models add it themselves). Ewald real-space sum: e.g. Frenkel & Smit, ch. 12;
Allen & Tildesley 6.2.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf, erfc

from ..potentials.base import esum, safe_norm
from ..system import InputError
from ..units import KE

_DENSE_BLOCK = 1024          # rows per block of the all-pairs cluster sum
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


# --------------------------------------------------------------------------
# Pair kernels (A^-1), all safe at r -> 0 with finite gradients
# --------------------------------------------------------------------------

def erf_over_r(r, a):
    """erf(a r)/r, 1/A, for r >= 0 A and a >= 0 1/A; tends to 2a/sqrt(pi) at r = 0.

    Below x = a r = 0.1 the Taylor series erf(x)/x = 2/sqrt(pi) (1 - x^2/3 +
    x^4/10 - x^6/42 + x^8/216) is used (truncation ~x^10/1320 < 1e-12), so the
    value and its gradient stay finite at r = 0 in float32 and float64."""
    x = a * r
    small = x < 0.1
    x2 = x * x
    series = a * _TWO_OVER_SQRT_PI * (1.0 - x2 / 3.0 + x2 * x2 / 10.0
                                      - x2 * x2 * x2 / 42.0 + x2 * x2 * x2 * x2 / 216.0)
    general = erf(jnp.where(small, 1.0, x)) / jnp.where(small, 1.0, r)
    return jnp.where(small, series, general)


def _inv(r):
    """1/r with a gradient-safe guard (r = 0 gives inf, as physics says)."""
    return 1.0 / r


def gaussian_kernel(r, gamma):
    """erf(r/gamma)/r, 1/A: Coulomb kernel between Gaussian charges with
    combined width gamma = sqrt(w_i^2 + w_j^2) A; gamma = 0 gives 1/r exactly."""
    pos = gamma > 0
    a = 1.0 / jnp.where(pos, gamma, 1.0)
    rs = jnp.where(pos, 1.0, r)
    return jnp.where(pos, erf_over_r(r, a), _inv(rs))


def ewald_real_kernel(r, alpha, gamma=None):
    """Real-space Ewald kernel, 1/A: erfc(alpha r)/r for point charges; for
    Gaussian charges [erf(r/gamma) - erf(alpha r)]/r (finite at r = 0,
    2 (1/gamma - alpha)/sqrt(pi))."""
    point = erfc(alpha * r) / r
    if gamma is None:
        return point
    pos = gamma > 0
    a = 1.0 / jnp.where(pos, gamma, 1.0)
    # near r = 0 both erf/r terms are finite and do not cancel badly; further
    # out the erfc difference avoids cancelling two ~1/r numbers.
    near = a * r < 1.0
    rs = jnp.where(near, 1.0, r)
    gauss = jnp.where(near, erf_over_r(r, a) - erf_over_r(r, alpha),
                      (erfc(alpha * r) - erfc(a * r)) / rs)
    rp = jnp.where(pos, 1.0, r)
    return jnp.where(pos, gauss, erfc(alpha * rp) / rp)


def _safe_sqrt(x):
    """sqrt(x) with a zero (not infinite) gradient at x = 0."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _gamma(widths, i, j):
    # safe sqrt: point charges (w = 0) keep finite gradients w.r.t. the widths
    if widths is None:
        return None
    return _safe_sqrt(widths[i] ** 2 + widths[j] ** 2)


def gaussian_self_energy(charges, widths):
    """Self-energy of Gaussian charges, eV: sum_i ke q_i^2 / (sqrt(2 pi) w_i)
    (charges e, widths A > 0). Not included in :meth:`Coulomb.energy`."""
    return esum(KE * charges ** 2 / (math.sqrt(2.0 * math.pi) * widths))


def all_pairs(n: int):
    """Static (i, j) int32 arrays of the dense half list i < j of n sites."""
    if int(n) < 0:
        raise InputError(f"number of sites must be non-negative, got {n}")
    i, j = np.triu_indices(int(n), k=1)
    return i.astype(np.int32), j.astype(np.int32)


def _cluster_pair_sum(pair_fn, positions, real, block: int = _DENSE_BLOCK):
    """sum_{i<j, both real} pair_fn(rows, r) over all pairs of a cluster, eV.

    pair_fn(rows (B,), r (B, N) A) -> (B, N) pair energies; rows are summed B
    at a time (``lax.map`` of a rematerialised block), so memory is O(B N)
    in the energy and its gradient. Invalid slots see r = 1e3 A (finite, so
    no NaN reaches the gradient) and are masked out."""
    n = positions.shape[0]
    cols = jnp.arange(n)

    def rows_energy(rows):
        ri = jnp.minimum(rows, n - 1)
        valid = ((cols[None, :] > rows[:, None]) & (rows[:, None] < n)
                 & real[ri][:, None] & real[None, :])
        r = safe_norm(positions[None, :, :] - positions[ri][:, None, :])
        r = jnp.where(valid, r, 1e3)
        return esum(jnp.where(valid, pair_fn(ri, r), 0.0))

    if n <= block:
        return rows_energy(cols)
    nb = -(-n // block)
    rows = jnp.arange(nb * block).reshape(nb, block)
    return jnp.sum(jax.lax.map(jax.checkpoint(rows_energy), rows))
