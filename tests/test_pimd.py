"""Ring-polymer PIMD core: normal modes, free ring-polymer propagation,
thermostats and path-integral estimators, checked against analytic results.

Statistical tolerances: estimator time series are block-averaged (blocks much
longer than the correlation times set by tau = 10 fs and PILE's critical
damping of the internal modes) and compared with |mean - ref| < 4 SEM.
Time-step (discretisation) allowances are *computed*, not guessed: for a
harmonic potential each ring-polymer normal mode is an independent linear
Gaussian Markov chain under the splitting, so the integrator's exact
stationary covariance solves a discrete Lyapunov equation
(Sigma = M Sigma M^T + Q). :func:`_discrete_harmonic_reference` builds M and
Q from the splitting written out as 2x2 matrices, independently of the code
under test; the allowance is |discrete - continuum|.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm, solve_discrete_lyapunov

import jaxpot  # noqa: F401  (enables float64)
from jaxpot.dynamics import pimd as pm
from jaxpot.system import InputError
from jaxpot.units import HBAR, KB, MVV2E

T = 300.0
KT = KB * T
M_H = 1.008
# Isotropic oscillator with beta hbar w = 8 at 300 K (period ~20 fs).
W_HO = 8.0 * KT / HBAR

try:  # shared helper, written concurrently by another engineer
    from jaxpot.dynamics.observables import block_average as _shared_block_average
except Exception:  # pragma: no cover - depends on the other module's progress
    _shared_block_average = None


def _fixed_block_average(x, n_blocks=40):
    """Mean and standard error of a correlated series from n_blocks equal
    blocks (blocks long compared with the correlation time); fallback."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x) // n_blocks * n_blocks
    b = x[:n].reshape(n_blocks, -1).mean(axis=1)
    return b.mean(), b.std(ddof=1) / np.sqrt(n_blocks)


def _block_average(x):
    """(mean, sem): automatic Flyvbjerg-Petersen blocking from
    jaxpot.dynamics.observables when available, else 40 fixed blocks."""
    if _shared_block_average is not None:
        return _shared_block_average(np.asarray(x, dtype=np.float64))
    return _fixed_block_average(x)


# --------------------------------------------------------------------------
# analytic references
# --------------------------------------------------------------------------

def _wk(P, kT=KT):
    return 2.0 * (P * kT / HBAR) * np.sin(np.arange(P) * np.pi / P)


def _exact_harmonic_energy(P, w=W_HO, kT=KT):
    """<K>_P = <V>_P per atom, eV: (3 kT/2) sum_k w^2 / (w^2 + w_k^2)."""
    wk = _wk(P, kT)
    return 1.5 * kT * np.sum(w ** 2 / (w ** 2 + wk ** 2))


def _quantum_harmonic_energy(w=W_HO, kT=KT):
    """P -> infinity: (3 hbar w / 4) coth(beta hbar w / 2), eV per atom."""
    x = HBAR * w / kT
    return 0.75 * HBAR * w / np.tanh(0.5 * x)


def _discrete_harmonic_reference(P, dt, splitting, tau, propagator="exact", lam=0.5,
                                 w=W_HO, m=M_H, kT=KT):
    """Exact stationary <V>, <K_prim>, <K_cv> per atom (eV) of the *discrete*
    integrator for V = m w^2 |q|^2 MVV2E / 2, from per-mode 2x2 linear maps
    on (q_k, p_k): B = kick by -m w^2 q, A = free rotation at w_k (exact:
    angle w_k h; Cayley: 2 arctan(w_k dt/2) per full step, half of it per
    half step), O = OU with c1 = exp(-gamma h_O), noise m P kT (1-c1^2)/MVV2E."""
    wk = _wk(P, kT)
    q2 = np.zeros(P)
    for k in range(P):
        gamma = 1.0 / tau if k == 0 else 2.0 * lam * wk[k]
        h_o, f = (dt, 0.5) if splitting == "baoab" else (0.5 * dt, 1.0)
        th = f * wk[k] * dt if propagator == "exact" else f * 2.0 * np.arctan(0.5 * wk[k] * dt)
        s = np.sin(th) / wk[k] if wk[k] > 0 else f * dt
        A = np.array([[np.cos(th), s / m], [-m * wk[k] * np.sin(th), np.cos(th)]])
        B = np.array([[1.0, 0.0], [-m * w ** 2 * 0.5 * dt, 1.0]])
        c1 = np.exp(-gamma * h_o)
        O = (np.diag([1.0, c1]), np.diag([0.0, m * P * kT / MVV2E * (1.0 - c1 ** 2)]))
        ops = [B, A, O, A, B] if splitting == "baoab" else [O, B, A, B, O]
        Mk, Qk = np.eye(2), np.zeros((2, 2))
        for op in ops:
            G, Qo = op if isinstance(op, tuple) else (op, np.zeros((2, 2)))
            Mk, Qk = G @ Mk, G @ Qk @ G.T + Qo
        q2[k] = solve_discrete_lyapunov(Mk, Qk)[0, 0]
    v = 1.5 * m * w ** 2 * MVV2E * q2.sum() / P
    k_prim = 1.5 * P * kT - 1.5 * m * MVV2E * np.sum(wk ** 2 * q2) / P
    k_cv = 1.5 * kT + 1.5 * m * w ** 2 * MVV2E * q2[1:].sum() / P
    return {"potential": v, "kinetic_primitive": k_prim, "kinetic_cv": k_cv}


