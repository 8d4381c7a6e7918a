"""Physics checks of the classical integrators (metal units: eV, A, fs, amu).

References used as outside truths:
- canonical ensemble of harmonic oscillators: <K> = (n_dof/2) kT,
  Var K = (n_dof/2) kT^2, <U> = (n_dof/2) kT;
- BAOAB on a harmonic oscillator (Leimkuhler & Matthews, AMRX 2013, 34):
  <x^2> = kT/k exactly at any stable dt, and the on-step momenta have
  <p^2> = m kT (1 - (omega dt)^2/4);
- velocity Verlet: global energy error O(dt^2) (ratio 4 when dt halves);
- Maxwell-Boltzmann: p ~ N(0, m kT / MVV2E) per component; with the COM
  momentum removed K is Gamma distributed with (3N-3)/2 degrees of freedom.
Statistical tolerances are 4 block-averaged standard errors (plus, where
stated, the known O(dt^2) discretisation bias).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpot  # noqa: F401  (float64)
from jaxpot.dynamics import integrators as I
from jaxpot.dynamics.observables import block_average
from jaxpot.system import InputError
from jaxpot.units import KB, MVV2E

KT300 = KB * 300.0


# ---------------------------------------------------------------------------
# Systems
# ---------------------------------------------------------------------------

def _lj_cluster():
    """13-atom argon icosahedron with a pairwise Lennard-Jones energy (no
    cutoff): anharmonic, interacting, translation invariant."""
    from ase.cluster import Icosahedron

    eps, sig = 0.0104, 3.4
    at = Icosahedron("Ar", 2, latticeconstant=2 ** (1 / 6) * sig * np.sqrt(2))
    x0 = jnp.asarray(at.positions - at.positions.mean(0))
    n = len(at)
    iu = np.triu_indices(n, 1)

    def energy(x, **unused):
        d = x[:, None, :] - x[None, :, :]
        r2 = jnp.sum(d[iu] ** 2, -1)
        s6 = (sig * sig / r2) ** 3
        return jnp.sum(4 * eps * (s6 * s6 - s6))

    return energy, x0, jnp.full((n,), 39.948, dtype=x0.dtype)


def _harmonic_wells(n, periods, mass, seed):
    """n non-interacting atoms, each in an isotropic 3-D harmonic well of its
    own period (fs). k = m omega^2 MVV2E (eV/A^2) since
    m x'' = -k x / MVV2E in metal units. Positions drawn from the canonical
    distribution at 300 K so the runs start in equilibrium."""
    rng = np.random.default_rng(seed)
    omega = 2 * np.pi / np.asarray(periods)
    k = mass * omega ** 2 * MVV2E
    x0 = rng.normal(size=(n, 3)) * np.sqrt(KT300 / k)[:, None]
    kj = jnp.asarray(k)

    def energy(x, **unused):
        return 0.5 * jnp.sum(kj[:, None] * x * x)

    return energy, jnp.asarray(x0), jnp.full((n,), mass), omega


def _observe(s):
    return I.kinetic_energy(s), s.potential_energy, I.conserved_energy(s)


# ---------------------------------------------------------------------------
# Maxwell-Boltzmann sampling
# ---------------------------------------------------------------------------

def test_maxwell_boltzmann_momenta_have_exact_gaussian_variance():
    n = 30000
    masses = jnp.asarray(np.tile([1.008, 15.999, 39.948], n // 3))
    p = I.maxwell_boltzmann_momenta(jax.random.PRNGKey(0), masses, KT300, remove_com=False)
    z = np.asarray(p / jnp.sqrt(masses)[:, None]).ravel()      # ~ N(0, kT/MVV2E)
    var_true = KT300 / MVV2E
    m = z.size
    assert abs(z.mean()) < 4 * np.sqrt(var_true / m)
    assert abs(z.var() - var_true) < 4 * var_true * np.sqrt(2.0 / (m - 1))


def test_maxwell_boltzmann_with_com_removed_samples_3n_minus_3_dof_exactly():
    """K of N = 4 atoms with P = 0 is Gamma((3N-3)/2, kT): mean 4.5 kT and
    variance 4.5 kT^2 (no rescaling to the target temperature)."""
    masses = jnp.asarray([1.0, 2.0, 12.0, 16.0])
    keys = jax.random.split(jax.random.PRNGKey(1), 40000)
    p = jax.vmap(lambda k: I.maxwell_boltzmann_momenta(k, masses, KT300, remove_com=True))(keys)
    assert float(jnp.max(jnp.abs(jnp.sum(p, axis=1)))) < 1e-14
    K = np.asarray(I.momenta_kinetic_energy(p, masses)) / KT300
    nd = I.n_degrees_of_freedom(4, True) / 2
    assert nd == 4.5
    m = K.size
    assert abs(K.mean() - nd) < 4 * np.sqrt(nd / m)
    # Var of the sample variance of a Gamma(a) variable: (mu4 - sigma^4)/m, mu4 = 3a^2 + 6a
    se_var = np.sqrt((3 * nd ** 2 + 6 * nd - nd ** 2) / m)
    assert abs(K.var() - nd) < 4 * se_var


def test_init_draws_velocities_or_uses_given_ones_and_removes_com():
    energy, x0, masses = _lj_cluster()
    init, _ = I.nve(energy, 2.0, KT300)
    init = jax.jit(init)
    v = jnp.ones_like(x0) * 0.01
    s = init(jax.random.PRNGKey(0), x0, masses, velocities=v)
    assert float(jnp.max(jnp.abs(jnp.sum(s.momenta, 0)))) < 1e-14   # uniform drift removed
    assert float(I.kinetic_energy(s)) < 1e-20
    s = init(jax.random.PRNGKey(0), x0, masses)
    assert float(I.kinetic_energy(s)) > 0
    np.testing.assert_allclose(s.forces, -jax.grad(energy)(x0), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# Energy conservation and its dt^2 scaling
# ---------------------------------------------------------------------------

REPLICAS = 64
T_TOTAL = 2000.0   # fs


def _conserved_rms(name, dt):
    """RMS of H(t) - H(0) over a 2 ps run of the LJ cluster at 30 K
    (thermostat tau = 50 fs), over independent replicas (vmapped), plus
    the final states."""
    energy, x0, masses = _lj_cluster()
    init, step = I.make_integrator(name, energy, dt, KB * 30.0, tau=50.0, remove_com=True)
    keys = jax.random.split(jax.random.PRNGKey(7), REPLICAS)
    s0 = jax.vmap(lambda k: init(k, x0, masses))(keys)
    h0 = jax.vmap(I.conserved_energy)(s0)
    vstep = jax.vmap(step)
    s, (K, U, H) = I.run(vstep, s0, int(T_TOTAL / dt), jax.vmap(_observe))
    dev = np.asarray(H) - np.asarray(h0)[None, :]
    return np.sqrt(np.mean(dev ** 2)), np.asarray(K + U), s, s0


@pytest.fixture(scope="module")
def conserved_runs():
    out = {}
    for name in ["none", "langevin", "nose_hoover_chain", "csvr"]:
        out[name] = {dt: _conserved_rms(name, dt) for dt in (4.0, 2.0)}
    return out


@pytest.mark.parametrize("name", ["none", "nose_hoover_chain"])
def test_deterministic_integrators_conserved_energy_error_scales_as_dt_squared(conserved_runs, name):
    """Velocity Verlet (and its Nose-Hoover chain extension) is a
    second-order symplectic/measure-preserving splitting: the conserved
    energy error is C dt^2 + O(dt^4), so halving dt divides it by 4 (the
    O(dt^4) correction is below 5% at these steps)."""
    ratio = conserved_runs[name][4.0][0] / conserved_runs[name][2.0][0]
    assert 3.8 < ratio < 4.2, ratio


@pytest.mark.parametrize("name", ["langevin", "csvr"])
def test_stochastic_thermostats_effective_energy_error_scales_as_dt_squared(conserved_runs, name):
    """K + U + heat (Bussi-Parrinello effective energy) changes only by the
    velocity-Verlet splitting error: O(dt^2) at fixed simulated time. The
    noise makes the error a random walk (Bussi & Parrinello, PRE 75, 056707
    (2007): its growth rate is proportional to dt^2), and changes the
    trajectory between dt and dt/2, so the ratio of the replica-averaged
    RMS errors is 4 only within sampling noise. Single replicas scatter by
    a factor ~2 (heavy-tailed, from close collisions); the ratio over 64
    replicas is reproducible to about 5-8% (checked on disjoint halves), so
    the factor 1.3 is about 4 sigma."""
    rms4, e4, _, _ = conserved_runs[name][4.0]
    rms2, _, _, _ = conserved_runs[name][2.0]
    assert 4.0 / 1.3 < rms4 / rms2 < 4.0 * 1.3, rms4 / rms2
    # and the error is tiny next to the thermal fluctuations of K + U
    assert rms2 < 1e-3 * np.std(e4)


@pytest.mark.parametrize("name", ["none", "langevin", "nose_hoover_chain", "csvr"])
def test_com_momentum_stays_zero_when_removed(conserved_runs, name):
    """Forces of a translation-invariant potential sum to zero; thermostats
    rescale globally or use projected noise, so P = 0 is kept to roundoff."""
    _, _, s, s0 = conserved_runs[name][2.0]
    p_scale = float(jnp.sqrt(jnp.mean(s.momenta ** 2)))
    assert float(jnp.max(jnp.abs(jnp.sum(s.momenta, axis=1)))) < 1e-12 * p_scale * 13
    assert float(jnp.max(jnp.abs(jnp.sum(s0.momenta, axis=1)))) < 1e-12 * p_scale * 13


def test_langevin_without_com_removal_does_move_the_com():
    energy, x0, masses = _lj_cluster()
    init, step = I.nvt_langevin(energy, 4.0, KB * 30.0, tau=200.0, remove_com=False)
    s = init(jax.random.PRNGKey(0), x0, masses)
    s, _ = I.run(step, s, 200)
    p_scale = float(jnp.sqrt(jnp.mean(s.momenta ** 2)))
    assert float(jnp.linalg.norm(jnp.sum(s.momenta, 0))) > 0.1 * p_scale


def test_nose_hoover_heat_equals_chain_energy_change(conserved_runs):
    """In exact MTK dynamics d(chain energy)/dt = -dK/dt|thermostat, so the
    kinetic energy removed (heat) equals the chain-energy change up to the
    O(dt^2) integration error."""
    rms2, e4, s, s0 = conserved_runs["nose_hoover_chain"][2.0]
    dchain = jax.vmap(I.chain_energy)(s.chain) - jax.vmap(I.chain_energy)(s0.chain)
    assert float(jnp.max(jnp.abs(dchain))) > 100 * rms2          # the chain did work
    np.testing.assert_allclose(s.heat, dchain, atol=10 * rms2)


def test_velocity_verlet_float32_keeps_dtype_and_conserves_energy():
    energy, x0, masses = _lj_cluster()
    x0 = x0.astype(jnp.float32)
    init, step = I.nve(energy, 4.0, KB * 30.0)
    s = init(jax.random.PRNGKey(0), x0, masses)
    s, (K, U, H) = I.run(step, s, 500, _observe)
    assert s.positions.dtype == jnp.float32 and s.momenta.dtype == jnp.float32
    assert s.forces.dtype == jnp.float32
    H = np.asarray(H)
    # float32 positions: energy changes at ~1e-7 relative per step plus the
    # dt^2 error (RMS ~ 1e-6 eV at dt = 4 fs in float64, test above)
    assert np.std(H) < 1e-5 + 1e-6 * np.abs(H).max()


# ---------------------------------------------------------------------------
# Canonical sampling of independent harmonic oscillators
# ---------------------------------------------------------------------------

N_OSC = 512
DT_OSC = 1.0
STEPS_OSC = 20000


@pytest.fixture(scope="module")
def oscillators():
    rng = np.random.default_rng(3)
    periods = rng.uniform(100.0, 300.0, N_OSC)   # fs; distinct, so global thermostats mix
    return _harmonic_wells(N_OSC, periods, 10.0, seed=4)


@pytest.mark.parametrize("name", ["langevin", "nose_hoover_chain", "csvr"])
def test_thermostat_samples_canonical_kinetic_and_potential_energy_of_oscillators(oscillators, name):
    """512 atoms in 3-D harmonic wells (n_dof = 1536, no COM removal: the
    wells break translation invariance). Canonical: <K> = <U> = (n_dof/2) kT
    and Var K = (n_dof/2) kT^2. Errors: 4 block-averaged SEMs, plus the
    O((omega dt)^2) bias of the on-step momenta: for BAOAB exactly
    <K_i> = (kT/2)(1 - (omega_i dt)^2/4) per dof and U exact; for the
    velocity-Verlet thermostats the same order, bounded by (omega_max dt)^2/4."""
    energy, x0, masses, omega = oscillators
    init, step = I.make_integrator(name, energy, DT_OSC, KT300, tau=50.0, remove_com=False)
    s = init(jax.random.PRNGKey(11), x0, masses)
    s, (K, U, H) = I.run(step, s, STEPS_OSC, _observe)
    K, U, H = (np.asarray(a) for a in (K, U, H))
    nd = I.n_degrees_of_freedom(N_OSC, remove_com=False)
    assert nd == 3 * N_OSC
    kbar = 0.5 * nd * KT300
    wdt2 = (omega * DT_OSC) ** 2 / 4
    if name == "langevin":
        k_exp, k_bias, u_bias = kbar * (1 - wdt2.mean()), 0.0, 0.0
    else:
        k_exp, k_bias, u_bias = kbar, wdt2.max() * kbar, wdt2.max() * kbar
    mk, sk = block_average(K)
    assert abs(mk - k_exp) < 4 * sk + k_bias, (mk / kbar, sk / kbar)
    mu, su = block_average(U)
    assert abs(mu - kbar) < 4 * su + u_bias, (mu / kbar, su / kbar)
    vk, svk = block_average((K - mk) ** 2)
    var_exp = 0.5 * nd * KT300 ** 2
    assert abs(vk - var_exp) < 4 * svk + 2 * wdt2.max() * var_exp, (vk / var_exp, svk / var_exp)
    # the conserved quantity stays put (Verlet error ~ (omega dt)^2 of the
    # oscillation energy, far below the kT-scale fluctuations of K)
    assert np.std(H) < 0.01 * np.std(K)


def test_baoab_configurational_sampling_of_harmonic_oscillator_is_exact_at_large_dt():
    """BAOAB at omega dt = 1.5 (stability limit 2): <U> = (n/2) kT exactly
    (<x^2> = kT/k) while the on-step kinetic energy is low by the factor
    1 - (omega dt)^2/4 = 0.4375 (Leimkuhler & Matthews 2013)."""
    n = 256
    period = 20.0
    energy, x0, masses, omega = _harmonic_wells(n, np.full(n, period), 4.0, seed=5)
    dt = 1.5 / omega[0]
    init, step = I.nvt_langevin(energy, dt, KT300, tau=10.0, remove_com=False)
    s = init(jax.random.PRNGKey(2), x0, masses)
    s, (K, U, H) = I.run(step, s, 20000, _observe)
    kbar = 1.5 * n * KT300
    mu, su = block_average(np.asarray(U))
    assert abs(mu - kbar) < 4 * su, (mu / kbar, su / kbar)
    assert su < 0.005 * kbar                         # the check has teeth
    mk, sk = block_average(np.asarray(K))
    assert abs(mk - kbar * (1 - 1.5 ** 2 / 4)) < 4 * sk, mk / kbar


# ---------------------------------------------------------------------------
# Interface
# ---------------------------------------------------------------------------

def test_make_integrator_dispatch_and_input_errors():
    energy, x0, masses = _lj_cluster()
    for name in ["none", "langevin", "nose_hoover_chain", "csvr"]:
        init, step = I.make_integrator(name, energy, 1.0, KT300, 100.0, True)
        assert callable(init) and callable(step)
    with pytest.raises(InputError, match="unknown thermostat"):
        I.make_integrator("berendsen", energy, 1.0, KT300, 100.0, True)
    with pytest.raises(InputError, match="timestep"):
        I.nvt_langevin(energy, -1.0, KT300)
    with pytest.raises(InputError, match="kT"):
        I.nvt_csvr(energy, 1.0, 0.0)
    with pytest.raises(InputError, match="tau"):
        I.nvt_nose_hoover_chain(energy, 1.0, KT300, tau=0.0)
    init, _ = I.nvt_langevin(energy, 1.0, KT300)
    with pytest.raises(InputError, match="masses"):
        init(jax.random.PRNGKey(0), x0, masses[:-1])
    with pytest.raises(InputError, match="masses"):
        init(jax.random.PRNGKey(0), x0, -masses)
    with pytest.raises(InputError, match="positions"):
        init(jax.random.PRNGKey(0), x0[:, :2], masses)
    init, _ = I.nve(energy, 1.0)
    with pytest.raises(InputError, match="velocities or a temperature"):
        init(jax.random.PRNGKey(0), x0, masses)
    assert I.n_degrees_of_freedom(13, True) == 36 and I.n_degrees_of_freedom(13, False) == 39


def test_temperature_and_kinetic_energy_units():
    """K = sum p^2/(2m) * MVV2E: one argon atom at v = 0.01 A/fs has
    K = 0.5 * 39.948 * 1e-4 * 103.642697 eV; T = 2K/(n_dof kB)."""
    energy, x0, masses = _lj_cluster()
    init, _ = I.nve(energy, 1.0, remove_com=False)
    v = jnp.zeros_like(x0).at[0, 0].set(0.01)
    s = init(jax.random.PRNGKey(0), x0, masses, velocities=v)
    k = 0.5 * 39.948 * 1e-4 * 103.642697
    np.testing.assert_allclose(float(I.kinetic_energy(s)), k, rtol=1e-12)
    np.testing.assert_allclose(float(I.temperature(s, 39)), 2 * k / (39 * 8.617333262e-5), rtol=1e-12)
