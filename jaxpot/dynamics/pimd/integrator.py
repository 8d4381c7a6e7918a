"""Ring-polymer MD integrator: the state's init and step (PILE-L, PILE-G,
Langevin or NVE ring polymer; BAOAB or OBABO splitting; exact or Cayley
free ring-polymer drifts).

Units: positions A, momenta amu A/fs, forces eV/A, energies eV, time fs,
kT eV, masses amu, frequencies 1/fs.

Sources: PILE thermostats, Ceriotti, Parrinello, Markland & Manolopoulos,
JCP 133, 124104 (2010); BAOAB, Leimkuhler & Matthews, Appl. Math. Res.
Express 2013, 34 (2013); OBABO, Bussi & Parrinello, PRE 75, 056707 (2007);
Cayley drifts, Korol, Bou-Rabee & Miller, JCP 151, 124103 (2019) and
JCP 152, 104102 (2020). See the package docstring for the time-step
conventions.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ...system import InputError, check_choice, positive_number
from ...units import MVV2E
from ..quantity import kinetic_energy, kinetic_energy_change
from ..thermostats import csvr_draws, csvr_scale, ornstein_uhlenbeck
from .forces import bead_energy_and_forces
from .normal_modes import (PROPAGATORS, _free_coefficients, _resolve_method, _rotate,
                           from_normal_modes, normal_mode_frequencies, to_normal_modes)
from .state import PIMDState, _acc_dtype

SPLITTINGS = ("baoab", "obabo")
THERMOSTATS = ("pile_l", "pile_g", "langevin", "none")


# --------------------------------------------------------------------------
# Thermostat pieces
# --------------------------------------------------------------------------

def _remove_centroid_com(p_nm, masses):
    """Zero the total momentum. Internal modes sum to zero over beads, so the
    whole ring polymer's momentum is sqrt(P) * sum_i p_nm[0, i]; subtract
    the mass-weighted share from each atom's centroid mode."""
    m = masses[:, None]
    v_com = jnp.sum(p_nm[0], axis=0) / jnp.sum(masses)
    return p_nm.at[0].add(-m * v_com[None, :])


# --------------------------------------------------------------------------
# The integrator
# --------------------------------------------------------------------------