def _harmonic_energy(x):
    """N independent isotropic oscillators (replicas), eV."""
    return 0.5 * M_H * W_HO ** 2 * MVV2E * jnp.sum(x ** 2)


def _sample(step_fn, state, n_equil, n_steps, keys, scale=None):
    """Run n_equil + n_steps in one jit; return estimator series for keys."""
    scale = scale or {}

    @partial(jax.jit, static_argnums=1)
    def run(s, n):
        def body(s, _):
            s = step_fn(s)
            e = pm.estimators(s)
            return s, {k: e[k] * scale.get(k, 1.0) for k in keys}
        return jax.lax.scan(body, s, None, length=n)

    state, _ = run(state, n_equil)
    state, obs = run(state, n_steps)
    return state, {k: np.asarray(v) for k, v in obs.items()}


# --------------------------------------------------------------------------
# normal modes and free ring polymer
# --------------------------------------------------------------------------

@pytest.mark.parametrize("P", [1, 2, 3, 4, 5, 8, 9, 16])
def test_normal_mode_matrix_is_orthogonal_and_diagonalises_ring_springs(P):
    C = pm.normal_mode_matrix(P)
    np.testing.assert_allclose(C.T @ C, np.eye(P), atol=1e-13)
    # spring matrix w_P^2 (2 - shift - shift^-1) -> diag(w_k^2), w_k = 2 w_P sin(k pi/P)
    w_p = P * KT / HBAR
    L = 2 * np.eye(P) - np.roll(np.eye(P), 1, 0) - np.roll(np.eye(P), -1, 0)
    wk = np.asarray(pm.normal_mode_frequencies(P, KT))
    np.testing.assert_allclose(C.T @ (w_p ** 2 * L) @ C, np.diag(wk ** 2), atol=1e-12 * w_p ** 2)
    np.testing.assert_allclose(C[:, 0], 1 / np.sqrt(P))   # centroid mode


@pytest.mark.parametrize("P", [1, 2, 3, 6, 7, 32, 65, 128])
def test_fft_normal_mode_transform_matches_matrix(P):
    x = jnp.asarray(np.random.default_rng(P).normal(size=(P, 4, 3)))
    a = pm.to_normal_modes(x, "matrix")
    b = pm.to_normal_modes(x, "fft")
    np.testing.assert_allclose(b, a, atol=1e-12 * np.sqrt(P))
    np.testing.assert_allclose(pm.from_normal_modes(b, "fft"), x, atol=1e-12 * np.sqrt(P))
    np.testing.assert_allclose(pm.from_normal_modes(a, "matrix"), x, atol=1e-12 * np.sqrt(P))
    # centroid mode is sqrt(P) * bead average
    np.testing.assert_allclose(a[0], np.sqrt(P) * np.mean(np.asarray(x), axis=0), atol=1e-12 * P)


def _free_rp_generator(P, masses, kT):
    """Linear ODE z' = G z for z = (q, p) of a free ring polymer in Cartesian
    bead coordinates (one atom, one Cartesian component per mass): dq/dt = p/m,
    dp/dt = -m w_P^2 (2 q_j - q_j+1 - q_j-1)."""
    w_p = P * kT / HBAR
    L = 2 * np.eye(P) - np.roll(np.eye(P), 1, 0) - np.roll(np.eye(P), -1, 0)
    return np.block([[np.zeros((P, P)), np.eye(P) / masses],
                     [-masses * w_p ** 2 * L, np.zeros((P, P))]])


def test_free_ring_polymer_exact_propagation_matches_analytic_solution():
    P, m, dt = 6, 2.0, 3.0
    rng = np.random.default_rng(0)
    q0 = rng.normal(size=(P, 1, 3)) * 0.1
    p0 = rng.normal(size=(P, 1, 3)) * 0.1
    masses = jnp.asarray([m])
    G = _free_rp_generator(P, m, KT)
    U = expm(G * dt)
    z0 = np.concatenate([q0[:, 0, :], p0[:, 0, :]], axis=0)   # (2P, 3)
    z1 = U @ z0
    for method in ("matrix", "fft"):
        q1, p1 = pm.free_ring_polymer_step(jnp.asarray(q0), jnp.asarray(p0), masses, KT, dt,
                                           method=method)
        np.testing.assert_allclose(q1[:, 0, :], z1[:P], atol=1e-12)
        np.testing.assert_allclose(p1[:, 0, :], z1[P:], atol=1e-12)
    # two half steps equal one full step
    qh, ph = pm.free_ring_polymer_step(jnp.asarray(q0), jnp.asarray(p0), masses, KT, dt, fraction=0.5)
    qh, ph = pm.free_ring_polymer_step(qh, ph, masses, KT, dt, fraction=0.5)
    np.testing.assert_allclose(qh[:, 0, :], z1[:P], atol=1e-12)


