"""Thermostat kernels shared by the classical integrators
(:mod:`jaxpot.dynamics.integrators`) and ring-polymer MD
(:mod:`jaxpot.dynamics.pimd`): the exact Ornstein-Uhlenbeck momentum step,
stochastic velocity rescaling (CSVR) and Nose-Hoover chains.

Units (metal): momenta amu A/fs, masses amu, kT eV, times fs, kinetic
energies eV; MVV2E = 103.642697 eV per amu A^2/fs^2 converts p^2/m to eV.

Heat convention (every integrator): a state's ``heat`` is the kinetic
energy the thermostat has REMOVED from the particles (eV), so H + heat is
conserved (Bussi & Parrinello's effective energy, PRE 75, 056707 (2007));
for a ring polymer (H_P + heat) / P.

The kernels act on momenta and return momenta (or a scaling factor); the
integrators draw the PRNG keys, book the heat and remove centre-of-mass
motion, each in its own way, so every call keeps its key splits and order.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from ..system import InputError
from ..units import MVV2E
from .quantity import kinetic_energy

# Accumulate energies in the widest float available (float64 under jaxpot).
_ACC = jnp.result_type(float)

__all__ = [
    "ornstein_uhlenbeck", "csvr_draws", "csvr_scale", "ChainState", "chain_energy",
    "nose_hoover_chain_state", "suzuki_yoshida_weights", "nose_hoover_chain_half_step",
]


# ---------------------------------------------------------------------------
# Ornstein-Uhlenbeck (Langevin "O" step; PILE per normal mode)
# ---------------------------------------------------------------------------

def ornstein_uhlenbeck(key, momenta, masses, c1, kT, project=None):
    """Exact Ornstein-Uhlenbeck update of momenta over a time h,

        p <- c1 p + sqrt((1 - c1^2) m kT / MVV2E) R,   c1 = exp(-gamma h),

    R ~ N(0, 1) per component (Leimkuhler & Matthews, Appl. Math. Res.
    Express 2013, 34 (2013), the "O" of BAOAB; per ring-polymer normal mode
    with gamma_k, the PILE thermostat of Ceriotti, Parrinello, Markland &
    Manolopoulos, JCP 133, 124104 (2010), Eq. 27).

    key: PRNG key the noise is drawn from (the caller splits it);
    momenta (..., N, 3) amu A/fs; masses (N,) amu; c1 dimensionless, a
    scalar or broadcastable against (..., N, 1) (e.g. (P, 1, 1) per normal
    mode); kT eV (the beads' P kT for a ring polymer). ``project``: optional
    function applied to the noise (e.g. removing its total momentum).
    Returns the new momenta."""
    p = momenta
    sigma = jnp.sqrt((1.0 - c1 * c1) * kT / MVV2E * masses[:, None]).astype(p.dtype)
    noise = sigma * jax.random.normal(key, p.shape, dtype=p.dtype)
    if project is not None:
        noise = project(noise)
    return c1 * p + noise


# ---------------------------------------------------------------------------
# CSVR (Bussi, Donadio & Parrinello)
# ---------------------------------------------------------------------------

def csvr_draws(key, n_dof: int, shape=(), dtype=None):
    """Random numbers of CSVR: R_1 ~ N(0, 1) and S = sum_{i=2}^{n_dof} R_i^2
    ~ chi^2(n_dof - 1) = 2 Gamma((n_dof - 1)/2), arrays of ``shape`` (one
    pair per rescaling; one gamma call, as its sampler is costly to compile).
    ``key`` is split once into the normal and the gamma key."""
    dtype = dtype or _ACC
    k1, k2 = jax.random.split(key)
    r1 = jax.random.normal(k1, shape, dtype=dtype)
    if n_dof > 1:
        s = 2.0 * jax.random.gamma(k2, 0.5 * (n_dof - 1), shape, dtype=dtype)
    else:
        s = jnp.zeros(shape, dtype)
    return r1, s


def csvr_scale(kinetic, c, kT, n_dof: int, r1, s):
    """Stochastic velocity rescaling factor over one thermostat interval h,
    c = exp(-h/tau) (Bussi, Donadio & Parrinello, JCP 126, 014101 (2007),
    Eq. (A7)): the kinetic energy K (eV) of ``n_dof`` degrees of freedom is
    resampled exactly as

      K' = c K + (1 - c) Kbar (R_1^2 + S) / n_dof + 2 R_1 sqrt(c (1 - c) K Kbar / n_dof),

    Kbar = n_dof kT / 2 (kT eV), with R_1, S from :func:`csvr_draws`.
    Returns alpha = sqrt(K'/K) with the sign of
    R_1 + sqrt(c n_dof K / ((1 - c) Kbar)) (the time-reversible choice of
    the paper's appendix); 1 where K = 0 (nothing to rescale). Momenta are
    multiplied by alpha, the kinetic energy by alpha^2."""
    K = kinetic
    kbar = 0.5 * n_dof * kT
    k_new = (c * K + (1.0 - c) * kbar * (r1 * r1 + s) / n_dof
             + 2.0 * r1 * jnp.sqrt(c * (1.0 - c) * K * kbar / n_dof))
    k_safe = jnp.where(K > 0, K, 1.0)
    alpha = jnp.sqrt(k_new / k_safe)
    sign = jnp.where(r1 + jnp.sqrt(c * n_dof * K / ((1.0 - c) * kbar)) < 0, -1.0, 1.0)
    return jnp.where(K > 0, sign * alpha, 1.0)


# ---------------------------------------------------------------------------
# Nose-Hoover chains
# ---------------------------------------------------------------------------

@struct.dataclass
class ChainState:
    """Nose-Hoover chain variables (Martyna, Tuckerman & Klein, Mol. Phys.
    87, 1117 (1996)).

    xi: (M,) dimensionless thermostat positions; v_xi: (M,) 1/fs thermostat
    velocities; Q: (M,) eV fs^2 thermostat masses; kT: eV; n_dof: number
    of particle degrees of freedom the first thermostat acts on.
    """
    xi: jnp.ndarray
    v_xi: jnp.ndarray
    Q: jnp.ndarray
    kT: jnp.ndarray
    n_dof: jnp.ndarray


def chain_energy(chain: ChainState):
    """Energy of a Nose-Hoover chain, eV (MTK 1996, eq. for H'):
    sum_j Q_j v_j^2 / 2 + n_dof kT xi_1 + kT sum_{j>1} xi_j."""
    xi = chain.xi.astype(_ACC)
    v = chain.v_xi.astype(_ACC)
    kin = 0.5 * jnp.sum(chain.Q * v * v)
    pot = chain.n_dof * chain.kT * xi[0] + chain.kT * jnp.sum(xi[1:])
    return kin + pot


def nose_hoover_chain_state(chain_length: int, n_dof: int, kT, tau) -> ChainState:
    """A chain of ``chain_length`` thermostats at rest (xi = v_xi = 0) with
    masses Q_1 = n_dof kT tau^2, Q_j = kT tau^2 (eV fs^2; kT eV, tau fs the
    chain period; Martyna, Klein & Tuckerman, JCP 97, 2635 (1992))."""
    if n_dof < 1:
        raise InputError("Nose-Hoover chains need at least one degree of freedom")
    M = int(chain_length)
    Q = kT * tau ** 2 * jnp.ones((M,), _ACC)
    Q = Q.at[0].multiply(n_dof)
    z = jnp.zeros((M,), _ACC)
    return ChainState(xi=z, v_xi=z, Q=Q, kT=jnp.asarray(kT, _ACC),
                      n_dof=jnp.asarray(n_dof, _ACC))


def suzuki_yoshida_weights(order: int):
    """Weights w_k (sum 1) of the Suzuki-Yoshida factorisation of order 1, 3
    or 5 (Yoshida, Phys. Lett. A 150, 262 (1990); MTK 1996 Sec. 4)."""
    if order == 1:
        return (1.0,)
    if order == 3:
        w = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
        return (w, 1.0 - 2.0 * w, w)
    if order == 5:
        w = 1.0 / (4.0 - 4.0 ** (1.0 / 3.0))
        return (w, w, 1.0 - 4.0 * w, w, w)
    raise InputError(f"Suzuki-Yoshida order must be 1, 3 or 5, got {order!r}")


def nose_hoover_chain_half_step(state, half_dt, weights, n_sub):
    """exp(iL_NHC half_dt) by Trotter splitting into n_sub x len(weights)
    substeps h = w_k half_dt / n_sub (Martyna, Tuckerman, Tobias & Klein,
    Mol. Phys. 87, 1117 (1996), Sec. 4; Tuckerman, "Statistical Mechanics",
    Sec. 4.12). Each substep: v_M half kick; v_j (j = M-1..1) kicks wrapped
    in exp(-h/4 v_{j+1}) scalings; particle momenta scaled by exp(-h v_1);
    xi += h v; then the mirror image. Forces on the chain:
    G_1 = 2K - n_dof kT, G_j = Q_{j-1} v_{j-1}^2 - kT.

    ``state``: any state with ``momenta`` (amu A/fs), ``masses`` (amu),
    ``heat`` (eV) and ``chain`` (:class:`ChainState`); half_dt fs. The
    kinetic energy the chain removes is added to ``heat``."""
    ch = state.chain
    M = ch.v_xi.shape[0]
    kT, Q = ch.kT, ch.Q
    k2_start = 2.0 * kinetic_energy(state.momenta, state.masses)          # 2K, eV
    hs = jnp.asarray([w * half_dt / n_sub for _ in range(n_sub) for w in weights], _ACC)

    def g(j, k2, v):
        if j == 0:
            return (k2 - ch.n_dof * kT) / Q[0]
        return (Q[j - 1] * v[j - 1] ** 2 - kT) / Q[j]

    def substep(carry, h):
        k2, scale, xi, v_arr = carry
        v = [v_arr[j] for j in range(M)]
        v[M - 1] = v[M - 1] + 0.5 * h * g(M - 1, k2, v)
        for j in range(M - 2, -1, -1):
            s = jnp.exp(-0.25 * h * v[j + 1])
            v[j] = (v[j] * s + 0.5 * h * g(j, k2, v)) * s
        f = jnp.exp(-h * v[0])
        scale = scale * f
        k2 = k2 * f * f
        xi = xi + h * jnp.stack(v)
        for j in range(M - 1):
            s = jnp.exp(-0.25 * h * v[j + 1])
            v[j] = (v[j] * s + 0.5 * h * g(j, k2, v)) * s
        v[M - 1] = v[M - 1] + 0.5 * h * g(M - 1, k2, v)
        return (k2, scale, xi, jnp.stack(v)), None

    init = (k2_start, jnp.ones((), _ACC), ch.xi, ch.v_xi.astype(_ACC))
    (k2, scale, xi, v), _ = jax.lax.scan(substep, init, hs)
    p = state.momenta * scale.astype(state.momenta.dtype)
    heat = state.heat + (0.5 * (k2_start - k2)).astype(state.heat.dtype)
    chain = ch.replace(xi=xi, v_xi=v.astype(ch.v_xi.dtype))
    return state.replace(momenta=p, heat=heat, chain=chain)
