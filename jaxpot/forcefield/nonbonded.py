"""Nonbonded Lennard-Jones pieces: the pair energy, OpenMM's switching
function, combination rules, NBFIX tables and the long-range dispersion
correction.

Units (metal): lengths A, energies eV; NBFIX A/B coefficients eV A^12 and
eV A^6.

  Lennard-Jones   E = 4 eps ((sigma/r)^12 - (sigma/r)^6)  (OpenMM NonbondedForce)
  switching       S = 1 - 10 x^3 + 15 x^4 - 6 x^5          (OpenMM)
  dispersion      Shirts et al., J. Phys. Chem. B 111, 13052 (2007);
                  Allen & Tildesley eq. 2.144
Coulomb lives in :mod:`jaxpot.electrostatics`.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..space import volume
from ..system import InputError
from .topology import COMBINATION_RULES, ForceFieldParams, Topology


def lj_energy(r, sigma, epsilon):
    """E = 4 eps ((sigma/r)^12 - (sigma/r)^6); r, sigma A, eps eV -> eV."""
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * (s6 * s6 - s6)


def switch_function(r, r_switch, r_cut):
    """OpenMM's LJ switching function (A -> dimensionless):
    S = 1 - 10 x^3 + 15 x^4 - 6 x^5, x = (r - r_switch)/(r_cut - r_switch),
    S = 1 below r_switch and 0 above r_cut. S, S' and S'' are continuous,
    so energy and force go smoothly to zero at the cutoff."""
    x = jnp.clip((r - r_switch) / (r_cut - r_switch), 0.0, 1.0)
    return 1.0 + x ** 3 * (-10.0 + x * (15.0 - 6.0 * x))


def combine_lj(sigma_a, eps_a, sigma_b, eps_b, rule: str):
    """Combined (sigma A, epsilon eV) for a pair of LJ types.

    lorentz-berthelot: sigma = (sa + sb)/2, eps = sqrt(ea eb);
    geometric (OPLS):  sigma = sqrt(sa sb), eps = sqrt(ea eb)."""
    if rule == "lorentz-berthelot":
        sig = 0.5 * (sigma_a + sigma_b)
    elif rule == "geometric":
        sig = _safe_sqrt(sigma_a * sigma_b)
    else:
        raise InputError(f"unknown combination rule {rule!r} (use one of {', '.join(COMBINATION_RULES)})")
    return sig, _safe_sqrt(eps_a * eps_b)


def _safe_sqrt(x):
    """sqrt with a zero gradient at 0 (epsilon = 0 types, e.g. TIP3P H)."""
    ok = x > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)


def nbfix_from_ab(acoef, bcoef):
    """(sigma A, epsilon eV) tables from A/B coefficient tables of
    E = A/r^12 - B/r^6 (A in eV A^12, B in eV A^6), as in CHARMM NBFIX or
    OpenMM's CustomNonbondedForce acoef/bcoef: sigma = (A/B)^(1/6),
    eps = B^2/(4A). A = B = 0 gives eps = 0 (sigma set to 1 A, irrelevant).
    A purely repulsive entry (B <= 0 < A) cannot be written as LJ and is
    refused."""
    a = np.asarray(acoef, dtype=np.float64)
    b = np.asarray(bcoef, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"NBFIX A and B tables differ in shape: {a.shape} vs {b.shape}")
    zero = (a == 0) & (b == 0)
    if np.any(~zero & ((a <= 0) | (b <= 0))):
        raise InputError("NBFIX A/B entries must both be positive (or both zero) to map to LJ sigma/epsilon")
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(zero, 1.0, (a / np.where(zero, 1.0, b)) ** (1.0 / 6.0))
        eps = np.where(zero, 0.0, b * b / (4.0 * np.where(zero, 1.0, a)))
    return sigma, eps


# ---------------------------------------------------------------------------
# long-range dispersion correction
# ---------------------------------------------------------------------------

_GL_X, _GL_W = np.polynomial.legendre.leggauss(48)


def _switch_tail_integral(sigma, r_switch, r_cut):
    """I(sigma) = int_{rs}^{rc} r^2 (1 - S(r)) ((sigma/r)^12 - (sigma/r)^6) dr
    (A^3) by 48-point Gauss-Legendre (the integrand is smooth, so this is
    exact to rounding); OpenMM's evalIntegral gives the same in closed form."""
    half = 0.5 * (r_cut - r_switch)
    r = r_switch + half * (1.0 + jnp.asarray(_GL_X, dtype=sigma.dtype))
    w = half * jnp.asarray(_GL_W, dtype=sigma.dtype)
    s6 = (sigma[..., None] / r) ** 6
    f = r * r * (1.0 - switch_function(r, r_switch, r_cut)) * (s6 * s6 - s6)
    return jnp.sum(w * f, axis=-1)