@pytest.mark.parametrize("propagator", ["exact", "cayley"])
def test_free_ring_polymer_conserves_spring_plus_kinetic_energy(propagator):
    # w_max dt = 2 w_P dt ~ 15 at P = 16: far beyond the exact propagator's
    # resonance region, yet both are rotations in (m w q, p) per mode, so
    # the free ring-polymer energy is conserved to rounding at any dt.
    P, dt = 16, 10.0
    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.normal(size=(P, 3, 3)) * 0.05)
    p = jnp.asarray(rng.normal(size=(P, 3, 3)) * 0.1)
    masses = jnp.asarray([1.0, 2.0, 16.0])

    def energy(q, p):
        return float(pm._kinetic(p, masses) + P * pm.spring_energy(q, masses, KT))

    e0 = energy(q, p)
    step = jax.jit(lambda q, p: pm.free_ring_polymer_step(q, p, masses, KT, dt, propagator=propagator))
    for _ in range(200):
        q, p = step(q, p)
    assert abs(energy(q, p) - e0) < 1e-11 * e0


def test_cayley_free_ring_polymer_is_close_to_exact_and_second_order():
    # cay(dt L) differs from exp(dt L) by O(dt^3) per step (angle
    # 2 arctan(w dt/2) = w dt - (w dt)^3/12 + ...), so halving dt cuts the
    # one-step error ~8x; at w_max dt = 0.1 the angle error is ~1e-4 rad.
    P = 8
    rng = np.random.default_rng(2)
    q0 = jnp.asarray(rng.normal(size=(P, 2, 3)) * 0.05)
    p0 = jnp.asarray(rng.normal(size=(P, 2, 3)) * 0.1)
    masses = jnp.asarray([1.0, 4.0])
    w_max = 2 * P * KT / HBAR
    errs = []
    for dt in (0.1 / w_max, 0.05 / w_max):
        qe, pe = pm.free_ring_polymer_step(q0, p0, masses, KT, dt)
        qc, pc = pm.free_ring_polymer_step(q0, p0, masses, KT, dt, propagator="cayley")
        errs.append(float(jnp.max(jnp.abs(qc - qe))))
        assert errs[-1] < 1e-3 * float(jnp.max(jnp.abs(q0)))
    assert 6.0 < errs[0] / errs[1] < 10.0
    # the sqrt-Cayley half step squared is the Cayley full step
    dt = 3.0
    qa, pa = pm.free_ring_polymer_step(q0, p0, masses, KT, dt, propagator="cayley", fraction=0.5)
    qa, pa = pm.free_ring_polymer_step(qa, pa, masses, KT, dt, propagator="cayley", fraction=0.5)
    qb, pb = pm.free_ring_polymer_step(q0, p0, masses, KT, dt, propagator="cayley")
    np.testing.assert_allclose(qa, qb, atol=1e-12)
    np.testing.assert_allclose(pa, pb, atol=1e-12)
    # and it equals the Cayley transform (1 - dt G/2)^-1 (1 + dt G/2)
    G = _free_rp_generator(P, 1.0, KT)
    I = np.eye(2 * P)
    cay = np.linalg.solve(I - 0.5 * dt * G, I + 0.5 * dt * G)
    z = cay @ np.concatenate([np.asarray(q0)[:, 0, :], np.asarray(p0)[:, 0, :]])
    np.testing.assert_allclose(qb[:, 0, :], z[:P], atol=1e-12)
    np.testing.assert_allclose(pb[:, 0, :], z[P:], atol=1e-12)


# --------------------------------------------------------------------------
# harmonic oscillator: estimators against exact finite-P results
# --------------------------------------------------------------------------

def _run_harmonic(P, dt, splitting="baoab", propagator="exact", n_atoms=32, n_steps=40_000,
                  seed=0):
    init_fn, step_fn = pm.pimd(_harmonic_energy, dt, KT, P, tau=10.0, splitting=splitting,
                               propagator=propagator, sample_internal_modes=True)
    state = init_fn(jax.random.PRNGKey(seed), jnp.zeros((n_atoms, 3)), jnp.full((n_atoms,), M_H))
    keys = ("potential", "kinetic_primitive", "kinetic_cv")
    _, obs = _sample(step_fn, state, 1000, n_steps, keys, scale={k: 1.0 / n_atoms for k in keys})
    return obs


