"""Yukawa (screened) core-core repulsion with a C2 quintic switch.

Units: distances in A, charges Z in e, screening beta in 1/A, energies in eV;
ke = :data:`jaxpot.units.KE` (eV A / e^2). A pair contributes
ke Z_A Z_B exp(-beta_AB r)/r S(r) with S the quintic switch
1 - 10x^3 + 15x^4 - 6x^5 (continuous up to the second derivative). Used by
the potential kind "gaussian_electrostatics" (:mod:`.gaussian`).
"""
from __future__ import annotations

import jax.numpy as jnp

from ..units import KE
from .pair import _safe_sqrt

YUKAWA_COMBINATIONS = ("arithmetic", "geometric")


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
