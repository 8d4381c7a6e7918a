"""Physical forces on the beads: the one-bead potential mapped over the bead
axis, and ring-polymer contraction (Markland & Manolopoulos, JCP 129,
024105 (2008)).

Units: positions A, energies eV, forces eV/A.

A ``force_fn(positions (P,N,3), **kw) -> (energies (P,) eV, forces (P,N,3)
eV/A)`` is what the integrator (:mod:`.integrator`) calls; the functions
here build one.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ...mapping import check_batch, map_leading
from ...system import InputError
from .normal_modes import normal_mode_matrix
from .state import _acc_dtype


def bead_energy_and_forces(energy_fn: Callable, *, bead_batch: int = 0, groups: int = 1) -> Callable:
    """From a one-bead ``energy_fn(positions (N,3) A, **kw) -> eV`` build
    ``force_fn(positions (P,N,3), **kw) -> (energies (P,) eV, forces (P,N,3) eV/A)``;
    keyword arguments (neighbor lists, ...) are shared by all beads. Forces
    are -grad, by autodiff.

    ``bead_batch``: beads vmapped together in each step of a sequential map
    over the bead axis (0: one at a time on CPU when a ``neighbors`` keyword
    is passed, all at once otherwise and on other backends);
    ``groups``: equal bead groups vmapped side by side (one per device when
    beads are sharded). See :func:`jaxpot.mapping.map_leading` for why."""
    vg = jax.value_and_grad(energy_fn)
    bead_batch = check_batch("bead_batch", bead_batch)
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise InputError(f"groups must be an integer >= 1, got {groups!r}")

    def force_fn(positions, **kwargs):
        # a neighbor list means gathers, which XLA:CPU runs faster bead by bead
        e, g = map_leading(lambda x: vg(x, **kwargs), positions, batch=bead_batch, groups=groups,
                           gathers=kwargs.get("neighbors") is not None)
        return e, -g

    return force_fn


def contraction_matrix(n_beads: int, n_contracted: int) -> np.ndarray:
    """Ring-polymer contraction matrix T (P', P), float64: q' = T q.

    The P' contracted beads are the P-bead path's Fourier series, truncated
    to its P' lowest-frequency normal modes (the centroid, the cosine/sine
    pairs with m < P'/2, and for even P' the cosine of m = P'/2), evaluated
    at the imaginary times k'/P' (i-PI's ring-polymer contraction,
    Markland & Manolopoulos, JCP 129, 024105 (2008)). P' = P gives the
    identity and P' = 1 the centroid; every row sums to 1."""
    P, Pc = int(n_beads), int(n_contracted)
    if P < 1 or not 1 <= Pc <= P:
        raise InputError(f"contracted bead number must be between 1 and {P}, got {n_contracted}")
    C = normal_mode_matrix(P)
    tau = np.arange(Pc)[:, None] / Pc                       # new imaginary times, in units of beta hbar
    E = np.zeros((Pc, P))
    E[:, 0] = 1.0 / np.sqrt(P)
    for m in range(1, Pc // 2 + 1):
        if 2 * m == P:                                       # Nyquist of the full ring (P' = P even)
            E[:, m] = np.cos(np.pi * P * tau[:, 0]) / np.sqrt(P)
            continue
        E[:, m] = np.sqrt(2.0 / P) * np.cos(2.0 * np.pi * m * tau[:, 0])
        if 2 * m < Pc:                                       # the sine partner (not at P'/2):
            # column P - m of C is sin(2 pi (P - m) j / P) = -sin(2 pi m j / P)
            E[:, P - m] = -np.sqrt(2.0 / P) * np.sin(2.0 * np.pi * m * tau[:, 0])
    return E @ C.T


def contracted_energy_and_forces(terms, n_beads: int, *, bead_batch: int = 0, groups: int = 1) -> Callable:
    """Ring-polymer contraction: ``force_fn`` for a potential that is a sum
    of terms, each evaluated on its own number of beads.

    terms: sequence of ``(energy_fn, P_t)``, ``energy_fn(positions (N,3) A,
    **kw) -> eV`` for one bead and P_t contracted beads (0 or P: every bead).
    The ring-polymer potential is sum_t (P / P_t) sum_k' V_t(q'_k'), q' =
    T_t q (:func:`contraction_matrix`); its forces on the P beads are
    -(P / P_t) T_t^T dV_t/dq' (autodiff forces of each term, chained through
    the linear contraction). Each bead's energy gets the contracted terms'
    mean over their beads, so bead sums and means of ``energies`` are the
    contracted ring-polymer potential and its estimate of <V>. Expensive,
    smooth terms (long-range electrostatics, intermolecular forces) on few
    beads, stiff cheap ones (bonds) on all: the cost drops roughly by P/P_t
    for the contracted terms."""
    P = int(n_beads)
    bead_batch = check_batch("bead_batch", bead_batch)
    plan = []
    for energy_fn, pt in terms:
        pt = P if int(pt) == 0 else int(pt)
        T = None if pt == P else jnp.asarray(contraction_matrix(P, pt))
        plan.append((jax.value_and_grad(energy_fn), pt, T))

    def force_fn(positions, **kwargs):
        gathers = kwargs.get("neighbors") is not None
        e_tot = jnp.zeros(positions.shape[0], _acc_dtype())
        f_tot = jnp.zeros_like(positions)
        for vg, pt, T in plan:
            q = positions if T is None else jnp.einsum("kj,jnd->knd", T.astype(positions.dtype), positions)
            g_groups = groups if pt % groups == 0 else 1
            e, g = map_leading(lambda x: vg(x, **kwargs), q, batch=bead_batch, groups=g_groups, gathers=gathers)
            if T is None:
                e_tot = e_tot + e.astype(e_tot.dtype)
                f_tot = f_tot - g.astype(f_tot.dtype)
            else:
                e_tot = e_tot + jnp.mean(e.astype(e_tot.dtype))
                f_tot = f_tot - (P / pt) * jnp.einsum("kj,knd->jnd", T.astype(g.dtype), g).astype(f_tot.dtype)
        return e_tot, f_tot

    return force_fn
