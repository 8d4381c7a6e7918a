"""Path-integral estimators: centroids, spring energy, primitive and
centroid-virial kinetic energies, the conserved quantity, temperatures and
the centroid-virial pressure.

Units: positions A, energies eV, temperatures K, pressures eV/A^3.
Sources: i-PI's conventions (Ceriotti et al., JCP 133, 124104 (2010)) and
the centroid-virial estimator of Herman, Bruskin & Berne, JCP 76, 5150
(1982); temperature and pressure formulas from :mod:`jaxpot.dynamics.quantity`.
"""
from __future__ import annotations

import jax.numpy as jnp

from ...system import InputError
from ...units import MVV2E
from ..quantity import kinetic_energy, pressure, temperature
from .normal_modes import ring_polymer_frequency
from .state import PIMDState, _acc_dtype


def _kinetic(p, masses):
    """sum p^2 / (2 m) * MVV2E, eV, over every bead and atom of momenta
    (..., N, 3) amu A/fs (:func:`jaxpot.dynamics.quantity.kinetic_energy`)."""
    return jnp.sum(kinetic_energy(p, masses))


def centroid(state: PIMDState):
    """Ring-polymer centroids (N, 3), A: the bead average of each atom."""
    return jnp.mean(state.positions, axis=-3)


def spring_energy(positions, masses, kT):
    """Ring-polymer spring energy per physical system, eV:
    (1/P) sum_j sum_i (1/2) m_i w_P^2 |q_ij - q_i,j+1|^2 * MVV2E, which is
    the term the primitive estimator subtracts (i-PI's "spring")."""
    acc = _acc_dtype()
    P = positions.shape[0]
    q = positions.astype(acc)
    d = q - jnp.roll(q, -1, axis=0)
    w_p = ring_polymer_frequency(P, jnp.asarray(kT, acc))
    return 0.5 * w_p ** 2 * MVV2E / P * jnp.sum(masses.astype(acc)[None, :, None] * d * d)


def estimators(state: PIMDState, kT=None, *, virial=None, volume=None) -> dict:
    """Path-integral estimators of one state (jit-able, reduced on device).

    kT (eV) defaults to ``state.kT``. Returns a dict of scalars in eV unless
    stated (per physical system, i.e. already divided by P where needed):
      potential: bead-averaged V, (1/P) sum_j V(q_j);
      spring: :func:`spring_energy`;
      kinetic_primitive: 3 N P kT / 2 - spring;
      kinetic_cv: centroid-virial kinetic energy, sum of
      kinetic_cv_per_atom (N,): 3 kT/2 + (1/(2P)) sum_j (q_ij - qc_i).dV/dq_ij
        = 3 kT/2 - (1/(2P)) sum_j (q_ij - qc_i).F_ij (Herman, Bruskin &
        Berne, JCP 76, 5150 (1982)); for a harmonic well it equals <V> > 3kT/2;
      total_energy: potential + kinetic_cv;
      hamiltonian: H_P (sum over beads, eV);
      conserved: (H_P + heat) / P (heat: kinetic energy the thermostat
        removed), constant up to integration error;
      temperature: K, from bead momenta 2 K_RP / (3 N P^2 kB)
        (beads run at P T);
      centroid_temperature: K, 2 K_c / (3 N kB) with centroid momenta
        p_c = mean_j p_j (classical, so it averages to T);
      radius_of_gyration (N,): A, sqrt((1/P) sum_j |q_ij - qc_i|^2);
      pressure_cv: eV/A^3, only when ``virial`` (P, 3, 3) eV per bead
        (W = -dV/d(strain)) and ``volume`` (A^3) are given:
        (2 K_cv + tr(mean_j W_j)) / (3 V).
    Momentum-based quantities assume no constraints (3N degrees of freedom).
    """
    acc = _acc_dtype()
    q = state.positions.astype(acc)
    p = state.momenta.astype(acc)
    f = state.forces.astype(acc)
    m = state.masses.astype(acc)
    P, N = q.shape[0], q.shape[1]
    kT = jnp.asarray(state.kT if kT is None else kT, acc)

    qc = jnp.mean(q, axis=0)
    dq = q - qc[None]
    spring = spring_energy(q, m, kT)
    pot = jnp.mean(state.energies.astype(acc))
    # K_cv,i = 3 kT/2 + (1/(2P)) sum_j (q_ij - qc_i) . dV/dq_ij, with dV/dq = -F
    kcv_atom = 1.5 * kT - jnp.sum(dq * f, axis=(0, 2)) / (2.0 * P)
    kcv = jnp.sum(kcv_atom)
    k_rp = _kinetic(p, m)
    h_p = k_rp + jnp.sum(state.energies.astype(acc)) + P * spring
    pc = jnp.mean(p, axis=0)
    k_c = _kinetic(pc, m)
    out = {
        "potential": pot,
        "spring": spring,
        "kinetic_primitive": 1.5 * N * P * kT - spring,
        "kinetic_cv": kcv,
        "kinetic_cv_per_atom": kcv_atom,
        "total_energy": pot + kcv,
        "hamiltonian": h_p,
        "conserved": (h_p + state.heat.astype(acc)) / P,
        "temperature": temperature(k_rp, 3 * N * P * P),
        "centroid_temperature": temperature(k_c, 3 * N),
        "radius_of_gyration": jnp.sqrt(jnp.mean(jnp.sum(dq * dq, axis=-1), axis=0)),
    }
    if virial is not None:
        if volume is None:
            raise InputError("the centroid-virial pressure needs the cell volume (A^3)")
        w = jnp.asarray(virial, acc)
        if w.shape != (P, 3, 3):
            raise InputError(f"virial must have shape (P={P}, 3, 3) eV, got {w.shape}")
        out["pressure_cv"] = pressure(kcv, jnp.mean(w, axis=0), volume)
    return out
