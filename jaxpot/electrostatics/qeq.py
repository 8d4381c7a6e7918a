"""Charge equilibration (QEq) of Gaussian charges: the QEq matrix and its
dense (KKT) and conjugate-gradient solvers.

Units: positions in A, widths in A, charges in e, electronegativity chi in
eV/e, hardness J and matrix elements in eV/e^2; ke = :data:`jaxpot.units.KE`
(eV A / e^2). The charges minimise chi.q + 1/2 q^T A q subject to sum q = Q,
with A_ii = J_i + ke sqrt(2/pi)/w_i (hardness plus the Gaussian
self-energy) and A_ij = ke erf(r_ij/gamma_ij)/r_ij (Rappe & Goddard, J. Phys.
Chem. 95, 3358 (1991); Gaussian-charge form as in Ghasemi et al., PRB 92,
045131 (2015) and Ko et al., Nat. Commun. 12, 398 (2021)). Used by the
potential kind "gaussian_electrostatics" (:mod:`.gaussian`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..potentials.base import safe_norm
from ..units import KE
from .pair import _safe_sqrt, gaussian_kernel

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def qeq_diagonal(hardness, widths):
    """Diagonal of the QEq matrix, eV/e^2: J_i + ke sqrt(2/pi)/w_i, the
    hardness (eV/e^2) plus twice the Gaussian self-energy per e^2
    (ke q^2/(sqrt(2 pi) w), widths w in A > 0)."""
    return hardness + KE * _SQRT_2_OVER_PI / widths


def cluster_coulomb_matrix(positions, widths, real=None):
    """Dense (N, N) Coulomb matrix of Gaussian charges in a cluster, eV/e^2:
    C_ij = ke erf(r_ij/gamma_ij)/r_ij for i != j (1/r_ij for point charges),
    0 on the diagonal and for padding atoms (``real`` False). Positions (N, 3)
    A, widths (N,) A."""
    n = positions.shape[0]
    if real is None:
        real = jnp.ones(n, bool)
    off = (~jnp.eye(n, dtype=bool)) & real[:, None] & real[None, :]
    r = jnp.where(off, safe_norm(positions[None, :, :] - positions[:, None, :]), 1.0)
    gamma = _safe_sqrt(widths[:, None] ** 2 + widths[None, :] ** 2)
    return KE * jnp.where(off, gaussian_kernel(r, gamma), 0.0)


def solve_qeq(matrix, electronegativity, total_charge, real=None):
    """Charges q (N,) e minimising chi.q + 1/2 q^T A q subject to sum q = Q.

    matrix A (N, N) eV/e^2 (hardness, Gaussian self-energy and Coulomb
    interaction), electronegativity chi (N,) eV/e, total_charge Q e. Dense
    solve of the Lagrange (KKT) system [[A, 1], [1^T, 0]] [q; mu] = [-chi; Q]
    (mu: the equalised chemical potential); differentiable through
    ``jnp.linalg.solve``. Padding atoms (``real`` False) get q = 0 (their
    rows become identity rows). Returns NaN charges when the diagonal of A is
    not positive for some real atom or the solve is not finite (a singular or
    indefinite QEq matrix, e.g. trained to negative hardness)."""
    n = matrix.shape[0]
    dtype = jnp.float64
    if real is None:
        real = jnp.ones(n, bool)
    m = real.astype(dtype)
    both = real[:, None] & real[None, :]
    diag = jnp.diagonal(matrix).astype(dtype)
    a = jnp.where(both, matrix.astype(dtype), 0.0) + jnp.diag(jnp.where(real, 0.0, 1.0))
    none_real = jnp.sum(m) == 0
    kkt = jnp.zeros((n + 1, n + 1), dtype)
    kkt = kkt.at[:n, :n].set(a).at[:n, n].set(m).at[n, :n].set(m)
    kkt = kkt.at[n, n].set(jnp.where(none_real, 1.0, 0.0))
    rhs = jnp.concatenate([-jnp.where(real, electronegativity.astype(dtype), 0.0),
                           jnp.reshape(jnp.asarray(total_charge, dtype), (1,))])
    sol = jnp.linalg.solve(kkt, rhs)
    q = sol[:n] * m
    ok = jnp.all(jnp.where(real, diag > 0, True)) & jnp.all(jnp.isfinite(sol))
    return jnp.where(ok, q, jnp.nan)


def solve_qeq_cg(matvec, diagonal, electronegativity, total_charge, real=None, *,
                 tol: float = 1e-10, maxiter: int = 1000):
    """Iterative QEq: the same minimiser as :func:`solve_qeq` without forming A.

    matvec(v) = A v (eV/e^2 times e), e.g. the charge gradient of an Ewald or
    PME energy plus the diagonal terms; diagonal (N,) eV/e^2 (Jacobi
    preconditioner). The constraint is eliminated by projecting onto
    neutral charge changes: q = q0 + P y with q0 = Q/N_real on real atoms and
    P the projector on sum = 0 over real atoms; P A P y = -P(chi + A q0) is
    solved by conjugate gradients (A positive definite on that subspace),
    differentiable by implicit differentiation (``jax.scipy.sparse.linalg.cg``
    is a ``custom_linear_solve``). Returns NaN charges if the relative residual
    misses 100 tol after maxiter iterations."""
    chi = electronegativity.astype(jnp.float64)
    n = chi.shape[0]
    if real is None:
        real = jnp.ones(n, bool)
    m = real.astype(jnp.float64)
    n_real = jnp.maximum(jnp.sum(m), 1.0)

    def proj(v):
        return m * (v - jnp.sum(m * v) / n_real)

    def op(y):
        return proj(matvec(proj(y)))

    dinv = jnp.where(real, 1.0 / jnp.where(real, diagonal, 1.0), 0.0)

    def precond(v):
        return proj(dinv * proj(v))

    q0 = m * jnp.asarray(total_charge, jnp.float64) / n_real
    b = -proj(jnp.where(real, chi, 0.0) + matvec(q0))
    # atol: the transposed solve of the backward pass has a right-hand side
    # dE/dq projected on neutral changes, which vanishes at the minimum
    # (equal chemical potentials); without an absolute floor CG would iterate
    # on rounding noise (0/0 -> NaN). 1e-3 tol eV/e is far below any real signal.
    y, _ = jax.scipy.sparse.linalg.cg(op, b, tol=tol, atol=1e-3 * tol, maxiter=maxiter, M=precond)
    q = q0 + proj(y)
    res = proj(matvec(q) + jnp.where(real, chi, 0.0))
    bnorm = jnp.sqrt(jnp.sum(b * b)) + 1e-300
    ok = (jnp.sqrt(jnp.sum(res * res)) <= 100.0 * tol * bnorm + 1e-12) & jnp.all(jnp.isfinite(q))
    return jnp.where(ok, q, jnp.nan)
