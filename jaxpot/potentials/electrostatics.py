"""Coulomb electrostatics: plain sums, Ewald and smooth particle-mesh Ewald.

Units: positions and cell in A (cell rows are lattice vectors), charges in e,
energies in eV, the Ewald splitting parameter ``alpha`` in 1/A, Gaussian
widths in A. The Coulomb constant is :data:`jaxpot.units.KE` (eV A / e^2).

Everything here is a pure function of (positions, charges, cell, pair list),
so forces are ``-grad`` in positions and the stress is the strain derivative
through the cell (see :mod:`jaxpot.potentials.base`); no derivative is written
by hand.

Methods (:class:`Coulomb`, built by :func:`make_coulomb`):

``"direct"``
    E = ke sum_{i<j} q_i q_j f_ij(r_ij) over all pairs of a finite cluster, no
    cutoff, no periodicity (``cell`` ignored). :func:`all_pairs` gives the
    dense half list; if the pair arguments are ``None`` it is built inside.
``"cutoff"``
    Truncated Coulomb over the given pairs with r < rc. ``cutoff_scheme``:
    ``"plain"`` (f(r) = 1/r, energy jumps at rc), ``"shifted"``
    (f(r) - f(rc), continuous energy) or ``"reaction_field"`` with a dielectric
    continuum eps_rf beyond rc (the form OpenMM uses, Tironi et al., JCP 102,
    5451 (1995)): f(r) + k_rf r^2 - c_rf, k_rf = (eps_rf - 1)/((2 eps_rf + 1) rc^3),
    c_rf = 1/rc + k_rf rc^2.
``"ewald"``
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
    matrix product (no per-k transcendental functions).
``"pme"``
    Smooth particle-mesh Ewald (Essmann et al., JCP 103, 8577 (1995)): the
    same E_real, E_self, E_bg, and E_recip from charges spread on a K1xK2xK3
    grid with cardinal B-splines M_n of order n (Essmann eq. 4.1, 4.4):
        Q(k) = sum_i q_i prod_a M_n(u_ia - k_a),  u_i = K * (r_i @ inv(cell))
        E_recip = ke/(2 pi V) sum_{m != 0} exp(-pi^2 m^2/alpha^2)/m^2 B(m) |F[Q](m)|^2
        B(m) = prod_a |b_a(m_a)|^2,  |b(m)|^2 = 1/|sum_{k=0}^{n-2} M_n(k+1) exp(2 pi i m k/K)|^2
    (Essmann eq. 4.7-4.8), m = m_a b*_a with b*_a the reciprocal vectors
    (rows of inv(cell)^T, no 2 pi). For odd n, |b(K/2)|^-2 vanishes; as in
    GROMACS it is replaced by the mean of its neighbours. Triclinic cells work
    unchanged because everything is written in fractional coordinates.

Parameters from a target accuracy delta, as OpenMM chooses them (NonbondedForce
documentation; ``NonbondedForceImpl::calcEwaldParameters``):
    alpha = sqrt(-ln(2 delta)) / rc
    Ewald: kmax_a = smallest integer with
           0.05 sqrt(L_a alpha) kmax exp(-(pi kmax/(L_a alpha))^2) < delta,
           L_a = |a_a| (a k-vector with |m_a| > kmax_a has |k| > 2 pi kmax_a/L_a);
           the sum keeps m with |m_a| <= kmax_a and |k| <= min_a 2 pi kmax_a/L_a
           (a sphere, which holds every dropped term below the estimate).
    PME:   K_a = ceil(2 alpha L_a / (3 delta^(1/5))), rounded up to a product of
           2, 3, 5 and 7 (fast FFT sizes) and at least the spline order.
See :func:`ewald_parameters` and :func:`pme_grid`.

Exclusions (``excl_i, excl_j, excl_dr, excl_scale``): pairs the force field
removes from the real-space list (intramolecular pairs, 1-2/1-3/1-4). For each
one the energy gets ``excl_scale * ke q_i q_j f_ij(r)`` (0 = fully excluded,
0.8333 = AMBER 1-4) and, for Ewald/PME, loses what the reciprocal sum counted
for it, ke q_i q_j erf(alpha r)/r (safe at r -> 0, where it tends to
2 alpha/sqrt(pi)). For ``"cutoff"`` the scaled term is plain Coulomb (no
truncation, shift or reaction field), as for OpenMM exceptions.

Gaussian charges (``widths`` w_i, A): site i carries the density
rho_i(r) = q_i (pi w_i^2)^(-3/2) exp(-r^2/w_i^2), so a pair interacts with
f_ij(r) = erf(r/gamma_ij)/r, gamma_ij = sqrt(w_i^2 + w_j^2); w = 0 is a point
charge exactly. Implemented for all methods; for Ewald/PME the real-space
kernel becomes [erf(r/gamma) - erf(alpha r)]/r = [erfc(alpha r) - erfc(r/gamma)]/r
(short ranged as long as gamma << rc) and the reciprocal sum and the self term
-ke alpha/sqrt(pi) q_i^2 are unchanged, because the Gaussian self-interaction
is not part of the pair energy. That self-energy, ke q_i^2/(sqrt(2 pi) w_i),
is available separately as :func:`gaussian_self_energy` (charge-equilibration
hardness models add it themselves).

Non-neutral cells (Ewald/PME): ``neutral="background"`` (default) adds E_bg
above; ``neutral="reject"`` raises :class:`~jaxpot.system.InputError` when the
charges are concrete, and returns NaN under ``jit`` (where no exception can be
raised) if |sum q| > 1e-5 sum |q| + 1e-8 e.

Potential kind ``"gaussian_electrostatics"``
(:func:`gaussian_electrostatics_from_config`): per-element Gaussian charges,
fixed or from charge equilibration (QEq, dense KKT solve or projected
conjugate gradients on Ewald/PME products), plus a Yukawa core-core
repulsion ke Z_A Z_B exp(-beta_AB r)/r with a C2 switch; clusters by dense
all-pairs sums, periodic cells by the Ewald/PME code above.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf, erfc

from ..space import times3
from ..system import InputError, check_choice
from ..units import KE
from .base import Potential, check_species, esum, pairs, safe_norm, species_index_table

METHODS = ("direct", "cutoff", "ewald", "pme")
CUTOFF_SCHEMES = ("plain", "shifted", "reaction_field")
NEUTRAL_MODES = ("background", "reject")

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


def _fft_size(n: int) -> int:
    n = max(int(n), 1)
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def pme_grid(cell, alpha: float, accuracy: float = 1e-5, order: int = 5):
    """PME grid (K1, K2, K3) for a cell (A), alpha (1/A) and accuracy:
    K_a = ceil(2 alpha |a_a| / (3 delta^(1/5))) (OpenMM), rounded up to a
    2,3,5,7-smooth size and to at least ``order``."""
    cell = _check_cell(cell)
    _check_accuracy(accuracy)
    lengths = np.linalg.norm(cell, axis=1)
    n = np.ceil(2.0 * float(alpha) * lengths / (3.0 * float(accuracy) ** 0.2)).astype(int)
    return tuple(_fft_size(max(int(k), int(order))) for k in n)


# --------------------------------------------------------------------------
# Cardinal B-splines (Essmann et al. 1995, eq. 4.1-4.4)
# --------------------------------------------------------------------------

def bspline_weights(t, order: int):
    """M_n(t + j) for j = 0..n-1, shape (..., n), for t in [0, 1).

    Recursion M_k(x) = x/(k-1) M_{k-1}(x) + (k-x)/(k-1) M_{k-1}(x-1) from
    M_2(x) = 1 - |x - 1|; unrolled over the static order."""
    t = t[..., None]
    w = jnp.concatenate([t, 1.0 - t], axis=-1)          # M_2(t), M_2(t+1)
    for k in range(3, order + 1):
        j = jnp.arange(k, dtype=t.dtype)
        x = t + j                                         # (..., k)
        prev = jnp.concatenate([w, jnp.zeros_like(t)], axis=-1)        # M_{k-1}(t+j)
        prev_m1 = jnp.concatenate([jnp.zeros_like(t), w], axis=-1)     # M_{k-1}(t+j-1)
        w = (x * prev + (k - x) * prev_m1) / (k - 1)
    return w


def _bspline_at_integers(order: int) -> np.ndarray:
    """M_n(1), ..., M_n(n-1) in float64 numpy (same recursion as
    :func:`bspline_weights` at t = 0, kept on the host)."""
    w = np.array([0.0, 1.0])                              # M_2(0), M_2(1)
    for k in range(3, order + 1):
        x = np.arange(k, dtype=np.float64)
        prev = np.concatenate([w, [0.0]])
        prev_m1 = np.concatenate([[0.0], w])
        w = (x * prev + (k - x) * prev_m1) / (k - 1)
    return w[1:]


def pme_spread(base, weights, charges, grid):
    """Charges spread on the PME grid, (K1, K2, K3) e.

    base (S, 3) int: floor of each site's grid coordinate u (any integer;
    wrapped here); weights (S, 3, n): M_n(t + j), j = 0..n-1, t = u - base,
    the weight of grid point base - j. Each site adds one n x n x n block:
    one windowed scatter into a grid padded by n - 1 points per axis (a
    block never wraps there), then the padding is folded back periodically.
    XLA runs this ~4x faster on CPU than a scatter of S n^3 single points,
    and its derivative is the matching windowed gather."""
    n = weights.shape[-1]
    grid = tuple(int(k) for k in grid)
    w = weights[..., ::-1]                                         # ascending grid index
    vals = (charges[:, None, None, None] * w[:, 0, :, None, None] * w[:, 1, None, :, None]
            * w[:, 2, None, None, :])                              # (S, n, n, n)
    # padded index p = k + n - 1 of the block's first point k = base - n + 1
    start = base % jnp.asarray(grid, base.dtype)
    dims = jax.lax.ScatterDimensionNumbers(update_window_dims=(1, 2, 3), inserted_window_dims=(),
                                           scatter_dims_to_operand_dims=(0, 1, 2))
    padded = jnp.zeros(tuple(k + n - 1 for k in grid), vals.dtype)
    p = jax.lax.scatter_add(padded, start, vals, dims, mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)
    for ax, k in enumerate(grid):
        body = jax.lax.slice_in_dim(p, n - 1, n - 1 + k, axis=ax)
        spill = jax.lax.slice_in_dim(p, 0, n - 1, axis=ax)        # points k - n + 1 .. -1
        tail = jax.lax.slice_in_dim(body, k - n + 1, k, axis=ax) + spill
        p = jax.lax.dynamic_update_slice_in_dim(body, tail, k - n + 1, axis=ax)
    return p


def bspline_moduli(size: int, order: int) -> np.ndarray:
    """|b(m)|^2 for m = 0..K-1 (Essmann eq. 4.8), float64 numpy; zeros of the
    denominator (odd orders at m = K/2) replaced by the neighbours' mean."""
    mk = _bspline_at_integers(order)[: order - 1]        # M_n(k+1), k = 0..n-2
    m = np.arange(size)
    k = np.arange(order - 1)
    den = np.abs(np.exp(2j * np.pi * np.outer(m, k) / size) @ mk) ** 2
    for idx in np.nonzero(den < 1e-7)[0]:
        den[idx] = 0.5 * (den[(idx - 1) % size] + den[(idx + 1) % size])
    return 1.0 / den