@pytest.mark.parametrize("P", [1, 4, 16])
def test_harmonic_oscillator_estimators_match_exact_finite_P_result(P):
    dt = 0.5
    obs = _run_harmonic(P, dt, n_steps=40_000 if P < 16 else 20_000)
    exact = _exact_harmonic_energy(P)
    discrete = _discrete_harmonic_reference(P, dt, "baoab", 10.0)
    for name, series in obs.items():
        mean, sem = _block_average(series)
        allowance = abs(discrete[name] - exact)        # dt error of BAOAB, computed
        assert allowance < 0.01 * exact                 # and small at w dt = 0.16
        tol = 4 * sem + 1e-12
        assert abs(mean - discrete[name]) < tol, (name, mean, sem, discrete[name])
        assert abs(mean - exact) < tol + allowance, (name, mean, sem, exact)


def test_exact_finite_P_harmonic_energy_tends_to_quantum_result():
    # The P-bead error is O(1/P^2): sum_k w^2/(w^2+w_k^2) -> coth expansion.
    q = _quantum_harmonic_energy()
    errs = np.array([abs(_exact_harmonic_energy(P) - q) for P in (16, 32, 64, 128)])
    assert np.all(np.diff(errs) < 0)
    np.testing.assert_allclose(errs[:-1] / errs[1:], 4.0, rtol=0.05)
    assert errs[-1] < (8.0 / 128) ** 2 / 6 * q     # ~ (beta hbar w / P)^2 / 12, relative
    assert abs(_exact_harmonic_energy(1) - 1.5 * KT) < 1e-15   # classical limit


def test_bcocb_cayley_samples_harmonic_ring_polymer_exactly():
    # Korol et al. JCP 152, 104102 (2020): BAOAB with sqrt-Cayley half steps
    # (BCOCB) samples the harmonic ring polymer's configurations exactly
    # for any stable dt -- the discrete reference shows it, the MD agrees.
    P, dt = 16, 0.5
    for name, v in _discrete_harmonic_reference(P, dt, "baoab", 10.0, "cayley").items():
        assert abs(v - _exact_harmonic_energy(P)) < 1e-12
    obs = _run_harmonic(P, dt, propagator="cayley", n_steps=20_000, seed=3)
    exact = _exact_harmonic_energy(P)
    for name, series in obs.items():
        mean, sem = _block_average(series)
        assert abs(mean - exact) < 4 * sem, (name, mean, sem, exact)


@pytest.mark.slow
@pytest.mark.parametrize("propagator", ["exact", "cayley"])
def test_harmonic_oscillator_estimators_converge_to_quantum_result_P_1_to_64(propagator):
    dt = 0.25
    q = _quantum_harmonic_energy()
    for P in (1, 2, 4, 8, 16, 32, 64):
        obs = _run_harmonic(P, dt, propagator=propagator, n_steps=40_000, seed=P)
        exact = _exact_harmonic_energy(P)
        discrete = _discrete_harmonic_reference(P, dt, "baoab", 10.0, propagator)
        for name, series in obs.items():
            mean, sem = _block_average(series)
            assert abs(mean - discrete[name]) < 4 * sem + 1e-12, (P, name, mean, sem, discrete[name])
            assert abs(mean - exact) < 4 * sem + abs(discrete[name] - exact) + 1e-12
        if P == 64:
            # |exact_64 - quantum| = 0.2%; the virial estimator's mean is there too
            mean, sem = _block_average(obs["kinetic_cv"])
            assert abs(mean - q) < 4 * sem + abs(exact - q) + abs(discrete["kinetic_cv"] - exact)
            assert abs(exact - q) < 0.003 * q


@pytest.mark.slow
def test_obabo_biases_primitive_estimator_low_for_stiff_oscillator_and_baoab_does_not():
    # P = 32, beta hbar w = 8, dt = 0.5 fs: the stiff internal modes
    # (w_max dt = 1.26) make OBABO's primitive kinetic energy ~6% low
    # (i-PI shows the same); BAOAB's bias is ~1%, BCOCB's zero.
    P, dt = 32, 0.5
    exact = _exact_harmonic_energy(P)
    results = {}
    for splitting, propagator in (("obabo", "exact"), ("baoab", "exact"), ("baoab", "cayley")):
        obs = _run_harmonic(P, dt, splitting, propagator, n_steps=20_000, seed=7)
        mean, sem = _block_average(obs["kinetic_primitive"])
        ref = _discrete_harmonic_reference(P, dt, splitting, 10.0, propagator)["kinetic_primitive"]
        assert abs(mean - ref) < 4 * sem, (splitting, propagator, mean, sem, ref)
        results[(splitting, propagator)] = (mean - exact) / exact, sem / exact
    bias, sem = results[("obabo", "exact")]
    assert bias < -0.04 and bias + 4 * sem < -0.03
    bias, sem = results[("baoab", "exact")]
    assert abs(bias) < 0.02
    bias, sem = results[("baoab", "cayley")]
    assert abs(bias) < 4 * sem


# --------------------------------------------------------------------------
# free particle
# --------------------------------------------------------------------------

