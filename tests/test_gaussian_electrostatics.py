"""Potential kind "gaussian_electrostatics": Gaussian charges, Yukawa core
repulsion, Ewald/PME with Gaussian charges and charge equilibration (QEq).

References: the analytic erf interaction of two Gaussian densities and,
independently of erf, the 6-D Coulomb integral of the two densities reduced
(i) to a 1-D Fourier integral and (ii) to a 2-D integral over shell radii
with the elementary shell-shell interaction; the NaCl Madelung constant
(1.747564594633); the tin-foil Ewald dipole term 2 pi ke M^2/(3V) for a
molecule in growing cubic boxes; a QEq solve written in NumPy/SciPy.
Tolerances: quadrature tolerances, the Ewald/PME accuracy target delta
(relative energy error ~ delta), finite-difference truncation O(h^2) with
h = 1e-4 (errors ~1e-8 of the derivative scale), float64 rounding elsewhere.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import erf as sp_erf

import jaxpot  # noqa: F401  (enables float64)
from jaxpot.partition import neighbor_list
from jaxpot.potentials import build_potential
from jaxpot.potentials.base import Context, energy_and_forces, energy_forces_stress
from jaxpot.electrostatics import smooth_switch
from jaxpot.system import InputError, System, species_from_symbols
from jaxpot.units import KE

NACL = 1.747564594633
KIND = "gaussian_electrostatics"

# a water molecule (A), O first
WATER = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
QEQ = {"kind": KIND, "charge_model": "qeq", "widths": {"H": 0.6, "O": 0.9},
       "electronegativity": {"H": 4.5, "O": 8.5}, "hardness": {"H": 9.0, "O": 11.0}}


def make_system(symbols, positions, cell=None, charges=None):
    pos = jnp.asarray(positions, jnp.float64)
    periodic = cell is not None
    return System(positions=pos, species=jnp.asarray(species_from_symbols(symbols)),
                  masses=jnp.ones(len(symbols)), cell=jnp.asarray(cell if periodic else np.zeros((3, 3))),
                  charges=None if charges is None else jnp.asarray(charges, jnp.float64),
                  pbc=(periodic,) * 3)


def setup(config, system):
    """(potential, params, context) with a neighbor list for periodic systems."""
    pot = build_potential(config, system)
    params = pot.init(jax.random.PRNGKey(0), system)
    nbr = None
    if pot.cutoff > 0:
        fns = neighbor_list(pot.cutoff, np.asarray(system.cell), system.periodic, skin=0.5)
        nbr = fns.allocate(system.positions, system.cell)
    ctx = Context(species=system.species, cell=system.cell, neighbors=nbr, charges=system.charges)
    return pot, params, ctx


def water_cluster(n_mol=3, seed=0, spacing=3.0):
    """n_mol rigid waters, randomly rotated, on a line ``spacing`` A apart."""
    rng = np.random.default_rng(seed)
    pos, sym = [], []
    for m in range(n_mol):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        pos.append(WATER @ q.T + np.array([spacing * m, 0.3 * m, -0.2 * m]))
        sym += ["O", "H", "H"]
    return sym, np.concatenate(pos)


def random_rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def two_charges(r, w1, w2, q1=0.7, q2=-1.3):
    s = make_system(["Na", "Cl"], [[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
    cfg = {"kind": KIND, "charges": {"Na": q1, "Cl": q2}, "widths": {"Na": w1, "Cl": w2}}
    return setup(cfg, s)


# --------------------------------------------------------------------------
# two Gaussian charges
# --------------------------------------------------------------------------

@pytest.mark.parametrize("r", [0.0, 1e-7, 0.3, 1.5, 4.0])
def test_two_gaussian_charges_match_analytic_erf_formula(r):
    w1, w2, q1, q2 = 0.7, 1.1, 0.7, -1.3
    pot, params, ctx = two_charges(r, w1, w2, q1, q2)
    pos = jnp.asarray([[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
    gamma = math.hypot(w1, w2)
    expected = KE * q1 * q2 * (2.0 / (math.sqrt(math.pi) * gamma) if r == 0 else math.erf(r / gamma) / r)
    e, f = energy_and_forces(pot)(params, pos, ctx)
    assert float(e) == pytest.approx(expected, rel=1e-13)
    assert np.all(np.isfinite(np.asarray(f)))
    # analytic force on atom 2 along x: -dE/dr
    if r > 0:
        x = r / gamma
        if x > 1e-3:
            dedr = KE * q1 * q2 * (2.0 / (math.sqrt(math.pi) * gamma) * math.exp(-x * x) / r
                                   - math.erf(x) / r ** 2)
        else:   # the closed form cancels catastrophically; Taylor series of erf(x)/x
            dedr = KE * q1 * q2 * 2.0 / (math.sqrt(math.pi) * gamma ** 2) * (-2.0 * x / 3.0 + 0.4 * x ** 3)
        assert float(f[1, 0]) == pytest.approx(-dedr, rel=1e-8, abs=1e-12)
    else:
        np.testing.assert_allclose(np.asarray(f), 0.0, atol=1e-12)


def _shell_interaction(a, b, R):
    """Mean of 1/|x - y| over two unit spherical shells of radii a, b with
    centres R apart (shell theorem, elementary): shell a acts as
    1/max(s, a) at distance s, averaged over shell b, where s runs from
    |R - b| to R + b with density s/(2 R b)."""
    lo, hi = abs(R - b), R + b
    inner = (min(hi, a) ** 2 - min(lo, a) ** 2) / (2.0 * a)
    outer = max(0.0, hi - max(lo, a))
    return (inner + outer) / (2.0 * R * b)


def test_gaussian_pair_energy_matches_numerical_integration_of_the_two_densities():
    """E = ke int int rho1(x) rho2(y)/|x - y| d3x d3y for two Gaussian
    densities q (pi w^2)^-3/2 exp(-r^2/w^2), by two reductions of the 6-D
    integral that never use erf: a 2-D integral over shell radii (a, b) of
    the radial charges 4 pi a^2 rho1(a) 4 pi b^2 rho2(b) times the shell-shell
    interaction, and the 1-D Fourier form
    (2/pi) int_0^inf exp(-k^2 (w1^2 + w2^2)/4) sin(kR)/(kR) dk."""
    w1, w2, q1, q2, R = 0.8, 1.2, 0.7, -1.3, 1.1
    pot, params, ctx = two_charges(R, w1, w2, q1, q2)
    e = float(pot.energy(params, jnp.asarray([[0.0, 0.0, 0.0], [R, 0.0, 0.0]]), ctx))

    def radial(w):
        return lambda a: 4.0 * math.pi * a * a * (math.pi * w * w) ** -1.5 * math.exp(-(a / w) ** 2)

    n1, n2 = radial(w1), radial(w2)
    # 2-D, split at the kinks of the shell interaction (b = |R - a|, R + a)
    total, err_total = 0.0, 0.0
    for a_lo, a_hi in [(0.0, R), (R, 8.0 * w1)]:
        val, err = integrate.dblquad(
            lambda b, a: n1(a) * n2(b) * _shell_interaction(a, b, R), a_lo, a_hi,
            lambda a: 0.0, lambda a: 8.0 * w2, epsabs=1e-11, epsrel=1e-10)
        total += val
        err_total += err
    e_shells = KE * q1 * q2 * total
    gamma2 = w1 * w1 + w2 * w2
    val, err = integrate.quad(lambda k: math.exp(-k * k * gamma2 / 4.0) * math.sin(k * R) / (k * R),
                              0.0, np.inf, epsabs=1e-13, epsrel=1e-12, limit=200)
    e_fourier = KE * q1 * q2 * 2.0 / math.pi * val
    # truncation at 8 w leaves exp(-64) of each density; quadrature errors are reported
    assert e == pytest.approx(e_fourier, rel=1e-9)
    assert e == pytest.approx(e_shells, rel=1e-6, abs=KE * abs(q1 * q2) * (err_total + 1e-9))


def test_point_charge_limit_is_exact_for_zero_width_and_approached_as_width_vanishes():
    q1, q2, r = 0.7, -1.3, 2.0
    pos = jnp.asarray([[0.0, 0.0, 0.0], [r, 0.0, 0.0]])
    pot, params, ctx = two_charges(r, 0.0, 0.0, q1, q2)
    assert float(pot.energy(params, pos, ctx)) == KE * q1 * q2 / r
    # width-0 params still give finite gradients w.r.t. the widths (safe sqrt)
    g = jax.grad(pot.energy)(params, pos, ctx)
    assert np.all(np.isfinite(np.asarray(g["widths"])))
    for w in (1.0, 0.5, 0.2, 0.05):
        pot, params, ctx = two_charges(r, w, w, q1, q2)
        gamma = math.sqrt(2.0) * w
        delta = float(pot.energy(params, pos, ctx)) - KE * q1 * q2 / r
        # E_gauss - E_point = -ke q1 q2 erfc(r/gamma)/r
        assert delta == pytest.approx(-KE * q1 * q2 * math.erfc(r / gamma) / r, rel=1e-10, abs=1e-14)


# --------------------------------------------------------------------------
# periodic: Madelung, growing boxes, non-neutral cells
# --------------------------------------------------------------------------

def rocksalt(a=5.64):
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    pos = np.concatenate([base, base + [0.5, 0, 0]]) * a
    return make_system(["Na"] * 4 + ["Cl"] * 4, pos, cell=np.eye(3) * a)


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_rocksalt_madelung_constant_with_point_charges(method):
    a, acc = 5.64, 1e-6
    s = rocksalt(a)
    pot, params, ctx = setup({"kind": KIND, "charges": {"Na": 1.0, "Cl": -1.0}, "coulomb": method,
                              "accuracy": acc, "cutoff": 5.0}, s)
    e = float(jax.jit(pot.energy)(params, s.positions, ctx))
    madelung = -e / 4.0 * (a / 2.0) / KE
    # relative energy error ~ accuracy target delta; 10 delta leaves room for the estimate
    assert madelung == pytest.approx(NACL, rel=10 * acc)


def test_gaussian_ewald_in_growing_boxes_converges_to_the_cluster_sum():
    """A neutral dipolar molecule of Gaussian charges in a cubic box L:
    tin-foil Ewald gives E(L) = E_cluster - 2 pi ke M^2/(3 L^3) + O(L^-5)
    (the cubic image-dipole lattice sum vanishes)."""
    charges = {"O": -0.8, "H": 0.4}
    widths = {"O": 0.9, "H": 0.6}
    sym = ["O", "H", "H"]
    cl = make_system(sym, WATER)
    pot, params, ctx = setup({"kind": KIND, "charges": charges, "widths": widths}, cl)
    e_cluster = float(pot.energy(params, cl.positions, ctx))
    mu = np.array([-0.8, 0.4, 0.4]) @ WATER
    rest = []
    for L in (12.0, 18.0, 27.0):
        s = make_system(sym, WATER + L / 2, cell=np.eye(3) * L)
        pot, params, ctx = setup({"kind": KIND, "charges": charges, "widths": widths, "coulomb": "ewald",
                                  "accuracy": 1e-9, "cutoff": 6.0}, s)
        e = float(jax.jit(pot.energy)(params, s.positions, ctx))
        dip = 2.0 * math.pi * KE * float(mu @ mu) / (3.0 * L ** 3)
        # the dipole term dominates the finite-size error ...
        assert abs(e - e_cluster) == pytest.approx(dip, rel=0.1)
        rest.append(e + dip - e_cluster)
    # ... and what remains decays as L^-5 (quadrupole images): ratio 1.5^5 per step;
    # the Ewald error (delta = 1e-9, ~1e-9 eV) is far below the 3e-6 eV remainder at L = 27
    assert rest[0] / rest[1] == pytest.approx(1.5 ** 5, rel=0.02)
    assert rest[1] / rest[2] == pytest.approx(1.5 ** 5, rel=0.02)


def test_non_neutral_periodic_cell_is_rejected_unless_neutralized():
    s = rocksalt()
    cfg = {"kind": KIND, "charges": {"Na": 1.0, "Cl": -0.5}, "coulomb": "pme"}
    with pytest.raises(InputError, match="net charge of 2"):
        build_potential(cfg, s)
    with pytest.raises(InputError, match="net charge"):
        build_potential({**QEQ, "species": ["Na", "Cl"], "widths": {"Na": 1.0, "Cl": 1.0},
                         "electronegativity": {"Na": 1.0, "Cl": 5.0}, "hardness": {"Na": 5.0, "Cl": 5.0},
                         "total_charge": 1.0}, s)
    # with the background term the energy no longer depends on the split alpha
    # (two different alpha = sqrt(-ln 2 delta)/rc; relative errors ~ delta each)
    energies = []
    for acc, rc in ((1e-6, 5.0), (1e-8, 6.0)):
        pot, params, ctx = setup({**cfg, "coulomb": "ewald", "neutralize": True, "accuracy": acc,
                                  "cutoff": rc}, s)
        energies.append(float(jax.jit(pot.energy)(params, s.positions, ctx)))
    assert energies[0] == pytest.approx(energies[1], rel=1e-5)


# --------------------------------------------------------------------------
# charge equilibration
# --------------------------------------------------------------------------

def numpy_qeq(symbols, pos, cfg, total_charge):
    """Independent QEq: A_ii = J + ke sqrt(2/pi)/w, A_ij = ke erf(r/gamma)/r,
    KKT system solved by numpy."""
    n = len(symbols)
    w = np.array([cfg["widths"][s] for s in symbols])
    chi = np.array([cfg["electronegativity"][s] for s in symbols])
    J = np.array([cfg["hardness"][s] for s in symbols])
    r = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    gamma = np.sqrt(w[:, None] ** 2 + w[None] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = KE * sp_erf(r / gamma) / r
    a[np.diag_indices(n)] = J + KE * np.sqrt(2 / np.pi) / w
    kkt = np.zeros((n + 1, n + 1))
    kkt[:n, :n], kkt[:n, n], kkt[n, :n] = a, 1.0, 1.0
    sol = np.linalg.solve(kkt, np.concatenate([-chi, [total_charge]]))
    q = sol[:n]
    return q, chi @ q + 0.5 * q @ a @ q


@pytest.mark.parametrize("total_charge", [0.0, -1.0])
def test_qeq_charges_sum_to_total_and_match_numpy_linear_solve(total_charge):
    sym, pos = water_cluster(3)
    s = make_system(sym, pos)
    cfg = {**QEQ, "total_charge": total_charge}
    pot, params, ctx = setup(cfg, s)
    q = np.asarray(pot.charges(params, s.positions, ctx))
    e = float(pot.energy(params, s.positions, ctx))
    q_ref, e_ref = numpy_qeq(sym, pos, cfg, total_charge)
    assert q.sum() == pytest.approx(total_charge, abs=1e-12)
    np.testing.assert_allclose(q, q_ref, atol=1e-11)
    assert e == pytest.approx(e_ref, rel=1e-11)
    if total_charge == 0:   # electronegative O pulls charge from H
        assert np.all(q[0::3] < 0) and np.all(q[1::3] > 0)


def test_qeq_charges_and_energy_are_invariant_under_rotation_and_translation():
    sym, pos = water_cluster(3)
    s = make_system(sym, pos)
    pot, params, ctx = setup(QEQ, s)
    q0 = np.asarray(pot.charges(params, s.positions, ctx))
    e0 = float(pot.energy(params, s.positions, ctx))
    rot = random_rotation(3)
    moved = jnp.asarray(pos @ rot.T + np.array([1.0, -2.0, 0.5]))
    np.testing.assert_allclose(np.asarray(pot.charges(params, moved, ctx)), q0, atol=1e-12)
    assert float(pot.energy(params, moved, ctx)) == pytest.approx(e0, rel=1e-12)


def _fd_grad(f, x, h):
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        g[k] = (f(xp) - f(xm)) / (2 * h)
    return g


def test_qeq_forces_match_finite_differences_of_equilibrated_energy():
    sym, pos = water_cluster(2)
    s = make_system(sym, pos)
    cfg = {**QEQ, "yukawa_z": {"H": 0.4, "O": 1.0}, "yukawa_beta": {"H": 2.0, "O": 1.5}, "total_charge": 0.5}
    pot, params, ctx = setup(cfg, s)
    e_fn = jax.jit(pot.energy)
    _, f = jax.jit(energy_and_forces(pot))(params, s.positions, ctx)
    fd = -_fd_grad(lambda x: float(e_fn(params, jnp.asarray(x), ctx)), pos, 1e-4)
    # central differences: O(h^2 E''') ~ 1e-8 eV/A
    np.testing.assert_allclose(np.asarray(f), fd, atol=1e-6)
    assert np.abs(fd).max() > 0.1


def test_qeq_parameter_gradients_through_the_solve_match_finite_differences():
    """Training needs d/d(chi, J, w) of the energy, the charges and the
    forces (the last two through dq/dtheta of the solve)."""
    sym, pos = water_cluster(2)
    s = make_system(sym, pos)
    pot, params, ctx = setup(QEQ, s)
    rng = np.random.default_rng(1)
    v = jnp.asarray(rng.normal(size=pos.shape))
    cq = jnp.asarray(rng.normal(size=len(sym)))
    ef = energy_and_forces(pot)

    def loss(p):
        e, f = ef(p, s.positions, ctx)
        return e + jnp.sum(f * v) + 10.0 * jnp.sum(cq * pot.charges(p, s.positions, ctx))

    grads = jax.jit(jax.grad(loss))(params)
    loss_j = jax.jit(loss)
    for key in ("electronegativity", "hardness", "widths"):
        def f_of(x, key=key):
            return float(loss_j({**params, key: jnp.asarray(x)}))
        fd = _fd_grad(f_of, params[key], 1e-5)
        np.testing.assert_allclose(np.asarray(grads[key]), fd, rtol=1e-6, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("method", ["ewald", pytest.param("pme", marks=pytest.mark.slow)])
def test_periodic_qeq_dense_and_cg_agree_and_approach_cluster_charges(method):
    sym, pos = water_cluster(2)
    s_cl = make_system(sym, pos)
    pot, params, ctx = setup(QEQ, s_cl)
    q_cl = np.asarray(pot.charges(params, s_cl.positions, ctx))
    L = 16.0
    s = make_system(sym, pos + L / 2, cell=np.eye(3) * L)
    out = {}
    for solver in ("dense", "cg"):
        pot, params, ctx = setup({**QEQ, "coulomb": method, "qeq_solver": solver, "cutoff": 5.0,
                                  "accuracy": 1e-5}, s)
        out[solver] = (np.asarray(jax.jit(pot.charges)(params, s.positions, ctx)),
                       float(jax.jit(pot.energy)(params, s.positions, ctx)))
    np.testing.assert_allclose(out["cg"][0], out["dense"][0], atol=1e-8)
    assert out["cg"][1] == pytest.approx(out["dense"][1], abs=1e-8)
    assert out["dense"][0].sum() == pytest.approx(0.0, abs=1e-12)
    # images act through the dipole field ~ M/L^3: a few 1e-3 e at L = 16 A
    np.testing.assert_allclose(out["dense"][0], q_cl, atol=5e-3)


@pytest.mark.parametrize("method", ["ewald", pytest.param("pme", marks=pytest.mark.slow)])
def test_periodic_cg_qeq_with_yukawa_forces_and_stress_match_finite_differences(method):
    """Forces and stress through the implicitly differentiated CG solve."""
    sym, pos = water_cluster(2, spacing=2.8)
    L = 9.0
    s = make_system(sym, pos + 2.0, cell=np.eye(3) * L)
    cfg = {**QEQ, "coulomb": method, "qeq_solver": "cg", "cutoff": 4.0, "accuracy": 1e-5,
           "yukawa_z": {"H": 0.4, "O": 1.0}, "yukawa_beta": {"H": 2.0, "O": 1.5}}
    pot, params, ctx = setup(cfg, s)
    _, f, sigma = jax.jit(energy_forces_stress(pot))(params, s.positions, ctx)
    e_fn = jax.jit(pot.energy)
    x0 = np.asarray(s.positions)

    def e_first_molecule(x3):   # finite differences for the first molecule only
        return float(e_fn(params, jnp.asarray(np.concatenate([x3, x0[3:]])), ctx))
    fd = -_fd_grad(e_first_molecule, x0[:3], 1e-4)
    np.testing.assert_allclose(np.asarray(f)[:3], fd, atol=1e-6)

    def strained(eps):
        d = np.eye(3) + 0.5 * (eps + eps.T)
        c = ctx.replace(cell=jnp.asarray(np.asarray(s.cell) @ d.T))
        return float(e_fn(params, jnp.asarray(x0 @ d.T), c))
    fd_s = _fd_grad(strained, np.zeros((3, 3)), 1e-5) / L ** 3
    np.testing.assert_allclose(np.asarray(sigma), fd_s, atol=1e-7)


def test_qeq_hardness_must_be_nonnegative_and_nan_guard_for_trained_negative_hardness():
    sym, pos = water_cluster(1)
    s = make_system(sym, pos)
    with pytest.raises(InputError, match="hardness of H is negative"):
        build_potential({**QEQ, "hardness": {"H": -1.0, "O": 5.0}}, s)
    with pytest.raises(InputError, match="widths.H must be > 0"):
        build_potential({**QEQ, "widths": {"H": 0.0, "O": 0.9}}, s)
    pot, params, ctx = setup(QEQ, s)
    # a diagonal J + ke sqrt(2/pi)/w <= 0 (trained far negative) gives NaN, not garbage
    bad = {**params, "hardness": jnp.asarray([-40.0, 11.0])}
    assert np.all(np.isnan(np.asarray(pot.charges(bad, s.positions, ctx))))
    assert np.isnan(float(pot.energy(bad, s.positions, ctx)))


# --------------------------------------------------------------------------
# Yukawa core repulsion
# --------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["arithmetic", "geometric"])
def test_yukawa_pair_energy_matches_analytic_form_and_combination_rule(rule):
    z1, z2, b1, b2 = 1.2, 0.7, 2.0, 3.0
    beta = 0.5 * (b1 + b2) if rule == "arithmetic" else math.sqrt(b1 * b2)
    cfg = {"kind": KIND, "charges": {"Na": 0.0, "Cl": 0.0}, "yukawa_z": {"Na": z1, "Cl": z2},
           "yukawa_beta": {"Na": b1, "Cl": b2}, "yukawa_combination": rule, "cutoff": 5.0, "switch_width": 1.0}
    s = make_system(["Na", "Cl"], [[0, 0, 0], [1.0, 0, 0]])
    pot, params, ctx = setup(cfg, s)
    for r in (0.5, 1.7, 3.9):
        e = float(pot.energy(params, jnp.asarray([[0, 0, 0], [r, 0, 0]], jnp.float64), ctx))
        assert e == pytest.approx(KE * z1 * z2 * math.exp(-beta * r) / r, rel=1e-13)
    # inside the switching region: the same times the quintic switch
    r = 4.6
    x = (r - 4.0) / 1.0
    e = float(pot.energy(params, jnp.asarray([[0, 0, 0], [r, 0, 0]], jnp.float64), ctx))
    assert e == pytest.approx(KE * z1 * z2 * math.exp(-beta * r) / r * (1 - 10 * x ** 3 + 15 * x ** 4 - 6 * x ** 5),
                              rel=1e-12)


def test_yukawa_switch_brings_energy_force_and_curvature_smoothly_to_zero_at_cutoff():
    cfg = {"kind": KIND, "charges": {"Ar": 0.0}, "yukawa_z": {"Ar": 2.0}, "yukawa_beta": {"Ar": 0.3},
           "cutoff": 5.0, "switch_width": 2.0}
    s = make_system(["Ar", "Ar"], [[0, 0, 0], [1.0, 0, 0]])
    pot, params, ctx = setup(cfg, s)

    def e_of(r):
        return pot.energy(params, jnp.stack([jnp.zeros(3), jnp.array([1.0, 0.0, 0.0]) * r]), ctx)
    d1, d2 = jax.grad(e_of), jax.grad(jax.grad(e_of))
    # beta = 0.3/A leaves the unswitched term large at 5 A: the switch does the work
    assert KE * 4.0 * math.exp(-1.5) / 5.0 > 2.0
    for k, f in enumerate((e_of, d1, d2)):
        assert float(f(5.0)) == 0.0 and float(f(5.5)) == 0.0
        # C2: the k-th derivative vanishes as eps^(3-k) at r = rc - eps (S ~ 10 x'^3 near x' = 1 - x = 0)
        ratio = float(f(5.0 - 1e-3)) / float(f(5.0 - 1e-4))
        assert ratio == pytest.approx(10.0 ** (3 - k), rel=0.01)
    s_vals = np.asarray(smooth_switch(jnp.asarray([2.9, 3.0, 4.0, 5.0]), 3.0, 5.0))
    np.testing.assert_allclose(s_vals, [1.0, 1.0, 0.5, 0.0], atol=1e-15)


# --------------------------------------------------------------------------
# padding, batching, composition, configuration
# --------------------------------------------------------------------------

def padded(sym, pos, n_pad, at=None):
    z = np.concatenate([species_from_symbols(sym), np.zeros(n_pad, np.int32)])
    extra = np.zeros((n_pad, 3)) if at is None else np.repeat(np.asarray(at)[None], n_pad, 0)
    return jnp.asarray(z), jnp.asarray(np.concatenate([pos, extra]))


@pytest.mark.parametrize("charge_model", ["fixed", "qeq"])
def test_padding_atoms_change_nothing_and_get_zero_force_and_charge(charge_model):
    sym, pos = water_cluster(2)
    s = make_system(sym, pos)
    if charge_model == "qeq":
        cfg = {**QEQ, "yukawa_z": {"H": 0.4, "O": 1.0}, "yukawa_beta": {"H": 2.0, "O": 1.5}}
    else:
        cfg = {"kind": KIND, "charges": {"H": 0.4, "O": -0.8}, "widths": {"H": 0.0, "O": 0.9},
               "yukawa_z": {"H": 0.4, "O": 1.0}, "yukawa_beta": {"H": 2.0, "O": 1.5}}
    pot, params, ctx = setup(cfg, s)
    ef, qf = jax.jit(energy_and_forces(pot)), jax.jit(pot.charges)
    e0, f0 = ef(params, s.positions, ctx)
    q0 = qf(params, s.positions, ctx)
    # padding at the origin and on top of a real atom (r = 0 for a point charge H)
    z_pad, pos_pad = padded(sym, pos, 3, at=pos[1])
    pos_pad = pos_pad.at[-1].set(0.0)
    ctx_pad = Context(species=z_pad, cell=s.cell)
    e1, f1 = ef(params, pos_pad, ctx_pad)
    q1 = qf(params, pos_pad, ctx_pad)
    assert float(e1) == pytest.approx(float(e0), rel=1e-13)
    np.testing.assert_allclose(np.asarray(f1[:6]), np.asarray(f0), atol=1e-12)
    np.testing.assert_array_equal(np.asarray(f1[6:]), 0.0)
    np.testing.assert_allclose(np.asarray(q1[:6]), np.asarray(q0), atol=1e-13)
    np.testing.assert_array_equal(np.asarray(q1[6:]), 0.0)
    g = jax.jit(jax.grad(lambda p: energy_and_forces(pot)(p, pos_pad, ctx_pad)[1].sum()
                         + pot.energy(p, pos_pad, ctx_pad)))(params)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree_util.tree_leaves(g))


def test_vmap_over_a_padded_batch_matches_single_structures_and_coincident_gaussians_stay_finite():
    pot = build_potential(QEQ, None)          # built before any structure is seen
    assert pot.config["coulomb"] == "direct" and pot.cutoff == 0.0
    params = pot.init(jax.random.PRNGKey(0), None)
    sym_a, pos_a = water_cluster(2, seed=4)
    sym_b, pos_b = water_cluster(1, seed=5)
    za, pa = padded(sym_a, pos_a, 0)
    zb, pb = padded(sym_b, pos_b, 3)
    batch_pos = jnp.stack([pa, pb])
    batch_ctx = Context(species=jnp.stack([za, zb]), cell=jnp.zeros((2, 3, 3)))
    ef = jax.jit(jax.vmap(energy_and_forces(pot), in_axes=(None, 0, 0)))
    e, f = ef(params, batch_pos, batch_ctx)
    single = jax.jit(energy_and_forces(pot))
    for k, (sym, pos) in enumerate([(sym_a, pos_a), (sym_b, pos_b)]):
        s = make_system(sym, pos)
        e_k, f_k = single(params, s.positions, Context(s.species, s.cell))
        assert float(e[k]) == pytest.approx(float(e_k), rel=1e-12)
        np.testing.assert_allclose(np.asarray(f[k, :len(sym)]), np.asarray(f_k), atol=1e-10)
    np.testing.assert_array_equal(np.asarray(f[1, 3:]), 0.0)
    # two Gaussian atoms on top of each other: finite energy, charges and gradients
    pos_c = jnp.asarray(np.concatenate([WATER, WATER[:1]]))
    ctx_c = Context(jnp.asarray(species_from_symbols(["O", "H", "H", "H"])), jnp.zeros((3, 3)))
    e_c, f_c = single(params, pos_c, ctx_c)
    g = jax.jit(jax.grad(pot.energy))(params, pos_c, ctx_c)
    assert np.isfinite(float(e_c)) and np.all(np.isfinite(np.asarray(f_c)))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree_util.tree_leaves(g))


def test_sum_with_another_potential_adds_energies_and_keeps_qeq_charges():
    sym, pos = water_cluster(2)
    s = make_system(sym, pos)
    pot, params, ctx = setup(QEQ, s)
    other = {"kind": "atomic_energies", "energies": {"H": -13.6, "O": -432.0}}
    total = build_potential({"kind": "sum", "terms": [QEQ, other]}, s)
    tp = total.init(jax.random.PRNGKey(0), s)
    e = float(total.energy(tp, s.positions, ctx))
    assert e == pytest.approx(float(pot.energy(params, s.positions, ctx)) + 2 * (-432.0 - 2 * 13.6), rel=1e-13)
    np.testing.assert_allclose(np.asarray(total.charges(tp, s.positions, ctx)),
                               np.asarray(pot.charges(params, s.positions, ctx)), atol=1e-14)


def test_input_charges_from_structure_and_resolved_config_rebuilds_the_same_potential(tmp_path):
    from jaxpot import io

    sym, pos = water_cluster(2)
    q_in = np.array([-0.82, 0.41, 0.41, -0.8, 0.4, 0.4])
    s = make_system(sym, pos, charges=q_in)
    cfg = {"kind": KIND, "charges": "input", "widths": {"H": 0.5, "O": 0.7}}
    pot, params, ctx = setup(cfg, s)
    np.testing.assert_array_equal(np.asarray(pot.charges(params, s.positions, ctx)), q_in)
    r = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    w = np.array([0.7, 0.5, 0.5, 0.7, 0.5, 0.5])
    iu = np.triu_indices(6, 1)
    e_ref = KE * np.sum((q_in[:, None] * q_in[None] * sp_erf(r / np.sqrt(w[:, None] ** 2 + w[None] ** 2))
                         / np.where(r > 0, r, 1))[iu])
    assert float(pot.energy(params, s.positions, ctx)) == pytest.approx(e_ref, rel=1e-12)
    for c in (pot.config, build_potential({**QEQ, "yukawa_z": {"H": 0.4, "O": 1.0},
                                           "yukawa_beta": {"H": 2.0, "O": 1.5}}, s).config):
        io.write_toml(tmp_path / "p.toml", {"potential": c})
        back = io.read_toml(tmp_path / "p.toml")["potential"]
        assert back == c
        p1, p2 = build_potential(c, s), build_potential(back, s)
        assert p2.config == c
        e1 = float(p1.energy(p1.init(None, s), s.positions, ctx))
        assert float(p2.energy(p2.init(None, s), s.positions, ctx)) == e1


def test_ase_calculator_reports_equilibrated_charges():
    from ase import Atoms

    from jaxpot.interop.ase import JaxpotCalculator

    sym, pos = water_cluster(2)
    atoms = Atoms(sym, positions=pos)
    atoms.calc = JaxpotCalculator(QEQ)
    q = atoms.get_charges()
    q_ref, e_ref = numpy_qeq(sym, pos, QEQ, 0.0)
    np.testing.assert_allclose(q, q_ref, atol=1e-11)
    assert atoms.get_potential_energy() == pytest.approx(e_ref, rel=1e-11)


def test_configuration_errors_name_the_problem():
    sym, pos = water_cluster(1)
    s = make_system(sym, pos)
    with pytest.raises(InputError, match="no parameters for element.*O"):
        build_potential({"kind": KIND, "charges": {"H": 0.4}}, s)
    with pytest.raises(InputError, match="'widths' has no value for element.*H"):
        build_potential({"kind": KIND, "charges": {"H": 0.4, "O": -0.8}, "widths": {"O": 1.0}}, s)
    with pytest.raises(InputError, match="unknown key.*colomb"):
        build_potential({"kind": KIND, "charges": {"H": 0.4, "O": -0.8}, "colomb": "pme"}, s)
    with pytest.raises(InputError, match="needs 'electronegativity'"):
        build_potential({"kind": KIND, "charge_model": "qeq", "widths": {"H": 1, "O": 1},
                         "hardness": {"H": 1, "O": 1}}, s)
    with pytest.raises(InputError, match="yukawa_beta"):
        build_potential({"kind": KIND, "charges": {"H": 0.4, "O": -0.8}, "yukawa_z": {"H": 1, "O": 1}}, s)
    with pytest.raises(InputError, match="needs a periodic structure"):
        build_potential({"kind": KIND, "charges": {"H": 0.4, "O": -0.8}, "coulomb": "ewald"}, s)
    with pytest.raises(InputError, match="carries no per-atom charges"):
        build_potential({"kind": KIND, "charges": "input", "species": ["H", "O"]}, s)
    with pytest.raises(InputError, match="charge_model"):
        build_potential({"kind": KIND, "charges": {"H": 0.4, "O": -0.8}, "charge_model": "eem"}, s)
    with pytest.raises(InputError, match="only apply to charge_model 'qeq'"):
        build_potential({"kind": KIND, "charges": {"H": 0.4, "O": -0.8}, "hardness": {"H": 1, "O": 1}}, s)


def test_environment_dependent_electronegativity_hook_is_trainable_and_variational():
    """4G-HDNNP style chi_i(r): here chi_i += a * sum_j exp(-r_ij^2), a toy
    environment model; forces (variational energy with chi(r)) and d/da of
    charges by finite differences; a = 0 reproduces per-element QEq."""
    from jaxpot.electrostatics import gaussian_electrostatics_from_config

    def chi_fn(p, x, ctx):
        r2 = jnp.sum((x[:, None] - x[None]) ** 2, axis=-1)
        return p["a"] * (jnp.sum(jnp.exp(-r2), axis=1) - 1.0)

    sym, pos = water_cluster(2)
    s = make_system(sym, pos)
    pot = gaussian_electrostatics_from_config(QEQ, s, electronegativity_fn=chi_fn,
                                              electronegativity_init=lambda key, system: {"a": jnp.asarray(0.0)})
    base, bp, ctx = setup(QEQ, s)
    params = pot.init(jax.random.PRNGKey(0), s)
    np.testing.assert_allclose(np.asarray(pot.charges(params, s.positions, ctx)),
                               np.asarray(base.charges(bp, s.positions, ctx)), atol=1e-14)
    params = {**params, "electronegativity_model": {"a": jnp.asarray(3.0)}}
    e_fn = jax.jit(pot.energy)
    _, f = jax.jit(energy_and_forces(pot))(params, s.positions, ctx)
    fd = -_fd_grad(lambda x: float(e_fn(params, jnp.asarray(x), ctx)), pos, 1e-4)
    np.testing.assert_allclose(np.asarray(f), fd, atol=1e-6)
    q_of = jax.jit(lambda a: pot.charges({**params, "electronegativity_model": {"a": a}}, s.positions, ctx)[0])
    g = float(jax.grad(q_of)(jnp.asarray(3.0)))
    fd_a = (float(q_of(jnp.asarray(3.0 + 1e-5))) - float(q_of(jnp.asarray(3.0 - 1e-5)))) / 2e-5
    assert g == pytest.approx(fd_a, rel=1e-6) and abs(g) > 1e-4
    with pytest.raises(InputError, match="needs charge_model 'qeq'"):
        gaussian_electrostatics_from_config({"kind": KIND, "charges": {"H": 0.4, "O": -0.8}}, s,
                                            electronegativity_fn=chi_fn)


def test_blocked_all_pairs_cluster_sum_equals_one_block_with_gradients():
    """Large clusters are summed in row blocks under lax.map + remat; the
    blocks must cover every pair i < j exactly once (here 11 atoms in blocks
    of 4, the last block padded), energies and gradients alike."""
    from jaxpot.electrostatics.pair import _cluster_pair_sum
    from jaxpot.electrostatics import gaussian_kernel

    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.uniform(0, 6, size=(11, 3)))
    q = jnp.asarray(rng.normal(size=11))
    real = jnp.asarray(np.arange(11) != 5)            # one padding atom

    def total(pos, block):
        return _cluster_pair_sum(lambda rows, r: KE * q[rows][:, None] * q[None, :] * gaussian_kernel(r, 0.8),
                                 pos, real, block)
    e1, g1 = jax.value_and_grad(total)(x, 64)
    e4, g4 = jax.value_and_grad(total)(x, 4)
    xn, qn, keep = np.asarray(x), np.asarray(q), np.asarray(real)
    ref = sum(KE * qn[i] * qn[j] * math.erf(np.linalg.norm(xn[i] - xn[j]) / 0.8) / np.linalg.norm(xn[i] - xn[j])
              for i in range(11) for j in range(i + 1, 11) if keep[i] and keep[j])
    assert float(e1) == pytest.approx(ref, rel=1e-12)
    assert float(e4) == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(np.asarray(g4), np.asarray(g1), atol=1e-12)
    assert np.all(np.asarray(g1)[5] == 0.0)


def test_fixed_charges_with_total_charge_stay_neutral_while_trained():
    """Per-element charges fitted freely can leave a water molecule charged
    (2 q_H + q_O != 0), which adds a spurious monopole tail; with
    total_charge the charges are shifted uniformly to sum to Q, for any
    parameter values, and the gradient respects the constraint."""
    dimer = np.concatenate([WATER, WATER + [0.0, 0.0, 3.0]])
    s = make_system(["O", "H", "H"] * 2, dimer)
    cfg = {"kind": KIND, "charges": {"H": 0.35, "O": -0.6}, "widths": {"H": 0.7, "O": 0.9}}
    pot, params, ctx = setup(cfg, s)
    pot_n, _, _ = setup({**cfg, "total_charge": 0.0}, s)
    q_free = np.asarray(pot.charges(params, s.positions, ctx))
    q = np.asarray(pot_n.charges(params, s.positions, ctx))
    assert abs(q_free.sum() - 0.2) < 1e-12            # 2 x (0.7 - 0.6)
    assert abs(q.sum()) < 1e-12
    np.testing.assert_allclose(q - q_free, -0.2 / 6, atol=1e-12)
    # energy = the Coulomb energy of the corrected charges (Gaussian kernel)
    r = np.linalg.norm(dimer[:, None] - dimer[None], axis=-1)
    w = np.array([0.9, 0.7, 0.7] * 2)
    g = np.sqrt(w[:, None] ** 2 + w[None] ** 2)
    iu = np.triu_indices(6, 1)
    e_ref = KE * np.sum((q[:, None] * q[None] * sp_erf(r / g) / np.where(r > 0, r, 1.0))[iu])
    assert float(pot_n.energy(params, s.positions, ctx)) == pytest.approx(e_ref, rel=1e-12)
    # a charged structure is shifted to its total charge; the constraint holds for any params
    pot_q, _, _ = setup({**cfg, "total_charge": -1.0}, s)
    assert float(jnp.sum(pot_q.charges(params, s.positions, ctx))) == pytest.approx(-1.0, abs=1e-12)
    grad = jax.grad(lambda p: pot_n.energy(p, s.positions, ctx))(params)["charges"]
    # adding the same amount to both per-element charges moves every atom's charge
    # by it, which the correction removes: the gradient has no component along (1, 1)
    assert abs(float(grad[0] + grad[1])) < 1e-10 * float(jnp.max(jnp.abs(grad)))
    with pytest.raises(InputError, match="total_charge does not apply"):
        build_potential({"kind": KIND, "charges": "input", "species": ["H", "O"], "total_charge": 0.0},
                        make_system(["O", "H", "H"], WATER, charges=[-0.8, 0.4, 0.4]))