def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def pimd(energy_fn: Optional[Callable], dt: float, kT: float, n_beads: int, *,
         thermostat: str = "pile_l", tau: float = 100.0, pile_lambda: float = 0.5,
         splitting: str = "baoab", propagator: str = "exact", centroid_thermostat: bool = True,
         remove_com: bool = False, force_fn: Optional[Callable] = None,
         nm_method: str = "auto", sample_internal_modes: bool = False,
         bead_batch: int = 0, bead_groups: int = 1):
    """Ring-polymer MD (JAX MD style): returns ``(init_fn, step_fn)``.

    energy_fn: ``(positions (N,3) A, **kw) -> eV`` for one bead (mapped
        over beads); may be None if ``force_fn`` is given.
    dt: time step, fs. kT: physical temperature, eV (beads run at P kT).
    n_beads: P >= 1 (P = 1 is classical Langevin/NVE MD).
    thermostat: "pile_l" (Langevin on every normal mode, gamma_0 = 1/tau,
        gamma_k = 2 pile_lambda w_k), "pile_g" (CSVR on the centroid's
        kinetic energy with time constant tau, Langevin as PILE-L on the
        internal modes), "langevin" (gamma = 1/tau on every mode) or "none"
        (NVE ring polymer, RPMD).
    tau: centroid thermostat time constant, fs. pile_lambda: PILE scaling.
    centroid_thermostat: False leaves the centroid unthermostatted
        (PILE-L with it False is TRPMD).
    splitting: "baoab" (default) or "obabo"; propagator: "exact" or
        "cayley" (BCOCB with sqrt-Cayley half steps for BAOAB, Cayley full
        step for OBABO). See the module docstring for the dt conventions.
    remove_com: zero the total momentum at init and after each thermostat
        step (the heat this removes is booked in ``heat``).
    force_fn: ``(positions (P,N,3), **kw) -> (energies (P,) eV, forces
        (P,N,3) eV/A)`` to replace the default mapped autodiff forces
        (ring-polymer contraction, multiple time stepping).
    nm_method: "auto" | "matrix" | "fft" normal-mode transform.
    bead_batch, bead_groups: how the default force function maps the bead
        axis (see :func:`bead_energy_and_forces`; 0 = automatic by backend).
    sample_internal_modes: when ``init_fn`` gets (N,3) positions, draw the
        internal normal modes from the free ring polymer's Boltzmann
        distribution at P kT (variance P kT / (m w_k^2 MVV2E)) instead of
        starting all beads on top of each other.

    ``init_fn(key, positions (N,3) or (P,N,3), masses (N,), **kw) -> PIMDState``
    draws Maxwell-Boltzmann momenta at P kT. ``step_fn(state, **kw)`` takes
    one step; ``kT=`` among its keywords changes the temperature (eV), all
    other keywords go to the energy function.
    """
    dt = positive_number("dt", dt, "fs")
    kT = positive_number("kT", kT, "eV")
    if isinstance(n_beads, bool) or not isinstance(n_beads, (int, np.integer)) or n_beads < 1:
        raise InputError(f"n_beads must be an integer >= 1, got {n_beads!r}")
    P = int(n_beads)
    check_choice("thermostat", thermostat, THERMOSTATS)
    check_choice("splitting", splitting, SPLITTINGS)
    check_choice("propagator", propagator, PROPAGATORS)
    _resolve_method(nm_method, P)
    if thermostat != "none":
        tau = positive_number("tau", tau, "fs")
        pile_lambda = positive_number("pile_lambda", pile_lambda, "dimensionless")
    if force_fn is None:
        if energy_fn is None or not callable(energy_fn):
            raise InputError("pimd needs an energy function energy_fn(positions, **kwargs) -> eV")
        force_fn = bead_energy_and_forces(energy_fn, bead_batch=bead_batch, groups=bead_groups)

    h_o = dt if splitting == "baoab" else 0.5 * dt   # duration of one O step
    a_fraction = 0.5 if splitting == "baoab" else 1.0
    tnm = lambda x: to_normal_modes(x, nm_method)
    fnm = lambda x: from_normal_modes(x, nm_method)

    def gammas(w):
        """Friction of each normal mode, 1/fs (PILE: Ceriotti 2010, Eq. 36)."""
        if thermostat == "langevin":
            g = jnp.full_like(w, 1.0 / tau)
        else:
            g = 2.0 * pile_lambda * w
            g = g.at[0].set(1.0 / tau if thermostat == "pile_l" else 0.0)
        if not centroid_thermostat:
            g = g.at[0].set(0.0)
        return g

    def thermostat_o(p_nm, masses, kT_now, key):
        """O step of duration h_o on normal-mode momenta; returns (p_nm, heat eV),
        heat = the kinetic energy the step removed."""
        if thermostat == "none":
            return p_nm, jnp.zeros((), _acc_dtype())
        p_old = p_nm
        kT_P = P * kT_now
        w = normal_mode_frequencies(P, kT_now)
        c1 = jnp.exp(-gammas(w) * h_o).astype(p_nm.dtype)
        k_lang, k_csvr = jax.random.split(key)
        # PILE, Ceriotti et al. (2010), Eq. 27; the normal-mode transform is
        # orthogonal, so the noise may be drawn directly in normal modes
        p_nm = ornstein_uhlenbeck(k_lang, p_nm, masses, c1[:, None, None], kT_P.astype(p_nm.dtype))
        if thermostat == "pile_g" and centroid_thermostat:
            n_dof = 3 * masses.shape[0] - (3 if remove_com else 0)
            if n_dof > 0:
                # CSVR on the centroid's kinetic energy (Ceriotti 2010, Sec. IV.B)
                kc = kinetic_energy(p_nm[0], masses)
                c = jnp.exp(-h_o / tau).astype(kc.dtype)
                r1, s = csvr_draws(k_csvr, n_dof, (), kc.dtype)
                alpha = csvr_scale(kc, c, kT_P.astype(kc.dtype), n_dof, r1, s)
                p_nm = p_nm.at[0].multiply(alpha.astype(p_nm.dtype))
        if remove_com:
            p_nm = _remove_centroid_com(p_nm, masses)
        return p_nm, kinetic_energy_change(p_nm, p_old, masses)

    def kick(p, f, h):
        return p + (h / MVV2E) * f

    def init_fn(key, positions, masses, **kwargs):
        positions = jnp.asarray(positions)
        if not jnp.issubdtype(positions.dtype, jnp.floating):
            positions = positions.astype(_acc_dtype())
        dtype = positions.dtype
        masses = jnp.asarray(masses, dtype)
        if positions.ndim == 2:
            if positions.shape[-1] != 3:
                raise InputError(f"positions must have shape (N, 3) or (P, N, 3), got {positions.shape}")
            positions = jnp.broadcast_to(positions[None], (P,) + positions.shape)
            spread = sample_internal_modes and P > 1
        elif positions.ndim == 3:
            if positions.shape[0] != P or positions.shape[-1] != 3:
                raise InputError(
                    f"bead positions must have shape (P={P}, N, 3), got {positions.shape}")
            spread = False
        else:
            raise InputError(f"positions must have shape (N, 3) or (P, N, 3), got {positions.shape}")
        n = positions.shape[1]
        if masses.shape != (n,):
            raise InputError(f"masses must have shape ({n},) to match positions, got {masses.shape}")
        # value checks only on concrete inputs, so init_fn stays jit/vmap-able
        if _concrete(positions) and not bool(jnp.all(jnp.isfinite(positions))):
            raise InputError("positions contain non-finite values")
        if _concrete(masses) and not bool(jnp.all(jnp.isfinite(masses) & (masses > 0))):
            raise InputError("masses must be positive and finite (amu)")
        kT_arr = jnp.asarray(kT, dtype)
        key, k_p, k_q = jax.random.split(key, 3)
        if spread:
            w = normal_mode_frequencies(P, kT_arr)
            safe_w = jnp.where(w > 0, w, 1.0)
            std = jnp.sqrt(P * kT_arr / (masses[None, :, None] * safe_w[:, None, None] ** 2 * MVV2E))
            dq = jnp.where((w > 0)[:, None, None], std * jax.random.normal(k_q, positions.shape, dtype), 0.0)
            positions = positions + fnm(dq)
        std_p = jnp.sqrt(masses[None, :, None] * P * kT_arr / MVV2E)
        momenta = std_p * jax.random.normal(k_p, positions.shape, dtype)
        if remove_com:
            momenta = fnm(_remove_centroid_com(tnm(momenta), masses))
        energies, forces = force_fn(positions, **kwargs)
        return PIMDState(positions=positions, momenta=momenta, forces=forces.astype(dtype),
                         energies=energies, masses=masses, key=key,
                         heat=jnp.zeros((), _acc_dtype()), kT=kT_arr)

    def step_fn(state: PIMDState, **kwargs) -> PIMDState:
        kT_now = kwargs.pop("kT", None)
        dtype = state.positions.dtype
        kT_now = state.kT if kT_now is None else jnp.asarray(kT_now, dtype)
        m = state.masses
        w = normal_mode_frequencies(P, kT_now).astype(dtype)
        coef = _free_coefficients(w, dt, a_fraction, propagator)
        key, k1, k2 = jax.random.split(state.key, 3)
        q, p, heat = state.positions, state.momenta, state.heat

        if splitting == "baoab":
            p = kick(p, state.forces, 0.5 * dt)
            q_nm, p_nm = tnm(q), tnm(p)
            q_nm, p_nm = _rotate(q_nm, p_nm, m, coef)
            p_nm, dk = thermostat_o(p_nm, m, kT_now, k1)
            q_nm, p_nm = _rotate(q_nm, p_nm, m, coef)
            q, p = fnm(q_nm), fnm(p_nm)
            heat = heat + dk
            energies, forces = force_fn(q, **kwargs)
            forces = forces.astype(dtype)
            p = kick(p, forces, 0.5 * dt)
        else:
            if thermostat != "none":
                p_nm, dk = thermostat_o(tnm(p), m, kT_now, k1)
                p, heat = fnm(p_nm), heat + dk
            p = kick(p, state.forces, 0.5 * dt)
            q_nm, p_nm = _rotate(tnm(q), tnm(p), m, coef)
            q, p = fnm(q_nm), fnm(p_nm)
            energies, forces = force_fn(q, **kwargs)
            forces = forces.astype(dtype)
            p = kick(p, forces, 0.5 * dt)
            if thermostat != "none":
                p_nm, dk = thermostat_o(tnm(p), m, kT_now, k2)
                p, heat = fnm(p_nm), heat + dk

        return state.replace(positions=q, momenta=p, forces=forces, energies=energies,
                             key=key, heat=heat, kT=kT_now)

    return init_fn, step_fn