def test_free_particle_estimators_give_classical_kinetic_energy_and_gyration_radius():
    # V = 0: K = 3/2 kT per atom for any P; both estimators. The internal
    # modes are free oscillators (A and O steps exact), so the sampled
    # <Rg^2> = 3 kT/(m MVV2E) sum_{k>=1} 1/w_k^2 with no dt error.
    P, N, dt = 8, 32, 1.0
    init_fn, step_fn = pm.pimd(lambda x: 0.0 * jnp.sum(x), dt, KT, P, tau=10.0)
    masses = jnp.full((N,), M_H)
    state = init_fn(jax.random.PRNGKey(1), jnp.zeros((N, 3)), masses)

    def rg2(s):
        return jnp.mean(pm.estimators(s)["radius_of_gyration"] ** 2)

    @jax.jit
    def run(s):
        def body(s, _):
            s = step_fn(s)
            e = pm.estimators(s)
            return s, (e["kinetic_primitive"] / N, e["kinetic_cv"] / N,
                       jnp.mean(e["radius_of_gyration"] ** 2), e["centroid_temperature"])
        return jax.lax.scan(body, s, None, length=20_000)

    _, (kp, kcv, r2, tc) = run(run(state)[0])
    np.testing.assert_allclose(kcv, 1.5 * KT, rtol=1e-12)
    mean, sem = _block_average(kp)
    assert abs(mean - 1.5 * KT) < 4 * sem
    wk = _wk(P)
    rg2_exact = 3 * KT / (M_H * MVV2E) * np.sum(1 / wk[1:] ** 2)
    mean, sem = _block_average(r2)
    assert abs(mean - rg2_exact) < 4 * sem
    mean, sem = _block_average(tc)
    assert abs(mean - T) < 4 * sem


def test_centroid_virial_pressure_of_ideal_gas_is_NkT_over_V():
    P, N, V = 4, 10, 1000.0
    init_fn, _ = pm.pimd(lambda x: 0.0 * jnp.sum(x), 1.0, KT, P)
    state = init_fn(jax.random.PRNGKey(0), jnp.zeros((N, 3)), jnp.full((N,), 4.0))
    e = pm.estimators(state, virial=jnp.zeros((P, 3, 3)), volume=V)
    np.testing.assert_allclose(e["pressure_cv"], N * KT / V, rtol=1e-12)
    with pytest.raises(InputError, match="volume"):
        pm.estimators(state, virial=jnp.zeros((P, 3, 3)))


# --------------------------------------------------------------------------
# anharmonic system: NVE conservation and thermostat temperatures
# --------------------------------------------------------------------------

def _anharmonic_energy(x, scale=1.0):
    """Independent anharmonic wells: V = a r^2 + b r^4 per atom (eV, A);
    the well is soft enough that beads spread, stiff enough to couple modes."""
    r2 = jnp.sum(x ** 2, axis=-1)
    return scale * jnp.sum(2.0 * r2 + 4.0 * r2 ** 2)


@pytest.mark.parametrize("propagator", ["exact", "cayley"])
def test_nve_ring_polymer_conserves_H_P_with_second_order_error(propagator):
    P, N = 8, 4
    masses = jnp.full((N,), M_H)
    x0 = jnp.asarray(np.random.default_rng(4).normal(size=(N, 3)) * 0.1)
    fluct = []
    for dt in (0.2, 0.1):
        init_fn, step_fn = pm.pimd(_anharmonic_energy, dt, KT, P, thermostat="none",
                                   propagator=propagator, sample_internal_modes=True)
        state = init_fn(jax.random.PRNGKey(5), x0, masses)
        _, obs = _sample(step_fn, state, 0, int(400 / dt), ("conserved", "hamiltonian", "potential"))
        assert np.all(obs["conserved"] == obs["hamiltonian"] / P)   # no heat in NVE
        h = obs["hamiltonian"]
        fluct.append(np.std(h - h[0]))
        # the error is a bounded oscillation (symplectic), small against the
        # energy the beads exchange with the potential (w dt ~ 0.05 here)
        assert fluct[-1] < 3e-3 * np.std(obs["potential"] * P)
        assert abs(h[-1] - h[0]) < 4 * fluct[-1]
    # splitting error of a symmetric second-order method: ~ dt^2
    assert 3.0 < fluct[0] / fluct[1] < 5.0


@pytest.mark.parametrize("thermostat,splitting", [("pile_l", "baoab"), ("pile_g", "baoab"),
                                                  ("langevin", "obabo"), ("pile_l", "obabo")])
def test_thermostatted_ring_polymer_samples_centroid_temperature(thermostat, splitting):
    # The centroid is a classical degree of freedom: <T_c> = T exactly for
    # any potential (its frequency here, ~0.2/fs, gives a negligible dt
    # bias at dt = 0.5 fs). With OBABO the momenta are read right after an
    # exact O step, so the bead temperature is unbiased too; BAOAB's
    # end-of-step momenta carry an O(dt^2) bias in the stiff internal modes
    # (measured ~0.3% at dt = 0.5 fs), so it is not checked there.
    P, N, dt = 8, 16, 0.5
    init_fn, step_fn = pm.pimd(_anharmonic_energy, dt, KT, P, thermostat=thermostat, tau=10.0,
                               splitting=splitting)
    state = init_fn(jax.random.PRNGKey(6), jnp.zeros((N, 3)), jnp.full((N,), M_H))
    _, obs = _sample(step_fn, state, 1000, 20_000, ("centroid_temperature", "temperature"))
    keys = ("centroid_temperature", "temperature") if splitting == "obabo" else ("centroid_temperature",)
    for key in keys:
        mean, sem = _block_average(obs[key])
        assert abs(mean - T) < 4 * sem, (key, mean, sem)


