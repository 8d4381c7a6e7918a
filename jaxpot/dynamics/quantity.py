"""Thermodynamic quantities from momenta, masses and virials, written once
for classical and path-integral dynamics (after JAX MD's ``quantity.py``).

Units (metal): momenta amu A/fs, masses amu, energies eV, temperatures K,
virials eV, volumes A^3, pressures eV/A^3 (times ``EV_A3_TO_BAR`` of
:mod:`jaxpot.dynamics.observables` for bar).

Formulas:
  - kinetic energy K = sum_i |p_i|^2 / (2 m_i) * MVV2E (eV), because
    1 amu A^2/fs^2 = MVV2E eV (:data:`jaxpot.units.MVV2E`);
  - kinetic temperature T = 2 K / (n_dof kB) (equipartition, K = n_dof kB T / 2);
  - pressure P = (2 K + tr W) / (3 V) (virial theorem, Allen & Tildesley,
    "Computer Simulation of Liquids", 2nd ed. (2017), Eq. 2.61), with
    W = -dU/d(epsilon), the sign of ``jaxpot.potentials.base.virial``
    (positive for repulsion).

Energies are accumulated in the widest float available (float64 under
jaxpot), whatever the dtype of the momenta.
"""
from __future__ import annotations

import jax.numpy as jnp

from ..system import InputError
from ..units import KB, MVV2E

# Accumulate energies in the widest float available (float64 under jaxpot).
_ACC = jnp.result_type(float)

__all__ = [
    "kinetic_energy", "per_atom_kinetic_energy", "per_element_kinetic_energy",
    "kinetic_energy_change", "temperature", "pressure",
]


def _p2_over_m(momenta, masses):
    """|p_i|^2 / m_i per atom, amu A^2/fs^2, in the accumulation dtype."""
    p = momenta.astype(_ACC)
    return jnp.sum(p * p, axis=-1) / masses.astype(_ACC)


def kinetic_energy(momenta, masses):
    """K = sum_i |p_i|^2 / (2 m_i) * MVV2E in eV (accumulated in float64)
    for momenta (..., N, 3) amu A/fs and masses (N,) amu; sums over atoms,
    so a leading bead axis gives one K per bead."""
    return 0.5 * MVV2E * jnp.sum(_p2_over_m(momenta, masses), axis=-1)


def per_atom_kinetic_energy(momenta, masses):
    """K_i = |p_i|^2 / (2 m_i) * MVV2E per atom, eV: (..., N) for momenta
    (..., N, 3) amu A/fs and masses (N,) amu."""
    return 0.5 * MVV2E * _p2_over_m(momenta, masses)


def per_element_kinetic_energy(per_atom, groups):
    """Mean kinetic energy of the atoms of each element, eV: ``groups @
    per_atom`` with ``groups`` (E, N) the averaging matrix (row e holds
    1/n_e on the atoms of element e, 0 elsewhere) and ``per_atom`` (N,) eV
    (from :func:`per_atom_kinetic_energy`, or a path-integral estimator's
    per-atom kinetic energies)."""
    return jnp.asarray(groups) @ per_atom


def kinetic_energy_change(p_old, p_new, masses):
    """K(p_new) - K(p_old), eV, summed over every axis of momenta (..., N, 3)
    amu A/fs with masses (N,) amu, as sum (p' - p)(p' + p) / (2 m) * MVV2E
    to avoid the cancellation of two large sums. Swapping the arguments
    negates the result exactly."""
    a, b = p_old.astype(_ACC), p_new.astype(_ACC)
    return jnp.sum((b - a) * (b + a) / (2.0 * masses.astype(_ACC)[:, None])) * MVV2E


def temperature(kinetic_energy, n_dof):
    """Kinetic temperature T = 2 K / (n_dof kB), K, for a kinetic energy K
    in eV carried by ``n_dof`` degrees of freedom (3N, 3N - 3 without
    centre-of-mass motion; 3 N P^2 for the P-bead ring polymer's momenta,
    which sample P T)."""
    if n_dof <= 0:
        raise InputError(f"n_dof must be positive, got {n_dof}")
    return 2.0 * jnp.asarray(kinetic_energy) / (n_dof * KB)


def pressure(kinetic_energy, virial, volume):
    """Pressure P = (2 K + tr W) / (3 V) in eV/A^3 (virial theorem).

    kinetic_energy eV; virial W (..., 3, 3) eV with W = -dU/d(epsilon) (the
    sign of ``jaxpot.potentials.base.virial``: positive for repulsion);
    volume A^3. Multiply by EV_A3_TO_BAR or EV_A3_TO_GPA for bar or GPa.
    For PIMD pass the centroid-virial kinetic energy and the bead-averaged
    virial."""
    virial = jnp.asarray(virial)
    if virial.shape[-2:] != (3, 3):
        raise InputError(f"virial must have shape (3, 3) in eV, got {virial.shape}")
    tr = jnp.trace(virial, axis1=-2, axis2=-1)
    return (2.0 * jnp.asarray(kinetic_energy) + tr) / (3.0 * jnp.asarray(volume))
