"""Classical integrators: velocity Verlet (NVE), BAOAB Langevin, Nose-Hoover
chains and stochastic velocity rescaling (NVT).

Units (metal): positions A, momenta amu A/fs, forces eV/A, masses amu,
time fs, energies eV, kT eV, temperatures K.

Equations of motion in these units: dx/dt = p/m (A/fs) and
dp/dt = F / MVV2E (amu A/fs^2), because 1 eV/A = (1/MVV2E) amu A/fs^2 with
MVV2E = 103.642697 eV per amu A^2/fs^2. The kinetic energy is
K = sum_i |p_i|^2 / (2 m_i) * MVV2E (eV).

Pattern (after JAX MD's ``simulate.py``): each integrator is a factory
returning ``(init_fn, step_fn)``::

    init_fn, step_fn = nvt_langevin(energy_fn, dt, kT, tau=100.0)
    state = init_fn(key, positions, masses, velocities=None, **kwargs)
    state = step_fn(state, **kwargs)          # pure, jit-able

``energy_fn(positions, **kwargs) -> eV`` is any energy function; extra
keyword arguments (e.g. ``neighbors=nbr``) go to it unchanged at every
force evaluation. Forces come only from ``jax.grad`` of that function.

Centre-of-mass motion. With ``remove_com=True`` (translation-invariant
potentials, whose forces sum to zero) the initial COM momentum is removed
and the thermostats never put it back: Nose-Hoover chains and CSVR rescale
all momenta by one factor (zero stays zero), and the Langevin noise is
projected onto the zero-total-momentum subspace (see :func:`_project_noise`).
The system then has n_dof = 3N - 3 degrees of freedom. For external fields
(not translation invariant, e.g. harmonic tethers) use ``remove_com=False``
and n_dof = 3N.

Conserved quantity. Every state carries ``heat`` (eV): the cumulative
kinetic energy the thermostat took out of the particles. For Langevin and
CSVR, K + U + heat is the "effective energy" of Bussi & Parrinello (PRE 75,
056707 (2007)), constant up to the velocity-Verlet integration error. For
Nose-Hoover chains the conserved quantity is the extended Hamiltonian of
Martyna, Tuckerman & Klein, K + U + chain energy; ``heat`` is kept as a
diagnostic there (it equals the change of the chain energy up to the
integration error) and is not added twice. :func:`conserved_energy` returns
the right one for every state.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from flax import struct

from ..system import InputError, positive_number
from ..units import MVV2E
from . import quantity
from .thermostats import (ChainState, chain_energy, csvr_draws, csvr_scale,
                          nose_hoover_chain_half_step, nose_hoover_chain_state,
                          ornstein_uhlenbeck, suzuki_yoshida_weights)

# Accumulate energies in the widest float available (float64 under jaxpot).
_ACC = jnp.result_type(float)


# ---------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------

@struct.dataclass
class MDState:
    """Integrator state (a pytree).

    positions (N,3) A; momenta (N,3) amu A/fs; forces (N,3) eV/A;
    potential_energy eV; masses (N,) amu; key: PRNG key; heat eV
    (cumulative kinetic energy removed by the thermostat); chain:
    :class:`ChainState` for Nose-Hoover chains, else None.
    """
    positions: jnp.ndarray
    momenta: jnp.ndarray
    forces: jnp.ndarray
    potential_energy: jnp.ndarray
    masses: jnp.ndarray
    key: jnp.ndarray
    heat: jnp.ndarray
    chain: Optional[ChainState] = None

    @property
    def velocities(self):
        """Velocities, A/fs."""
        return self.momenta / self.masses[:, None]


# ---------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------

def n_degrees_of_freedom(n_atoms: int, remove_com: bool) -> int:
    """Kinetic degrees of freedom: 3N - 3 with the COM momentum removed
    (translation-invariant potentials), else 3N."""
    n_atoms = int(n_atoms)
    if n_atoms < 1:
        raise InputError(f"need at least one atom, got {n_atoms}")
    return 3 * n_atoms - 3 if remove_com else 3 * n_atoms


def momenta_kinetic_energy(momenta, masses):
    """K = sum |p|^2/(2m) * MVV2E in eV (accumulated in float64) for momenta
    (..., N, 3) amu A/fs and masses (N,) amu (:func:`jaxpot.dynamics.quantity.kinetic_energy`)."""
    return quantity.kinetic_energy(momenta, masses)


def kinetic_energy(state: MDState):
    """Kinetic energy of the particles, eV."""
    return momenta_kinetic_energy(state.momenta, state.masses)


def temperature(state: MDState, n_dof: int):
    """Instantaneous kinetic temperature T = 2K / (n_dof kB), K."""
    return quantity.temperature(kinetic_energy(state), n_dof)


def conserved_energy(state: MDState):
    """The quantity every integrator conserves up to integration error, eV.

    NVE, Langevin, CSVR: K + U + heat (heat = kinetic energy removed by the
    thermostat). Nose-Hoover chains: K + U + chain energy (MTK extended
    Hamiltonian; ``heat`` equals the change of the chain energy there)."""
    e = kinetic_energy(state) + state.potential_energy.astype(_ACC)
    if state.chain is not None:
        return e + chain_energy(state.chain)
    return e + state.heat.astype(_ACC)


def momentum_step(state: MDState, dt) -> MDState:
    """Kick: p <- p + dt F / MVV2E (dt in fs)."""
    p = state.momenta + (dt / MVV2E) * state.forces.astype(state.momenta.dtype)
    return state.replace(momenta=p)


def position_step(state: MDState, dt) -> MDState:
    """Drift: x <- x + dt p / m (dt in fs)."""
    x = state.positions + dt * state.momenta / state.masses[:, None]
    return state.replace(positions=x)


def _energy_and_forces(energy_fn):
    vg = jax.value_and_grad(energy_fn)

    def fn(positions, **kwargs):
        e, g = vg(positions, **kwargs)
        return e, -g.astype(positions.dtype)

    return fn


def force_step(state: MDState, energy_and_forces, **kwargs) -> MDState:
    """Recompute U (eV) and F = -dU/dx (eV/A) at the current positions."""
    e, f = energy_and_forces(state.positions, **kwargs)
    return state.replace(forces=f, potential_energy=jnp.asarray(e))


def remove_com_momentum(momenta, masses):
    """Momenta with the total momentum removed, p_i - (m_i/M) P (amu A/fs).

    For Gaussian p_i ~ N(0, m_i kT/MVV2E) this is exactly the conditional
    distribution given P = 0 (the residual is independent of P), so
    sampling then projecting is exact sampling of the 3N-3 dof ensemble."""
    w = masses / jnp.sum(masses)
    return momenta - w[:, None] * jnp.sum(momenta, axis=0, keepdims=True)


def _project_noise(noise, masses):
    """Noise with covariance ~ diag(m) projected onto zero total momentum:
    R_i - (m_i/M) sum_j R_j, the exact conditional Gaussian given sum R = 0
    (same argument as :func:`remove_com_momentum`)."""
    return remove_com_momentum(noise, masses)


def maxwell_boltzmann_momenta(key, masses, kT, dtype=None, remove_com: bool = True):
    """Momenta (N,3) amu A/fs drawn exactly from the Maxwell-Boltzmann
    distribution at kT (eV): each component p ~ N(0, m kT / MVV2E).

    No rescaling to the target temperature (that would bias the ensemble);
    with ``remove_com`` the COM momentum is projected out, which is exact
    sampling of the constrained ensemble (see :func:`remove_com_momentum`)."""
    masses = jnp.asarray(masses)
    dtype = dtype or masses.dtype
    sigma = jnp.sqrt(masses * (kT / MVV2E)).astype(dtype)
    p = sigma[:, None] * jax.random.normal(key, (masses.shape[0], 3), dtype=dtype)
    if remove_com:
        p = remove_com_momentum(p, masses.astype(dtype))
    return p


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

def _is_concrete(x):
    return not isinstance(x, jax.core.Tracer)


def _check_inputs(positions, masses, velocities):
    positions = jnp.asarray(positions)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise InputError(f"positions must have shape (N, 3) in A, got {positions.shape}")
    if not jnp.issubdtype(positions.dtype, jnp.floating):
        raise InputError(f"positions must be floating point, got dtype {positions.dtype}")
    n = positions.shape[0]
    masses = jnp.asarray(masses, dtype=positions.dtype)
    if masses.shape != (n,):
        raise InputError(f"masses must have shape ({n},) in amu, got {masses.shape}")
    if _is_concrete(masses) and not bool(jnp.all(masses > 0)):
        raise InputError("masses must all be positive (amu)")
    if _is_concrete(positions) and not bool(jnp.all(jnp.isfinite(positions))):
        raise InputError("positions contain non-finite values")
    if velocities is not None:
        velocities = jnp.asarray(velocities, dtype=positions.dtype)
        if velocities.shape != positions.shape:
            raise InputError(f"velocities must have shape {positions.shape} (A/fs), got {velocities.shape}")
    return positions, masses, velocities


def _make_init(energy_fn, kT, remove_com, chain_init=None):
    """Shared init_fn: forces at the start, momenta from velocities or from
    the Maxwell-Boltzmann distribution at kT."""
    eaf = _energy_and_forces(energy_fn)

    def init_fn(key, positions, masses, velocities=None, **kwargs):
        """State at ``positions`` (N,3) A with ``masses`` (N,) amu.

        ``velocities`` (N,3) A/fs, or None to draw Maxwell-Boltzmann momenta
        at kT from ``key``. With ``remove_com`` the COM momentum is removed
        either way. ``kwargs`` go to the energy function."""
        positions, masses, velocities = _check_inputs(positions, masses, velocities)
        n = positions.shape[0]
        if remove_com and n < 2:
            raise InputError("remove_com=True needs at least 2 atoms (1 atom has no internal motion)")
        key, sub = jax.random.split(key)
        if velocities is None:
            if kT is None:
                raise InputError("give velocities or a temperature kT (eV) to draw them from")
            p = maxwell_boltzmann_momenta(sub, masses, kT, positions.dtype, remove_com)
        else:
            p = velocities * masses[:, None]
            if remove_com:
                p = remove_com_momentum(p, masses)
        e, f = eaf(positions, **kwargs)
        state = MDState(
            positions=positions, momenta=p, forces=f, potential_energy=jnp.asarray(e),
            masses=masses, key=key, heat=jnp.zeros((), _ACC),
        )
        if chain_init is not None:
            state = state.replace(chain=chain_init(n_degrees_of_freedom(n, remove_com), positions.dtype))
        return state

    return init_fn


def _velocity_verlet(state, dt, eaf, **kwargs):
    state = momentum_step(state, 0.5 * dt)
    state = position_step(state, dt)
    state = force_step(state, eaf, **kwargs)
    return momentum_step(state, 0.5 * dt)


# ---------------------------------------------------------------------------
# NVE
# ---------------------------------------------------------------------------

def nve(energy_fn: Callable, dt: float, kT: Optional[float] = None, tau: Any = None,
        remove_com: bool = True):
    """Velocity Verlet (Swope, Andersen, Berens & Wilson, JCP 76, 637 (1982)).

    dt in fs; kT (eV) is used only to draw initial velocities when none are
    given; tau is ignored (accepted for a common signature). Symplectic and
    time reversible: the energy error stays bounded and scales as dt^2."""
    dt = positive_number("timestep dt", dt, "fs")
    if kT is not None:
        kT = positive_number("kT", kT, "eV")
    eaf = _energy_and_forces(energy_fn)

    def step_fn(state: MDState, **kwargs) -> MDState:
        return _velocity_verlet(state, dt, eaf, **kwargs)

    return _make_init(energy_fn, kT, remove_com), step_fn


# ---------------------------------------------------------------------------
# Langevin (BAOAB)
# ---------------------------------------------------------------------------

def _ou_step(state: MDState, c1, kT, remove_com):
    """O: exact Ornstein-Uhlenbeck update p <- c1 p + sqrt((1 - c1^2) m kT/MVV2E) R
    with c1 = exp(-gamma dt) (:func:`jaxpot.dynamics.thermostats.ornstein_uhlenbeck`);
    the kinetic energy it removes goes to ``heat``."""
    key, sub = jax.random.split(state.key)
    p = state.momenta
    project = (lambda noise: _project_noise(noise, state.masses)) if remove_com else None
    p_new = ornstein_uhlenbeck(sub, p, state.masses, c1, kT, project)
    k_old = momenta_kinetic_energy(p, state.masses)
    k_new = momenta_kinetic_energy(p_new, state.masses)
    return state.replace(momenta=p_new, key=key, heat=state.heat + (k_old - k_new).astype(state.heat.dtype))


def nvt_langevin(energy_fn: Callable, dt: float, kT: float, tau: float = 100.0,
                 remove_com: bool = True):
    """Langevin dynamics with the BAOAB splitting (Leimkuhler & Matthews,
    Appl. Math. Res. Express 2013, 34; JCP 138, 174102 (2013)).

    dt fs, kT eV, tau fs (friction gamma = 1/tau). One step is
    B(dt/2) A(dt/2) O(dt) A(dt/2) B(dt/2) with an exact OU step for O.
    For harmonic potentials the configurational distribution is exact at
    any stable dt (<x^2> = kT/k); the on-step kinetic temperature carries an
    O(dt^2) bias."""
    dt = positive_number("timestep dt", dt, "fs")
    kT = positive_number("kT", kT, "eV")
    tau = positive_number("tau", tau, "fs")
    c1 = math.exp(-dt / tau)
    eaf = _energy_and_forces(energy_fn)

    def step_fn(state: MDState, **kwargs) -> MDState:
        state = momentum_step(state, 0.5 * dt)
        state = position_step(state, 0.5 * dt)
        state = _ou_step(state, c1, kT, remove_com)
        state = position_step(state, 0.5 * dt)
        state = force_step(state, eaf, **kwargs)
        return momentum_step(state, 0.5 * dt)

    return _make_init(energy_fn, kT, remove_com), step_fn


# ---------------------------------------------------------------------------
# Nose-Hoover chains
# ---------------------------------------------------------------------------

def nvt_nose_hoover_chain(energy_fn: Callable, dt: float, kT: float, tau: float = 100.0,
                          remove_com: bool = True, chain_length: int = 3,
                          chain_steps: int = 2, sy_order: int = 3):
    """Nose-Hoover chain NVT (Martyna, Klein & Tuckerman, JCP 97, 2635
    (1992); integrator of Martyna, Tuckerman, Tobias & Klein, Mol. Phys. 87,
    1117 (1996)).

    dt fs, kT eV, tau fs (chain period). Masses Q_1 = n_dof kT tau^2,
    Q_j = kT tau^2 (eV fs^2). One step: chain(dt/2), velocity Verlet,
    chain(dt/2), each chain half step split into ``chain_steps`` x
    Suzuki-Yoshida(``sy_order``) substeps. Conserved: K + U + chain energy.
    Chain velocities start at zero."""
    dt = positive_number("timestep dt", dt, "fs")
    kT = positive_number("kT", kT, "eV")
    tau = positive_number("tau", tau, "fs")
    if int(chain_length) != chain_length or chain_length < 1:
        raise InputError(f"chain_length must be a positive integer, got {chain_length!r}")
    if int(chain_steps) != chain_steps or chain_steps < 1:
        raise InputError(f"chain_steps must be a positive integer, got {chain_steps!r}")
    weights = suzuki_yoshida_weights(sy_order)
    M = int(chain_length)
    eaf = _energy_and_forces(energy_fn)

    def chain_init(n_dof, dtype):
        return nose_hoover_chain_state(M, n_dof, kT, tau)

    def step_fn(state: MDState, **kwargs) -> MDState:
        state = nose_hoover_chain_half_step(state, 0.5 * dt, weights, int(chain_steps))
        state = _velocity_verlet(state, dt, eaf, **kwargs)
        return nose_hoover_chain_half_step(state, 0.5 * dt, weights, int(chain_steps))

    return _make_init(energy_fn, kT, remove_com, chain_init), step_fn


# ---------------------------------------------------------------------------
# CSVR (Bussi-Donadio-Parrinello)
# ---------------------------------------------------------------------------

def _csvr_rescale(state: MDState, c, kT, n_dof, r1, s):
    """Stochastic velocity rescaling over one thermostat interval with
    c = exp(-interval/tau) (:func:`jaxpot.dynamics.thermostats.csvr_scale`,
    Bussi, Donadio & Parrinello, JCP 126, 014101 (2007), eq. (A7)); the
    kinetic energy it removes goes to ``heat``."""
    K = kinetic_energy(state)
    alpha = csvr_scale(K, c, kT, n_dof, r1, s)
    k_after = jnp.where(K > 0, alpha * alpha * K, K)
    p = state.momenta * alpha.astype(state.momenta.dtype)
    heat = state.heat + (K - k_after).astype(state.heat.dtype)
    return state.replace(momenta=p, heat=heat)


def nvt_csvr(energy_fn: Callable, dt: float, kT: float, tau: float = 100.0,
             remove_com: bool = True):
    """Canonical sampling through velocity rescaling (Bussi, Donadio &
    Parrinello, JCP 126, 014101 (2007)).

    dt fs, kT eV, tau fs (relaxation time of the kinetic energy). One step:
    rescale(dt/2), velocity Verlet, rescale(dt/2) (Bussi & Parrinello, PRE
    75, 056707 (2007)). A global rescaling never changes a zero total
    momentum. The kinetic energy must be nonzero to be rescaled."""
    dt = positive_number("timestep dt", dt, "fs")
    kT = positive_number("kT", kT, "eV")
    tau = positive_number("tau", tau, "fs")
    c = math.exp(-0.5 * dt / tau)
    eaf = _energy_and_forces(energy_fn)

    def step_fn(state: MDState, **kwargs) -> MDState:
        n_dof = n_degrees_of_freedom(state.positions.shape[0], remove_com)
        key, sub = jax.random.split(state.key)
        r1, s = csvr_draws(sub, n_dof, (2,), _ACC)
        state = _csvr_rescale(state.replace(key=key), c, kT, n_dof, r1[0], s[0])
        state = _velocity_verlet(state, dt, eaf, **kwargs)
        return _csvr_rescale(state, c, kT, n_dof, r1[1], s[1])

    init = _make_init(energy_fn, kT, remove_com)

    def init_fn(key, positions, masses, velocities=None, **kwargs):
        state = init(key, positions, masses, velocities, **kwargs)
        if n_degrees_of_freedom(state.positions.shape[0], remove_com) < 1:
            raise InputError("CSVR needs at least one degree of freedom")
        return state

    init_fn.__doc__ = init.__doc__
    return init_fn, step_fn


# ---------------------------------------------------------------------------
# Dispatcher and driver
# ---------------------------------------------------------------------------

INTEGRATORS = {
    "none": nve,
    "nve": nve,
    "langevin": nvt_langevin,
    "nose_hoover_chain": nvt_nose_hoover_chain,
    "csvr": nvt_csvr,
}


def make_integrator(name: str, energy_fn: Callable, dt: float, kT: Optional[float],
                    tau: float = 100.0, remove_com: bool = True, **specific):
    """``(init_fn, step_fn)`` for a thermostat name: "none" (NVE velocity
    Verlet), "langevin" (BAOAB), "nose_hoover_chain", "csvr". dt fs, kT eV,
    tau fs; ``specific`` goes to the factory (e.g. chain_length)."""
    if name not in INTEGRATORS:
        raise InputError(f"unknown thermostat {name!r}: use one of "
                         + ", ".join(repr(k) for k in INTEGRATORS if k != "nve"))
    return INTEGRATORS[name](energy_fn, dt, kT, tau=tau, remove_com=remove_com, **specific)


@partial(jax.jit, static_argnums=(0, 2, 3))
def _run(step_fn, state, n_steps, observe, kwargs):
    def body(s, _):
        s = step_fn(s, **kwargs)
        return s, (observe(s) if observe is not None else None)

    return jax.lax.scan(body, state, None, length=n_steps)


def run(step_fn: Callable, state: MDState, n_steps: int, observe: Optional[Callable] = None,
        **kwargs):
    """``n_steps`` steps in one jitted ``lax.scan``; returns the final state
    and ``observe(state)`` after every step stacked along a leading axis
    (None without ``observe``). ``kwargs`` (e.g. a fixed neighbor list) go to
    every step. ``step_fn`` and ``observe`` must be hashable (functions are),
    so repeated calls reuse the compiled loop."""
    n_steps = int(n_steps)
    if n_steps < 1:
        raise InputError(f"n_steps must be a positive integer, got {n_steps}")
    return _run(step_fn, state, n_steps, observe, kwargs)


__all__ = [
    "MDState", "ChainState", "nve", "nvt_langevin", "nvt_nose_hoover_chain", "nvt_csvr",
    "make_integrator", "run", "kinetic_energy", "momenta_kinetic_energy", "temperature",
    "conserved_energy", "chain_energy", "n_degrees_of_freedom", "momentum_step",
    "position_step", "force_step", "maxwell_boltzmann_momenta", "remove_com_momentum",
    "suzuki_yoshida_weights",
]