DISPERSION_COUNTINGS = ("openmm", "mean_field")


def dispersion_correction_energy(cell, counts, sigma_table, eps_table, r_cut, r_switch=None,
                                 counting: str = "openmm"):
    """Long-range LJ correction (eV) for a homogeneous fluid, as OpenMM's
    NonbondedForce computes it (Shirts et al., J. Phys. Chem. B 111, 13052
    (2007); Allen & Tildesley eq. 2.144):

      E = 8 pi N^2 / V * < eps_ab [ sigma_ab^12/(9 rc^9) - sigma_ab^6/(3 rc^3)
                                   + I_ab ] >

    the tail 2 pi N^2/V int_rc^inf r^2 u(r) dr of u = 4 eps (...), plus with
    switching I_ab = int_rs^rc r^2 (1 - S)(sigma^12/r^12 - sigma^6/r^6) dr.
    < . > averages over all N(N+1)/2 atom pairs by type: weight
    n_a n_b for a != b and n_a (n_a + 1)/2 for a = b (OpenMM's counting).
    counts (T,) atoms per type, sigma_table/eps_table (T, T) A/eV, cell A.
    E ~ 1/V, so the correction contributes -E/V to each diagonal stress
    element (derived by autodiff through the cell).
    counting="mean_field" weighs type pairs n_a n_b / N^2 instead, so that
    E = 2 pi / V sum_ab n_a n_b int_rc^inf r^2 u_ab dr (the textbook tail,
    as the q-TIP4P/F and SPC/Fw papers apply it to their O-O LJ)."""
    if counting not in DISPERSION_COUNTINGS:
        raise InputError(f"unknown dispersion counting {counting!r} (use one of {', '.join(DISPERSION_COUNTINGS)})")
    n = np.asarray(counts, dtype=np.float64)
    n_tot = n.sum()
    if counting == "openmm":
        weight = 0.5 * (np.outer(n, n) + np.diag(n)) / (0.5 * n_tot * (n_tot + 1.0))
    else:
        weight = np.outer(n, n) / (n_tot * n_tot)
    weight = jnp.asarray(weight, dtype=sigma_table.dtype)
    s6 = sigma_table ** 6
    term = s6 * s6 / (9.0 * r_cut ** 9) - s6 / (3.0 * r_cut ** 3)
    if r_switch is not None:
        term = term + _switch_tail_integral(sigma_table, r_switch, r_cut)
    avg = jnp.sum(weight * eps_table * term)
    return 8.0 * jnp.pi * n_tot ** 2 * avg / volume(cell)



def _lj_tables(topology: Topology, p: ForceFieldParams):
    """(T, T) sigma (A) and epsilon (eV) tables: combination rule, with the
    NBFIX entries replacing it where the topology's mask says so."""
    sig, eps = combine_lj(p.lj_sigma[:, None], p.lj_epsilon[:, None],
                          p.lj_sigma[None, :], p.lj_epsilon[None, :], topology.combination_rule)
    if topology.nbfix.any():
        mask = jnp.asarray(topology.nbfix)
        sig = jnp.where(mask, p.nbfix_sigma, sig)
        eps = jnp.where(mask, p.nbfix_epsilon, eps)
    return sig, eps