# --------------------------------------------------------------------------
# The Coulomb object
# --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Coulomb:
    """Static Coulomb settings; :meth:`energy` is pure and jit-able.

    method: "direct" | "cutoff" | "ewald" | "pme".
    cutoff: real-space cutoff, A (unused by "direct").
    alpha: Ewald splitting parameter, 1/A (Ewald/PME).
    kvectors: (K, 3) integer m of the half-space Ewald sum (Ewald);
    kweights: the same set as weights on the m_1 >= 0 box (Ewald).
    kmax: (3,) largest |m_a| (Ewald).
    grid: (K1, K2, K3) PME grid; order: B-spline order (PME).
    cutoff_scheme, dielectric: "cutoff" variants (see module docstring).
    neutral: "background" | "reject" (Ewald/PME, non-neutral cells).
    accuracy: the target the parameters were chosen for.
    n_sites: number of charge sites, if fixed at construction ("direct"
    builds its dense pair list from it).
    """

    method: str
    cutoff: float
    alpha: float = 0.0
    kmax: tuple = (0, 0, 0)
    kvectors: Optional[np.ndarray] = None
    kweights: Optional[np.ndarray] = field(default=None, repr=False)
    grid: tuple = (0, 0, 0)
    order: int = 5
    cutoff_scheme: str = "plain"
    dielectric: float = 78.3
    neutral: str = "background"
    accuracy: float = 1e-5
    n_sites: Optional[int] = None
    _moduli: tuple = field(default=(), repr=False)

    # ---------------- public -----------------
    def energy(self, positions, charges, cell=None, i=None, j=None, dr=None, mask=None, *,
               excl_i=None, excl_j=None, excl_dr=None, excl_scale=None, excl_mask=None,
               widths=None):
        """Coulomb energy, eV (float64 scalar).

        positions (S, 3) A and charges (S,) e of the charge sites; cell (3, 3) A
        (rows; ignored by "direct"); real-space pairs i, j (K,), dr = r_j - r_i
        + image shift (K, 3) A, mask (K,) bool, each unordered pair once
        ("direct" builds all pairs when these are None). Exclusions: excl_i,
        excl_j (E,), excl_dr (E, 3) A, excl_scale (E,) (0 = excluded), and
        optional excl_mask (E,) for padded exclusion slots. widths (S,) A for
        Gaussian charges (None or 0 = point charges)."""
        positions = jnp.asarray(positions)
        charges = jnp.asarray(charges, dtype=positions.dtype)
        if charges.ndim != 1 or charges.shape[0] != positions.shape[0]:
            raise InputError(f"charges must have shape ({positions.shape[0]},) to match positions, "
                             f"got {charges.shape}")
        self._check_neutral_on_host(charges)
        if widths is not None:
            widths = jnp.asarray(widths, dtype=positions.dtype)
            if widths.shape != charges.shape:
                raise InputError(f"widths must have shape {charges.shape}, got {widths.shape}")
        if i is None:
            if self.method != "direct":
                raise InputError(f"Coulomb method {self.method!r} needs a real-space pair list (i, j, dr, mask)")
            i, j = all_pairs(positions.shape[0])
            i, j = jnp.asarray(i), jnp.asarray(j)
            dr = positions[j] - positions[i]
            mask = jnp.ones(i.shape, bool)
        if mask is None:
            mask = jnp.ones(jnp.shape(i), bool)
        e = self._pair_energy(charges, i, j, dr, mask, widths)
        if excl_i is not None:
            e = e + self._exclusion_energy(charges, excl_i, excl_j, excl_dr, excl_scale, excl_mask, widths)
        if self.method in ("ewald", "pme"):
            if cell is None:
                raise InputError(f"Coulomb method {self.method!r} needs a cell")
            cell = jnp.asarray(cell, dtype=positions.dtype)
            if self.method == "ewald":
                e = e + self._ewald_reciprocal(positions, charges, cell)
            else:
                e = e + self._pme_reciprocal(positions, charges, cell)
            e = e + self._self_and_background(charges, cell)
        return e

    def energy_fn(self, **fixed):
        """``(positions, charges, cell, i, j, dr, mask) -> eV`` with keyword
        arguments (exclusions, widths) bound."""
        def fn(positions, charges, cell=None, i=None, j=None, dr=None, mask=None):
            return self.energy(positions, charges, cell, i, j, dr, mask, **fixed)
        return fn

    def pair_kernel(self, r, gamma=None):
        """The real-space kernel f(r) (1/A) inside the cutoff, so that a pair
        contributes KE q_i q_j f(r) eV: erfc(alpha r)/r (Ewald/PME), 1/r
        ("direct", plain "cutoff"), or the shifted and reaction-field forms of
        "cutoff"; gamma (A, combined Gaussian widths) or None for point
        charges."""
        if self.method in ("ewald", "pme"):
            return ewald_real_kernel(r, self.alpha, gamma)
        f = gaussian_kernel(r, gamma) if gamma is not None else _inv(r)
        if self.method == "cutoff" and self.cutoff_scheme != "plain":
            rc = jnp.asarray(self.cutoff, r.dtype)
            frc = gaussian_kernel(rc, gamma) if gamma is not None else 1.0 / rc
            if self.cutoff_scheme == "shifted":
                return f - frc
            eps = self.dielectric
            k_rf = 0.0 if eps <= 1 else (eps - 1.0) / ((2.0 * eps + 1.0) * self.cutoff ** 3)
            f = f + k_rf * r * r - (frc + k_rf * self.cutoff ** 2)
        return f

    # ---------------- pieces -----------------
    def _pair_energy(self, charges, i, j, dr, mask, widths):
        r = safe_norm(dr)
        if self.method == "direct":
            valid = mask
        else:
            valid = mask & (r < self.cutoff)
        # invalid slots get a harmless distance so no inf/NaN leaks into grads
        r = jnp.where(valid, r, 1e3)
        f = self.pair_kernel(r, _gamma(widths, i, j))
        qq = charges[i] * charges[j]
        return KE * esum(jnp.where(valid, qq * f, 0.0))

    def _exclusion_energy(self, charges, ei, ej, edr, scale, emask, widths):
        if ej is None or edr is None:
            raise InputError("exclusions need excl_i, excl_j and excl_dr together")
        ei, ej = jnp.asarray(ei), jnp.asarray(ej)
        edr = jnp.asarray(edr)
        if scale is None:
            scale = jnp.zeros(ei.shape, charges.dtype)
        scale = jnp.asarray(scale, dtype=charges.dtype)
        if emask is None:
            emask = jnp.ones(ei.shape, bool)
        r = safe_norm(edr)
        gamma = _gamma(widths, ei, ej)
        keep = scale != 0
        # scaled part: full pair kernel; guarded so scale = 0 at r = 0 stays finite
        rs = jnp.where(keep & emask, r, 1.0)
        f_scaled = gaussian_kernel(rs, gamma) if gamma is not None else _inv(rs)
        f = jnp.where(keep, scale * f_scaled, 0.0)
        if self.method in ("ewald", "pme"):
            f = f - erf_over_r(r, self.alpha)
        qq = charges[ei] * charges[ej]
        return KE * esum(jnp.where(emask, qq * f, 0.0))

    def _self_and_background(self, charges, cell):
        e_self = -KE * self.alpha / math.sqrt(math.pi) * esum(charges ** 2)
        q = esum(charges)
        vol = jnp.abs(jnp.linalg.det(cell.astype(jnp.float64)))
        e_bg = -KE * math.pi * q * q / (2.0 * vol * self.alpha ** 2)
        e = e_self + e_bg
        if self.neutral == "reject":
            tol = 1e-5 * esum(jnp.abs(charges)) + 1e-8
            e = jnp.where(jnp.abs(q) > tol, jnp.nan, e)
        return e

    def _check_neutral_on_host(self, charges):
        """Raise InputError for a charged cell when neutral='reject' and the
        charges are concrete (under jit the energy becomes NaN instead)."""
        if self.neutral != "reject" or self.method not in ("ewald", "pme"):
            return
        if isinstance(charges, jax.core.Tracer):
            return
        c = np.asarray(charges, dtype=np.float64)
        q = float(c.sum())
        if abs(q) > 1e-5 * float(np.abs(c).sum()) + 1e-8:
            raise InputError(f"the cell carries a net charge of {q:.6g} e; "
                             "Ewald/PME need a neutral cell (or neutral='background')")

    def _ewald_reciprocal(self, positions, charges, cell):
        # exp(i k.r) = prod_a exp(2 pi i m_a f_a) with f = r @ inv(cell), so the
        # structure factor on the box of m is a tensor contraction of three
        # per-axis phase tables (S x (2 kmax_a + 1)): a matrix product instead
        # of S x K transcendental evaluations. Only m_1 >= 0 is formed
        # (S(-m) = S(m)*); self.kweights holds 2 for m_1 > 0, 1 for m_1 = 0,
        # 0 for m = 0 and outside the k-sphere.
        k1, k2, k3 = self.kmax
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
        w = jnp.asarray(self.kweights, positions.dtype)
        k2safe = jnp.where(w > 0, k2sq, 1.0)
        vol = jnp.abs(jnp.linalg.det(cell))
        # E = ke/(2V) sum_{k != 0} 4 pi/k^2 exp(-k^2/(4 alpha^2)) |S(k)|^2
        coef = w * 2.0 * jnp.pi / vol * jnp.exp(-k2safe / (4.0 * self.alpha ** 2)) / k2safe
        return KE * esum(coef * power)

    def _pme_reciprocal(self, positions, charges, cell):
        n = self.order
        K = jnp.asarray(self.grid, dtype=positions.dtype)
        inv = jnp.linalg.inv(cell)
        u = times3(positions, inv) * K                                  # (S, 3) grid units
        base = jnp.floor(u)
        w = bspline_weights(u - base, n)                           # (S, 3, n): M_n(t + j)
        k1, k2, k3 = self.grid
        q = pme_spread(base.astype(jnp.int32), w, charges, self.grid)
        fq = jnp.fft.rfftn(q)
        power = jnp.real(fq) ** 2 + jnp.imag(fq) ** 2
        # signed integer frequencies and the influence function (Essmann eq. 4.7)
        m1 = np.fft.fftfreq(k1, 1.0 / k1)
        m2 = np.fft.fftfreq(k2, 1.0 / k2)
        m3 = np.arange(k3 // 2 + 1, dtype=np.float64)
        mint = np.stack(np.meshgrid(m1, m2, m3, indexing="ij"), axis=-1)
        mvec = times3(jnp.asarray(mint, positions.dtype), inv.T)         # (k1, k2, k3h, 3) 1/A
        msq = jnp.sum(mvec * mvec, axis=-1)
        zero = msq == 0
        msq_safe = jnp.where(zero, 1.0, msq)
        b1, b2, b3 = (jnp.asarray(b, positions.dtype) for b in self._moduli)
        bmod = b1[:, None, None] * b2[None, :, None] * b3[None, None, : k3 // 2 + 1]
        # rfft keeps m3 >= 0: interior m3 stand for +-m3 (weight 2)
        mult = np.full(k3 // 2 + 1, 2.0)
        mult[0] = 1.0
        if k3 % 2 == 0:
            mult[-1] = 1.0
        vol = jnp.abs(jnp.linalg.det(cell))
        infl = jnp.where(zero, 0.0, jnp.exp(-(jnp.pi ** 2) * msq_safe / self.alpha ** 2) / msq_safe)
        infl = infl * bmod * jnp.asarray(mult, positions.dtype)
        return KE / (2.0 * jnp.pi * vol) * esum(infl * power)


def make_coulomb(method: str, cell=None, cutoff: float = 0.0, *, accuracy: float = 1e-5,
                 alpha: Optional[float] = None, kmax=None, grid=None, order: int = 5,
                 n_sites: Optional[int] = None, cutoff_scheme: str = "plain",
                 dielectric: float = 78.3, neutral: str = "background") -> Coulomb:
    """Build a :class:`Coulomb` for a method, cell (3, 3) A and real-space cutoff (A).

    accuracy: relative target delta for Ewald/PME parameters (OpenMM recipes,
    module docstring); alpha (1/A), kmax (int or 3 ints, Ewald) and grid
    (int or 3 ints, PME) override the choice. order: PME B-spline order (>= 3).
    cutoff_scheme/dielectric: "cutoff" variants. neutral: "background" or
    "reject" for charged cells. The Ewald k-vector set and the PME grid are
    fixed here from ``cell``; the energy takes the current cell at every call
    (so it is differentiable in the cell), but a large change of cell (NPT)
    calls for rebuilding this object to keep the accuracy."""
    check_choice("Coulomb method", method, METHODS)
    check_choice("cutoff_scheme", cutoff_scheme, CUTOFF_SCHEMES)
    check_choice("neutral mode", neutral, NEUTRAL_MODES)
    _check_accuracy(accuracy)
    if n_sites is not None and int(n_sites) < 0:
        raise InputError(f"n_sites must be non-negative, got {n_sites}")
    if method == "direct":
        return Coulomb(method=method, cutoff=float("inf"), accuracy=float(accuracy),
                       n_sites=None if n_sites is None else int(n_sites))
    if not (cutoff is not None and float(cutoff) > 0 and math.isfinite(float(cutoff))):
        raise InputError(f"Coulomb method {method!r} needs a positive finite cutoff (A), got {cutoff}")
    cutoff = float(cutoff)
    if method == "cutoff":
        if dielectric <= 0:
            raise InputError(f"dielectric must be positive, got {dielectric}")
        return Coulomb(method=method, cutoff=cutoff, cutoff_scheme=cutoff_scheme,
                       dielectric=float(dielectric), accuracy=float(accuracy),
                       n_sites=None if n_sites is None else int(n_sites))
    if cell is None:
        raise InputError(f"Coulomb method {method!r} needs a periodic cell")
    cell_np = _check_cell(cell)
    if alpha is not None and not float(alpha) > 0:
        raise InputError(f"alpha must be positive (1/A), got {alpha}")
    a = ewald_alpha(cutoff, accuracy) if alpha is None else float(alpha)
    common = dict(method=method, cutoff=cutoff, alpha=a, accuracy=float(accuracy), neutral=neutral,
                  n_sites=None if n_sites is None else int(n_sites))
    if method == "ewald":
        lengths = np.linalg.norm(cell_np, axis=1)
        if kmax is None:
            _, km = ewald_parameters(cell_np, cutoff, accuracy, alpha=a)
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
        return Coulomb(kmax=tuple(km), kvectors=mvec, kweights=weights, **common)
    # pme
    if not (3 <= int(order) <= 12):
        raise InputError(f"PME spline order must be between 3 and 12, got {order}")
    order = int(order)
    if grid is None:
        g = pme_grid(cell_np, a, accuracy, order)
    else:
        g = (int(grid),) * 3 if np.ndim(grid) == 0 else tuple(int(k) for k in grid)
        if len(g) != 3 or min(g) < order:
            raise InputError(f"PME grid must be 3 sizes >= order {order}, got {grid}")
    moduli = tuple(bspline_moduli(k, order) for k in g)
    return Coulomb(grid=g, order=order, _moduli=moduli, **common)


def _half_space(km):
    """Integer m with |m_a| <= kmax_a, one of each pair (m, -m), m != 0."""
    r = [np.arange(-k, k + 1) for k in km]
    m = np.stack(np.meshgrid(*r, indexing="ij"), axis=-1).reshape(-1, 3)
    pos = (m[:, 0] > 0) | ((m[:, 0] == 0) & ((m[:, 1] > 0) | ((m[:, 1] == 0) & (m[:, 2] > 0))))
    return m[pos].astype(np.float64)


def coulomb_potential(coulomb: Coulomb, *, widths=None, name: str = "coulomb") -> Potential:
    """A :class:`~jaxpot.potentials.base.Potential` of the charges in the
    context (``context.charges``, e) on the atoms themselves, with the pairs
    of the context's neighbor list (no exclusions). Energy in eV."""
    def energy(params, positions, context):
        if context.charges is None:
            raise InputError("the Coulomb potential needs charges in its context")
        if coulomb.method == "direct":
            return coulomb.energy(positions, context.charges, widths=widths)
        i, j, dr, mask = pairs(positions, context)
        return coulomb.energy(positions, context.charges, context.cell, i, j, dr, mask, widths=widths)

    return Potential(energy=energy, cutoff=0.0 if coulomb.method == "direct" else coulomb.cutoff,
                     name=name, config={"kind": "coulomb", "method": coulomb.method,
                                        "cutoff": coulomb.cutoff, "alpha": coulomb.alpha})


# ==========================================================================
# Potential kind "gaussian_electrostatics": Gaussian charges (fixed or
# charge-equilibrated) plus Yukawa core-core repulsion
# ==========================================================================

CHARGE_MODELS = ("fixed", "qeq")
YUKAWA_COMBINATIONS = ("arithmetic", "geometric")
GE_COULOMB_METHODS = ("auto", "direct", "ewald", "pme")
QEQ_SOLVERS = ("dense", "cg")
_GE_TABLES = ("charges", "widths", "electronegativity", "hardness", "yukawa_z", "yukawa_beta")
_GE_KEYS = ("kind", "species", "charge_model", "total_charge", "yukawa_combination", "cutoff",
            "switch_width", "coulomb", "accuracy", "pme_order", "neutralize", "qeq_solver", "cg_tol",
            "cg_maxiter") + _GE_TABLES
_QEQ_ONLY = ("electronegativity", "hardness", "qeq_solver", "cg_tol", "cg_maxiter")
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_DENSE_BLOCK = 1024          # rows per block of the all-pairs cluster sum
_AUTO_PME_ATOMS = 1000       # coulomb = "auto": PME from this many atoms on


def smooth_switch(r, r_on, r_off):
    """Quintic switch S(r) (dimensionless) for r in A: 1 for r <= r_on, 0 for
    r >= r_off, S = 1 - 10x^3 + 15x^4 - 6x^5 with x = (r - r_on)/(r_off - r_on)
    in between, so S, S' and S'' are continuous (C2): energies and forces
    go to zero smoothly at r_off without shifting the potential below r_on."""
    x = jnp.clip((r - r_on) / (r_off - r_on), 0.0, 1.0)
    return jnp.where(r >= r_off, 0.0, 1.0 - x * x * x * (10.0 - 15.0 * x + 6.0 * x * x))


def yukawa_pair_energy(r, zz, beta, r_on, r_off):
    """Screened core-core repulsion of one pair, eV:
    ke Z_A Z_B exp(-beta_AB r)/r S(r), r in A (> 0), zz = Z_A Z_B in e^2,
    beta_AB in 1/A, S the :func:`smooth_switch` between r_on and r_off (A)."""
    return KE * zz * jnp.exp(-beta * r) / r * smooth_switch(r, r_on, r_off)


def combine_beta(beta_i, beta_j, rule: str):
    """Pair screening parameter beta_AB (1/A) from per-element values:
    "arithmetic" (beta_A + beta_B)/2 or "geometric" sqrt(beta_A beta_B)."""
    if rule == "arithmetic":
        return 0.5 * (beta_i + beta_j)
    return _safe_sqrt(beta_i * beta_j)


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


def _ge_table(name, value, species, unit, check=None):
    if not isinstance(value, dict):
        raise InputError(f"gaussian_electrostatics '{name}' must be a table element -> value ({unit}), "
                         f"got {value!r}")
    extra = sorted(set(value) - set(species))
    if extra:
        raise InputError(f"gaussian_electrostatics '{name}' has element(s) {', '.join(map(str, extra))} "
                         f"not in species {species}")
    missing = [s for s in species if s not in value]
    if missing:
        raise InputError(f"gaussian_electrostatics '{name}' has no value for element(s) {', '.join(missing)} "
                         f"({unit})")
    out = []
    for s in species:
        v = value[s]
        if isinstance(v, bool):
            raise InputError(f"gaussian_electrostatics {name}.{s} must be a number ({unit}), got {v!r}")
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise InputError(f"gaussian_electrostatics {name}.{s} must be a number ({unit}), got {v!r}") from None
        if not math.isfinite(v):
            raise InputError(f"gaussian_electrostatics {name}.{s} must be finite ({unit}), got {v!r}")
        if check is not None:
            check(s, v)
        out.append(v)
    return np.asarray(out, np.float64)


def _ge_number(config, key, default, unit, *, positive=True):
    v = config.get(key, default)
    if isinstance(v, bool):
        raise InputError(f"gaussian_electrostatics {key} must be a number ({unit}), got {v!r}")
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InputError(f"gaussian_electrostatics {key} must be a number ({unit}), got {v!r}") from None
    if not math.isfinite(v) or (positive and v <= 0):
        raise InputError(f"gaussian_electrostatics {key} must be {'positive and ' if positive else ''}finite "
                         f"({unit}), got {v!r}")
    return v


def gaussian_electrostatics_from_config(config: dict, system, *, electronegativity_fn=None,
                                        electronegativity_init=None) -> Potential:
    """Potential kind "gaussian_electrostatics" (metal units): Gaussian-charge
    electrostatics with fixed or charge-equilibrated (QEq) charges, plus a
    screened (Yukawa) core-core repulsion.

    Energy (eV):
      E = E_coul + E_yuk                                  (charge_model "fixed")
      E = min_{sum q = Q} E_qeq(q) + E_yuk                (charge_model "qeq")
      E_coul = sum_{A<B} ke Q_A Q_B erf(r_AB/gamma_AB)/r_AB,
               gamma_AB = sqrt(w_A^2 + w_B^2)  (w = 0: point charge, exactly 1/r)
      E_yuk  = sum_{A<B} ke Z_A Z_B exp(-beta_AB r_AB)/r_AB S(r_AB)
      E_qeq  = sum_i [chi_i q_i + 1/2 J_i q_i^2 + ke q_i^2/(sqrt(2 pi) w_i)] + E_coul(q)
    with atom i's density q_i (pi w_i^2)^(-3/2) exp(-r^2/w_i^2) (so w = sqrt(2)
    sigma of Ghasemi et al., PRB 92, 045131 (2015) and Ko et al., Nat. Commun.
    12, 398 (2021), whose erf(r/(sqrt(2) gamma))/r and Q^2/(2 sigma sqrt(pi))
    are the same terms). In matrix form E_qeq = chi.q + 1/2 q^T A q with
    A_ii = J_i + ke sqrt(2/pi)/w_i (the Gaussian self-energy, i.e. the r -> 0
    limit of the pair kernel) and A_ij = ke erf(r_ij/gamma_ij)/r_ij; the
    reported energy is E_qeq at its constrained minimum, so forces need no
    dq/dr (variational), while autodiff through the solve still gives exact
    gradients of charges and forces w.r.t. chi, J and widths (training).
    Ko et al.'s 4G-HDNNP adds only the electrostatic part (E_coul plus the
    self-energy) to its short-range network; here the chi and J terms are
    kept, which is what makes the energy variational. For fixed charges the
    constant Gaussian self-energy is not included (infinite for point charges).
    S is the C2 quintic :func:`smooth_switch` from cutoff - switch_width to
    cutoff.

    Periodic systems (pbc in all three directions): E_coul by Ewald or PME
    with Gaussian charges (:class:`Coulomb`, its real-space kernel
    [erf(r/gamma) - erf(alpha r)]/r, self term -ke alpha/sqrt(pi) q^2), E_yuk
    over the neighbor list (all images within the cutoff). Non-neutral cells
    are an InputError at build time (NaN energy under jit) unless
    ``neutralize = true``, which adds the uniform neutralising background
    -ke pi Q^2/(2 V alpha^2) (Hub et al., JCTC 10, 381 (2014)). QEq in a
    periodic cell uses the exact Ewald/PME interaction matrix: its Hessian in
    the charges (``qeq_solver = "dense"``, O(N) energy evaluations: small
    cells) or its matrix-vector product = charge gradient of the energy
    (``qeq_solver = "cg"``, conjugate gradients, for large systems).
    Clusters: all pairs, dense (no neighbor list), in row blocks of 1024.

    Keys (per-element tables map element symbols to numbers):
      species            list of elements (default: the union of the tables' keys)
      charge_model       "fixed" (default) | "qeq"
      charges            fixed only, required: table (e) or "input" (per-atom
                         charges of the input structure, context.charges)
      widths             table (A), Gaussian widths w; default 0 (point charges)
                         for "fixed"; required and > 0 for "qeq"
      electronegativity  qeq only, required: table chi (eV/e)
      hardness           qeq only, required: table J (eV/e^2), >= 0 (then A is
                         positive definite: the Gaussian Coulomb matrix with
                         self-energies is)
      total_charge       Q (e). qeq: the constraint sum q = Q, default 0.0.
                         fixed (per-element table) only when given: each
                         structure's charges are shifted by the same amount
                         so that they sum to Q (the charge correction of
                         PhysNet, Unke & Meuwly, JCTC 15, 3678 (2019)); use
                         it when fitting per-element charges, which are
                         otherwise free to leave molecules charged
      qeq_solver         qeq only: "dense" (default) | "cg"; cg_tol (1e-10,
                         relative residual), cg_maxiter (1000)
      yukawa_z           table Z (e), default 0 for every element (no term)
      yukawa_beta        table beta (1/A) > 0, required when some Z != 0
                         (default 1.0 otherwise)
      yukawa_combination "arithmetic" (default, (beta_A + beta_B)/2) | "geometric"
      cutoff             A, default 8.0: Yukawa cutoff and Ewald/PME real-space cutoff
      switch_width       A, default 1.0 (0 < switch_width <= cutoff)
      coulomb            "auto" (default: "direct" for clusters, "ewald" for
                         periodic cells below 1000 atoms, "pme" above) |
                         "direct" | "ewald" | "pme"; system None resolves "auto"
                         to "direct"
      accuracy           Ewald/PME relative accuracy, default 1e-5 (sets alpha,
                         k-vectors and PME grid as OpenMM does)
      pme_order          B-spline order, default 5
      neutralize         false (default: reject charged periodic cells) | true

    Params (trainable, per element in ``species`` order): widths, yukawa_z,
    yukawa_beta, and charges (fixed, per-element table) or electronegativity
    and hardness (qeq). Padding atoms (atomic number 0) carry no charge and no
    energy. The ``charges`` callable returns the (equilibrated) charges, e.

    Environment-dependent electronegativities (the 4G-HDNNP design, Ko et al.
    2021), Python API only: ``electronegativity_fn(model_params, positions,
    context) -> (N,) eV/e`` is added to the per-element chi (e.g. atomic
    networks on local descriptors), its parameters come from
    ``electronegativity_init(key, system)`` and live in
    ``params["electronegativity_model"]``; autodiff through the solve trains
    them, and the energy stays variational in q (forces need no dq/dr; the
    chi(r) dependence is differentiated). A config cannot store the callable,
    so the composing model must rebuild it."""
    from ase.data import atomic_numbers

    name = "gaussian_electrostatics"
    if electronegativity_fn is not None and config.get("charge_model", "fixed") != "qeq":
        raise InputError("gaussian_electrostatics: electronegativity_fn needs charge_model 'qeq'")
    config = dict(config)
    config.pop("kind", None)
    unknown = set(config) - set(_GE_KEYS)
    if unknown:
        raise InputError(f"unknown key(s) for potential kind {name!r}: {', '.join(sorted(unknown))}")
    model = config.get("charge_model", "fixed")
    check_choice("charge_model", model, CHARGE_MODELS)
    charges_cfg = config.get("charges")
    if model == "fixed":
        if charges_cfg is None:
            raise InputError("gaussian_electrostatics with charge_model 'fixed' needs 'charges' "
                             "(a table element -> e, or \"input\")")
        given = [k for k in _QEQ_ONLY if k in config]
        if given:
            raise InputError(f"gaussian_electrostatics: {', '.join(given)} only apply to charge_model 'qeq'")
    else:
        if charges_cfg is not None:
            raise InputError("gaussian_electrostatics: 'charges' cannot be given with charge_model 'qeq' "
                             "(the charges are equilibrated)")
        for k in ("electronegativity", "hardness", "widths"):
            if k not in config:
                raise InputError(f"gaussian_electrostatics with charge_model 'qeq' needs '{k}' "
                                 "(a per-element table)")
    input_charges = charges_cfg == "input"
    if isinstance(charges_cfg, str) and not input_charges:
        raise InputError(f"gaussian_electrostatics 'charges' must be a table element -> e or \"input\", "
                         f"got {charges_cfg!r}")

    # species: explicit, or every element named in a table, by atomic number
    if "species" in config:
        species = config["species"]
        if not isinstance(species, (list, tuple)) or not species:
            raise InputError("gaussian_electrostatics 'species' must be a non-empty list of element symbols")
        species = [str(s) for s in species]
    else:
        species = sorted({s for k in _GE_TABLES if isinstance(config.get(k), dict) for s in config[k]})
        if not species:
            raise InputError("gaussian_electrostatics needs per-element tables (e.g. widths) or a 'species' list")
    for s in species:
        if s not in atomic_numbers or atomic_numbers[s] == 0:
            raise InputError(f"gaussian_electrostatics: unknown element {s!r}")
    if len(set(species)) != len(species):
        raise InputError(f"gaussian_electrostatics 'species' lists an element twice: {species}")
    species = sorted(species, key=lambda s: atomic_numbers[s])
    n_el = len(species)

    def nonneg(what, unit):
        def check(s, v):
            if v < 0:
                raise InputError(f"gaussian_electrostatics {what}.{s} must be >= 0 ({unit}), got {v}")
        return check

    def positive(what, unit, why=""):
        def check(s, v):
            if v <= 0:
                raise InputError(f"gaussian_electrostatics {what}.{s} must be > 0 ({unit}){why}, got {v}")
        return check

    if model == "qeq":
        widths = _ge_table("widths", config["widths"], species, "A",
                           positive("widths", "A", " for charge equilibration (finite self-energy)"))
    elif "widths" in config:
        widths = _ge_table("widths", config["widths"], species, "A", nonneg("widths", "A"))
    else:
        widths = np.zeros(n_el)
    q_el = None
    if model == "fixed" and not input_charges:
        q_el = _ge_table("charges", charges_cfg, species, "e")
    chi = hard = None
    total_charge = 0.0
    fixed_total = None
    if model == "fixed" and "total_charge" in config:
        if input_charges:
            raise InputError("gaussian_electrostatics: total_charge does not apply to charges = \"input\"")
        fixed_total = _ge_number(config, "total_charge", 0.0, "e", positive=False)
    if model == "qeq":
        chi = _ge_table("electronegativity", config["electronegativity"], species, "eV/e")
        hard = _ge_table("hardness", config["hardness"], species, "eV/e^2", lambda s, v: None)
        bad = [s for s, v in zip(species, hard) if v < 0]
        if bad:
            raise InputError(f"gaussian_electrostatics hardness of {', '.join(bad)} is negative: the QEq "
                             "matrix can then be indefinite or singular (use hardness >= 0 eV/e^2)")
        total_charge = _ge_number(config, "total_charge", 0.0, "e", positive=False)
    if "yukawa_z" in config:
        yz = _ge_table("yukawa_z", config["yukawa_z"], species, "e")
    else:
        yz = np.zeros(n_el)
    use_yukawa = bool(np.any(yz != 0))
    if "yukawa_beta" in config:
        yb = _ge_table("yukawa_beta", config["yukawa_beta"], species, "1/A", positive("yukawa_beta", "1/A"))
    elif use_yukawa:
        raise InputError("gaussian_electrostatics: yukawa_z is given but yukawa_beta (1/A, per element) is not")
    else:
        yb = np.ones(n_el)
    rule = config.get("yukawa_combination", "arithmetic")
    check_choice("yukawa_combination", rule, YUKAWA_COMBINATIONS)
    cutoff = _ge_number(config, "cutoff", 8.0, "A")
    switch_width = _ge_number(config, "switch_width", 1.0, "A")
    if switch_width > cutoff:
        raise InputError(f"gaussian_electrostatics switch_width ({switch_width} A) exceeds the cutoff ({cutoff} A)")
    accuracy = _ge_number(config, "accuracy", 1e-5, "relative")
    _check_accuracy(accuracy)
    order = config.get("pme_order", 5)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 3 <= int(order) <= 12:
        raise InputError(f"gaussian_electrostatics pme_order must be an integer from 3 to 12, got {order!r}")
    order = int(order)
    neutralize = config.get("neutralize", False)
    if not isinstance(neutralize, bool):
        raise InputError(f"gaussian_electrostatics neutralize must be true or false, got {neutralize!r}")
    solver = config.get("qeq_solver", "dense")
    check_choice("qeq_solver", solver, QEQ_SOLVERS)
    cg_tol = _ge_number(config, "cg_tol", 1e-10, "relative residual")
    cg_maxiter = config.get("cg_maxiter", 1000)
    if isinstance(cg_maxiter, bool) or not isinstance(cg_maxiter, (int, np.integer)) or cg_maxiter < 1:
        raise InputError(f"gaussian_electrostatics cg_maxiter must be a positive integer, got {cg_maxiter!r}")
    cg_maxiter = int(cg_maxiter)

    # geometry: cluster or fully periodic cell
    method = config.get("coulomb", "auto")
    check_choice("coulomb method", method, GE_COULOMB_METHODS)
    periodic = False
    if system is not None:
        check_species(system, species, name)
        pbc = tuple(bool(p) for p in system.pbc)
        if any(pbc) and not all(pbc):
            raise InputError(f"gaussian_electrostatics needs pbc in all three directions or none, got {pbc}")
        periodic = all(pbc)
        if input_charges and system.charges is None:
            raise InputError("gaussian_electrostatics charges = \"input\" but the structure carries no "
                             "per-atom charges")
    if method == "auto":
        if periodic:
            method = "pme" if system.n_atoms >= _AUTO_PME_ATOMS else "ewald"
        else:
            method = "direct"
    if periodic and method == "direct":
        raise InputError("gaussian_electrostatics coulomb 'direct' ignores periodicity; "
                         "use 'ewald' or 'pme' for a periodic cell")
    if method in ("ewald", "pme") and not periodic:
        raise InputError(f"gaussian_electrostatics coulomb {method!r} needs a periodic structure "
                         "(pbc in all directions and a cell) at build time")
    coul = coul_bg = None
    if periodic:
        # net charge of the cell, known at build time for all charge models
        if input_charges:
            net = float(np.sum(np.asarray(system.charges, np.float64)))
            scale = float(np.sum(np.abs(np.asarray(system.charges, np.float64))))
        elif model == "fixed" and fixed_total is not None:
            net, scale = fixed_total, abs(fixed_total) + 1.0
        elif model == "fixed":
            per_atom = q_el[[species.index(s) for s in system.symbols]]
            net, scale = float(per_atom.sum()), float(np.abs(per_atom).sum())
        else:
            net, scale = total_charge, abs(total_charge)
        if abs(net) > 1e-5 * scale + 1e-8 and not neutralize:
            raise InputError(f"gaussian_electrostatics: the periodic cell carries a net charge of {net:.6g} e; "
                             "Ewald/PME need a neutral cell (or neutralize = true for a uniform "
                             "neutralising background)")
        cell = np.asarray(system.cell, np.float64)
        common = dict(cutoff=cutoff, accuracy=accuracy, order=order)
        coul = make_coulomb(method, cell, neutral="background" if neutralize else "reject", **common)
        coul_bg = make_coulomb(method, cell, neutral="background", **common)

    table = species_index_table(species)
    r_on = cutoff - switch_width

    def atoms(context):
        idx = table[context.species]
        real = idx >= 0

        def get(v):
            return jnp.where(real, v[jnp.maximum(idx, 0)], 0.0)
        return real, get

    def fixed_charges(params, positions, context):
        real, get = atoms(context)
        if input_charges:
            if context.charges is None:
                raise InputError("gaussian_electrostatics charges = \"input\" needs per-atom charges in the context")
            return jnp.where(real, jnp.asarray(context.charges, positions.dtype), 0.0)
        q = get(params["charges"]).astype(positions.dtype)
        if fixed_total is not None:
            n_real = jnp.maximum(jnp.sum(real), 1).astype(q.dtype)
            q = jnp.where(real, q - (jnp.sum(q) - fixed_total) / n_real, 0.0)
        return q

    def coulomb_energy(positions, context, q, w, real, coulomb=None):
        """E_coul (eV) of charges q (e) with widths w (A); no Gaussian self-energy."""
        if method == "direct":
            def pair(rows, r):
                gamma = _safe_sqrt(w[rows][:, None] ** 2 + w[None, :] ** 2)
                return KE * q[rows][:, None] * q[None, :] * gaussian_kernel(r, gamma)
            return _cluster_pair_sum(pair, positions, real)
        i, j, dr, mask = pairs(positions, context)
        ok = mask & real[i] & real[j]
        return (coulomb or coul).energy(positions, q, context.cell, i, j, dr, ok, widths=w)

    def yukawa_energy(params, positions, context, real, get):
        z = get(params["yukawa_z"]).astype(positions.dtype)
        beta = get(params["yukawa_beta"]).astype(positions.dtype)
        if method == "direct":
            def pair(rows, r):
                b = combine_beta(beta[rows][:, None], beta[None, :], rule)
                return yukawa_pair_energy(r, z[rows][:, None] * z[None, :], b, r_on, cutoff)
            return _cluster_pair_sum(pair, positions, real)
        i, j, dr, mask = pairs(positions, context)
        r = safe_norm(dr)
        ok = mask & real[i] & real[j] & (r < cutoff)
        r = jnp.where(ok, r, 1e3)
        e = yukawa_pair_energy(r, z[i] * z[j], combine_beta(beta[i], beta[j], rule), r_on, cutoff)
        return esum(jnp.where(ok, e, 0.0))

    def qeq(params, positions, context):
        """(charges e, E_qeq eV) at the constrained minimum."""
        real, get = atoms(context)
        w = jnp.where(real, get(params["widths"]), 1.0).astype(positions.dtype)
        chi_i = get(params["electronegativity"])
        if electronegativity_fn is not None:
            extra = electronegativity_fn(params["electronegativity_model"], positions, context)
            chi_i = chi_i + jnp.where(real, extra, 0.0)
        d = jnp.where(real, qeq_diagonal(get(params["hardness"]), w), 1.0)
        if method == "direct" and solver == "dense":
            a = cluster_coulomb_matrix(positions, w, real) + jnp.diag(d)
            q = solve_qeq(a, chi_i, total_charge, real)
            return q, esum(chi_i * q) + 0.5 * esum(q * (a @ q))

        def ecoul(qv):
            return coulomb_energy(positions, context, qv, w, real, coul_bg)

        if solver == "dense":
            n = positions.shape[0]
            a = jax.jacfwd(jax.grad(ecoul))(jnp.zeros(n, jnp.float64)) + jnp.diag(d)
            q = solve_qeq(a, chi_i, total_charge, real)
        else:
            def matvec(v):
                return jax.grad(ecoul)(v) + d * v
            q = solve_qeq_cg(matvec, d, chi_i, total_charge, real, tol=cg_tol, maxiter=cg_maxiter)
        e = esum(chi_i * q) + 0.5 * esum(d * q * q) + ecoul(q)
        return q, e

    def energy(params, positions, context):
        real, get = atoms(context)
        if model == "qeq":
            _, e = qeq(params, positions, context)
        else:
            q = fixed_charges(params, positions, context)
            w = get(params["widths"]).astype(positions.dtype)
            e = coulomb_energy(positions, context, q, w, real)
        if use_yukawa:
            e = e + yukawa_energy(params, positions, context, real, get)
        return e

    def charges(params, positions, context):
        if model == "qeq":
            return qeq(params, positions, context)[0]
        return fixed_charges(params, positions, context)

    init_params = {"widths": widths, "yukawa_z": yz, "yukawa_beta": yb}
    if q_el is not None:
        init_params["charges"] = q_el
    if model == "qeq":
        init_params["electronegativity"] = chi
        init_params["hardness"] = hard

    def init(key, system):
        out = {k: jnp.asarray(v) for k, v in init_params.items()}
        if electronegativity_fn is not None:
            out["electronegativity_model"] = (electronegativity_init(key, system)
                                              if electronegativity_init is not None else {})
        return out

    def el_table(v):
        return {s: float(x) for s, x in zip(species, v)}

    resolved = {"kind": name, "species": list(species), "charge_model": model,
                "widths": el_table(widths), "yukawa_z": el_table(yz), "yukawa_beta": el_table(yb),
                "yukawa_combination": rule, "cutoff": cutoff, "switch_width": switch_width,
                "coulomb": method, "accuracy": accuracy, "pme_order": order, "neutralize": neutralize}
    if model == "fixed":
        resolved["charges"] = "input" if input_charges else el_table(q_el)
        if fixed_total is not None:
            resolved["total_charge"] = fixed_total
    else:
        resolved.update(electronegativity=el_table(chi), hardness=el_table(hard), total_charge=total_charge,
                        qeq_solver=solver, cg_tol=cg_tol, cg_maxiter=cg_maxiter)
    return Potential(energy=energy, init=init, cutoff=0.0 if method == "direct" else cutoff, name=name,
                     charges=charges, config=resolved)