def test_conserved_quantity_books_thermostat_heat():
    # H_P + heat is conserved up to the integrator's error: its spread is
    # tiny against the heat the PILE-L thermostat exchanges, and it shrinks
    # between 4x (bounded O(dt^2) shadow-energy error) and 8x (O(dt^3) local
    # errors that do not cancel) when dt halves.
    P, N = 8, 8
    spread = []
    for dt in (0.5, 0.25):
        init_fn, step_fn = pm.pimd(_anharmonic_energy, dt, KT, P, thermostat="pile_l", tau=10.0)
        state = init_fn(jax.random.PRNGKey(6), jnp.zeros((N, 3)), jnp.full((N,), M_H))
        _, obs = _sample(step_fn, state, 0, int(2000 / dt), ("conserved", "hamiltonian"))
        conserved = obs["conserved"] * P
        heat = obs["hamiltonian"] - conserved
        spread.append(np.std(conserved))
        assert spread[-1] < 0.01 * np.ptp(heat)
    assert 3.0 < spread[0] / spread[1] < 9.0


def _pair_energy(x):
    """Translation-invariant soft pair repulsion plus a weak bond-like
    attraction between all pairs, eV (forces sum to zero)."""
    d = x[:, None, :] - x[None, :, :]
    r2 = jnp.sum(d ** 2, axis=-1)
    return 0.5 * jnp.sum(jnp.exp(-r2) + 0.05 * r2)


@pytest.mark.parametrize("thermostat", ["pile_l", "pile_g", "langevin"])
def test_remove_com_keeps_total_momentum_zero(thermostat):
    P, N = 4, 6
    init_fn, step_fn = pm.pimd(_pair_energy, 0.5, KT, P, thermostat=thermostat, tau=10.0,
                               remove_com=True)
    x0 = jnp.asarray(np.random.default_rng(0).normal(size=(N, 3)))
    state = init_fn(jax.random.PRNGKey(0), x0, jnp.arange(1.0, N + 1))
    np.testing.assert_allclose(jnp.sum(state.momenta, axis=(0, 1)), 0.0, atol=1e-12)
    state = jax.jit(lambda s: jax.lax.fori_loop(0, 100, lambda i, s: step_fn(s), s))(state)
    np.testing.assert_allclose(jnp.sum(state.momenta, axis=(0, 1)), 0.0, atol=1e-12)


def test_trpmd_leaves_centroid_of_harmonic_well_unthermostatted():
    # centroid_thermostat=False: for a harmonic well the centroid decouples
    # from the internal modes, so its energy is conserved by BAOAB up to
    # O(dt^2) bounded fluctuations while the internal modes are thermostatted.
    P, N, dt = 8, 4, 0.25
    init_fn, step_fn = pm.pimd(_harmonic_energy, dt, KT, P, thermostat="pile_l",
                               centroid_thermostat=False)
    masses = jnp.full((N,), M_H)
    state = init_fn(jax.random.PRNGKey(2), jnp.zeros((N, 3)) + 0.05, masses)

    def centroid_energy(s):
        qc, pc = pm.centroid(s), jnp.mean(s.momenta, 0)
        return jnp.sum(pc ** 2 / (2 * masses[:, None])) * MVV2E + _harmonic_energy(qc)

    e0 = float(centroid_energy(state))
    def body(s, _):
        s = step_fn(s)
        return s, centroid_energy(s)

    final, ec = jax.jit(lambda s: jax.lax.scan(body, s, None, length=2000))(state)
    assert np.max(np.abs(np.asarray(ec) - e0)) < 0.01 * e0
    assert abs(float(final.heat)) > 0.0     # the internal modes did exchange heat


# --------------------------------------------------------------------------
# interface
# --------------------------------------------------------------------------

def test_keyword_arguments_reach_every_bead_and_kT_can_change():
    P, N = 4, 3
    init_fn, step_fn = pm.pimd(_anharmonic_energy, 0.5, KT, P)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(P, N, 3)) * 0.1)
    s1 = init_fn(jax.random.PRNGKey(0), x, jnp.ones(N))
    s2 = init_fn(jax.random.PRNGKey(0), x, jnp.ones(N), scale=2.0)
    np.testing.assert_allclose(s2.forces, 2 * s1.forces, rtol=1e-12)
    np.testing.assert_allclose(s2.energies, 2 * s1.energies, rtol=1e-12)
    s3 = step_fn(s1, scale=2.0, kT=2 * KT)
    assert float(s3.kT) == pytest.approx(2 * KT)
    np.testing.assert_allclose(s3.forces, -2 * jax.vmap(jax.grad(_anharmonic_energy))(s3.positions),
                               rtol=1e-12)


