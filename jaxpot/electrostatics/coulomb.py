"""Point-charge (and Gaussian-charge) Coulomb energy: the :class:`Coulomb`
settings object, :func:`make_coulomb` and the potential :func:`coulomb_potential`.

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
    E = E_real + E_recip + E_self + E_background with
    E_real = ke sum_pairs q_i q_j erfc(alpha r)/r (r < rc),
    E_self = -ke alpha/sqrt(pi) sum_i q_i^2 and
    E_bg = -ke pi Q^2/(2 V alpha^2) (Q = sum_i q_i; a uniform neutralising
    background, which makes E independent of alpha for a charged cell; Hub et
    al., JCTC 10, 381 (2014)); E_recip and the parameter recipes are in
    :mod:`jaxpot.electrostatics.ewald`.
``"pme"``
    Smooth particle-mesh Ewald (Essmann et al., JCP 103, 8577 (1995)): the
    same E_real, E_self, E_bg, and E_recip on a grid
    (:mod:`jaxpot.electrostatics.pme`).

Exclusions (``excl_i, excl_j, excl_dr, excl_scale``): pairs the force field
removes from the real-space list (intramolecular pairs, 1-2/1-3/1-4). For each
one the energy gets ``excl_scale * ke q_i q_j f_ij(r)`` (0 = fully excluded,
0.8333 = AMBER 1-4) and, for Ewald/PME, loses what the reciprocal sum counted
for it, ke q_i q_j erf(alpha r)/r (safe at r -> 0, where it tends to
2 alpha/sqrt(pi)). For ``"cutoff"`` the scaled term is plain Coulomb (no
truncation, shift or reaction field), as for OpenMM exceptions.

Gaussian charges (``widths`` w_i, A): f_ij(r) = erf(r/gamma_ij)/r,
gamma_ij = sqrt(w_i^2 + w_j^2), for all methods; for Ewald/PME the real-space
kernel becomes [erf(r/gamma) - erf(alpha r)]/r and the reciprocal sum and the
self term -ke alpha/sqrt(pi) q_i^2 are unchanged (see
:mod:`jaxpot.electrostatics.pair`).

Non-neutral cells (Ewald/PME): ``neutral="background"`` (default) adds E_bg
above; ``neutral="reject"`` raises :class:`~jaxpot.system.InputError` when the
charges are concrete, and returns NaN under ``jit`` (where no exception can be
raised) if |sum q| > 1e-5 sum |q| + 1e-8 e.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ..potentials.base import Potential, esum, pairs, safe_norm
from ..system import InputError, check_choice
from ..units import KE
from .ewald import _check_accuracy, _check_cell, ewald_alpha, ewald_kspace, ewald_reciprocal
from .pair import _gamma, _inv, all_pairs, erf_over_r, ewald_real_kernel, gaussian_kernel
from .pme import pme_reciprocal, pme_setup

METHODS = ("direct", "cutoff", "ewald", "pme")
CUTOFF_SCHEMES = ("plain", "shifted", "reaction_field")
NEUTRAL_MODES = ("background", "reject")


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
                e = e + ewald_reciprocal(positions, charges, cell, self.alpha, self.kmax, self.kweights)
            else:
                e = e + pme_reciprocal(positions, charges, cell, self.alpha, self.grid, self.order, self._moduli)
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
        km, mvec, weights = ewald_kspace(cell_np, cutoff, accuracy, a, kmax)
        return Coulomb(kmax=tuple(km), kvectors=mvec, kweights=weights, **common)
    # pme
    g, order, moduli = pme_setup(cell_np, a, accuracy, order, grid)
    return Coulomb(grid=g, order=order, _moduli=moduli, **common)


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