def test_float32_state_stays_float32():
    P, N = 4, 3
    init_fn, step_fn = pm.pimd(_anharmonic_energy, 0.5, KT, P, thermostat="pile_g")
    state = init_fn(jax.random.PRNGKey(0), jnp.zeros((N, 3), jnp.float32), jnp.ones(N, jnp.float32))
    state = jax.jit(lambda s: jax.lax.fori_loop(0, 50, lambda i, s: step_fn(s), s))(state)
    for leaf in (state.positions, state.momenta, state.forces):
        assert leaf.dtype == jnp.float32
    assert all(np.all(np.isfinite(np.asarray(v))) for v in pm.estimators(state).values())


@pytest.mark.parametrize("kwargs,match", [
    ({"thermostat": "nose"}, "thermostat"),
    ({"splitting": "abc"}, "splitting"),
    ({"propagator": "rk4"}, "propagator"),
    ({"tau": -1.0}, "tau"),
    ({"nm_method": "dct"}, "normal-mode"),
])
def test_bad_options_raise_input_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        pm.pimd(_anharmonic_energy, 0.5, KT, 4, **kwargs)


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="dt"):
        pm.pimd(_anharmonic_energy, 0.0, KT, 4)
    with pytest.raises(InputError, match="kT"):
        pm.pimd(_anharmonic_energy, 0.5, -KT, 4)
    with pytest.raises(InputError, match="n_beads"):
        pm.pimd(_anharmonic_energy, 0.5, KT, 0)
    init_fn, _ = pm.pimd(_anharmonic_energy, 0.5, KT, 4)
    key = jax.random.PRNGKey(0)
    with pytest.raises(InputError, match="masses"):
        init_fn(key, jnp.zeros((3, 3)), jnp.ones(2))
    with pytest.raises(InputError, match="masses"):
        init_fn(key, jnp.zeros((3, 3)), jnp.array([1.0, -1.0, 1.0]))
    with pytest.raises(InputError, match="P=4"):
        init_fn(key, jnp.zeros((2, 3, 3)), jnp.ones(3))
    with pytest.raises(InputError, match="shape"):
        init_fn(key, jnp.zeros((3, 2)), jnp.ones(3))


# --------------------------------------------------------------------------
# distribution
# --------------------------------------------------------------------------

_SHARDING_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    import jaxpot
    from jax.sharding import Mesh
    from jaxpot.dynamics import pimd as pm
    from jaxpot.units import KB
    assert len(jax.devices()) == 4, jax.devices()

    def energy(x):
        r2 = jnp.sum(x ** 2, axis=-1)
        d = x[:, None, :] - x[None, :, :]
        return jnp.sum(2.0 * r2 + 4.0 * r2 ** 2) + 0.1 * jnp.sum(jnp.exp(-jnp.sum(d ** 2, -1)))

    P, N, kT = 8, 5, KB * 300.0
    masses = jnp.linspace(1.0, 16.0, N)
    x0 = jnp.asarray(np.random.default_rng(0).normal(size=(N, 3)) * 0.2)
    out = {}
    for thermostat, nm_method in (("pile_g", "fft"),):
        init_fn, step_fn = pm.pimd(energy, 0.5, kT, P, thermostat=thermostat, tau=10.0,
                                   nm_method=nm_method, sample_internal_modes=True)
        run = jax.jit(lambda s: jax.lax.fori_loop(0, 50, lambda i, s: step_fn(s), s))
        state = init_fn(jax.random.PRNGKey(1), x0, masses)
        ref = run(state)
        mesh = Mesh(np.array(jax.devices()), ("beads",))
        sharded = pm.shard_beads(state, mesh)
        split = len(sharded.positions.addressable_shards) == 4 and \\
            sharded.positions.addressable_shards[0].data.shape[0] == P // 4
        got = run(sharded)
        e_ref, e_got = pm.estimators(ref), pm.estimators(got)
        out[thermostat] = {
            "split": bool(split),
            "dq": float(jnp.max(jnp.abs(got.positions - ref.positions))),
            "dp": float(jnp.max(jnp.abs(got.momenta - ref.momenta))),
            "dkcv": float(abs(e_got["kinetic_cv"] - e_ref["kinetic_cv"])),
            "dcons": float(abs(e_got["conserved"] - e_ref["conserved"])),
        }
    # independent replicas (vmapped) x beads on a 2 x 2 mesh, PILE-L, matrix transform
    init_fn, step_fn = pm.pimd(energy, 0.5, kT, P, tau=10.0, nm_method="matrix")
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    states = jax.vmap(lambda k: init_fn(k, x0, masses))(keys)
    run = jax.jit(lambda s: jax.lax.fori_loop(0, 50, lambda i, s: jax.vmap(step_fn)(s), s))
    ref = run(states)
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("replicas", "beads"))
    got = run(pm.shard_beads(states, mesh, replica_axis="replicas"))
    out["replicas"] = {"split": True,
                       "dq": float(jnp.max(jnp.abs(got.positions - ref.positions))),
                       "dp": float(jnp.max(jnp.abs(got.momenta - ref.momenta))),
                       "dkcv": 0.0, "dcons": 0.0}
    print("RESULT" + json.dumps(out))
""")


def test_sharded_beads_equal_unsharded_to_rounding():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", _SHARDING_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    result = json.loads(line[len("RESULT"):])
    for name, r in result.items():
        assert r["split"], name
        # 50 steps of a chaotic-ish system in float64: differences are
        # reassociation rounding (~1e-16 relative) grown by the dynamics.
        assert r["dq"] < 1e-10 and r["dp"] < 1e-10, (name, r)
        assert r["dkcv"] < 1e-10 and r["dcons"] < 1e-10, (name, r)


# --------------------------------------------------------------------------
# ring-polymer contraction
# --------------------------------------------------------------------------

@pytest.mark.parametrize("P", [1, 2, 3, 4, 6, 8, 9, 32])
def test_contraction_matrix_interpolates_band_limited_paths(P):
    t = np.arange(P) / P
    for Pc in range(1, P + 1):
        T = pm.contraction_matrix(P, Pc)
        assert T.shape == (Pc, P)
        np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-13)
        if Pc == P:
            np.testing.assert_allclose(T, np.eye(P), atol=1e-13)
        if Pc == 1:
            np.testing.assert_allclose(T, np.full((1, P), 1.0 / P), atol=1e-15)
        # a path made of the modes a P'-bead ring keeps is reproduced exactly at the new times
        c = np.random.default_rng(10 * P + Pc).normal(size=Pc + 2)

        def path(x):
            return c[0] + 0 * x + sum(c[2 * m - 1] * np.cos(2 * np.pi * m * x) + c[2 * m] * np.sin(2 * np.pi * m * x)
                                      for m in range(1, (Pc + 1) // 2))
        np.testing.assert_allclose(T @ path(t), path(np.arange(Pc) / Pc), atol=1e-12)
    with pytest.raises(InputError, match="between 1 and"):
        pm.contraction_matrix(P, P + 1)


def _pair_well(x):
    d = x[1:] - x[:-1]
    return jnp.sum(0.3 * jnp.exp(-jnp.sum(d * d, axis=-1))) + jnp.sum(0.5 * x ** 2)


def test_contracted_forces_are_gradient_of_contracted_ring_polymer_potential():
    P, N = 6, 4
    q = jnp.asarray(np.random.default_rng(3).normal(size=(P, N, 3)) * 0.3)
    terms = [(_anharmonic_energy, 0), (_pair_well, 2)]

    def ring_potential(q):
        total = jnp.sum(jax.vmap(_anharmonic_energy)(q))
        T = jnp.asarray(pm.contraction_matrix(P, 2))
        return total + (P / 2) * jnp.sum(jax.vmap(_pair_well)(jnp.einsum("kj,jnd->knd", T, q)))

    e, f = pm.contracted_energy_and_forces(terms, P, bead_batch=1)(q)
    np.testing.assert_allclose(float(jnp.sum(e)), float(ring_potential(q)), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(f), -np.asarray(jax.grad(ring_potential)(q)), rtol=1e-12, atol=1e-13)
    # every term on every bead is the plain bead sum
    e_all, f_all = pm.contracted_energy_and_forces([(_anharmonic_energy, 0), (_pair_well, P)], P)(q)
    e_ref, f_ref = pm.bead_energy_and_forces(lambda x: _anharmonic_energy(x) + _pair_well(x))(q)
    np.testing.assert_allclose(np.asarray(e_all), np.asarray(e_ref), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(f_all), np.asarray(f_ref), rtol=1e-12, atol=1e-13)


def test_contracted_nve_ring_polymer_conserves_its_hamiltonian():
    # contraction changes the ring-polymer potential, not the dynamics' structure:
    # NVE must conserve sum_t (P/P_t) sum V_t(T q) + springs + kinetic energy
    P, N = 8, 4
    masses = jnp.full((N,), M_H)
    x0 = jnp.asarray(np.random.default_rng(4).normal(size=(N, 3)) * 0.1)
    force_fn = pm.contracted_energy_and_forces([(_anharmonic_energy, 0), (lambda x: _pair_well(x) * 20.0, 1)], P)
    fluct = []
    for dt in (0.2, 0.1):
        init_fn, step_fn = pm.pimd(None, dt, KT, P, thermostat="none", force_fn=force_fn,
                                   sample_internal_modes=True)
        state = init_fn(jax.random.PRNGKey(5), x0, masses)
        _, obs = _sample(step_fn, state, 0, int(400 / dt), ("hamiltonian", "potential"))
        h = obs["hamiltonian"]
        fluct.append(np.std(h - h[0]))
        assert fluct[-1] < 3e-3 * np.std(obs["potential"] * P)
    assert 3.0 < fluct[0] / fluct[1] < 5.0
