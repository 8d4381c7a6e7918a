"""Kernel methods on global descriptors (jaxpot.kernels):
descriptor invariances and padding, autodiff gradients against finite
differences (also at degenerate eigenvalues), p-orbital overlaps against
numerical integration, KRR/ridge/GPR against scikit-learn, marginal
likelihood optimisation, and a trained kernel model running energy-conserving
NVE from a model directory."""
import numpy as np
import pytest
import jax
import jax.numpy as jnp
from ase import Atoms
from ase.build import molecule

import jaxpot  # noqa: F401  (float64)
from jaxpot.potentials import build_potential
from jaxpot import kernels as K
from jaxpot.potentials.base import Context, energy_and_forces
from jaxpot.system import InputError, from_ase, species_from_symbols

DESC_CONFIGS = {
    "coulomb_eigen": {"descriptor": "coulomb_eigen"},
    "coulomb_sorted": {"descriptor": "coulomb_sorted"},
    "bag_of_bonds": {"descriptor": "bag_of_bonds"},
    "overlap_s": {"descriptor": "overlap", "orbitals": "s"},
    "overlap_sp": {"descriptor": "overlap", "orbitals": "sp"},
}


def _resolved(desc: dict, atoms, max_atoms=None):
    cfg = {**K.DEFAULTS, **desc}
    cfg["species"] = sorted(set(atoms.get_chemical_symbols()))
    cfg["max_atoms"] = max_atoms or len(atoms)
    cfg["max_counts"] = {s: atoms.get_chemical_symbols().count(s) for s in cfg["species"]}
    return cfg


def _methanol(seed=0):
    # a molecule without symmetry: no two row norms or eigenvalues coincide
    at = molecule("CH3OH")
    at.positions += np.random.default_rng(seed).normal(scale=0.05, size=at.positions.shape)
    return at


def _rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)


def _desc(cfg, atoms):
    return np.asarray(K.descriptor_fn(cfg)(jnp.asarray(atoms.positions), jnp.asarray(atoms.numbers)))


@pytest.mark.parametrize("name", list(DESC_CONFIGS))
def test_descriptor_invariant_under_rotation_translation_and_permutation(name):
    at = _methanol()
    cfg = _resolved(DESC_CONFIGS[name], at)
    d0 = _desc(cfg, at)
    moved = at.copy()
    moved.positions = at.positions @ _rotation(3).T + np.array([1.3, -7.0, 2.2])
    perm = np.random.default_rng(5).permutation(len(at))
    shuffled = moved[perm]
    scale = np.abs(d0).max()
    np.testing.assert_allclose(_desc(cfg, moved), d0, atol=1e-11 * scale, rtol=0)
    np.testing.assert_allclose(_desc(cfg, shuffled), d0, atol=1e-11 * scale, rtol=0)


@pytest.mark.parametrize("name", list(DESC_CONFIGS))
def test_padding_atoms_are_ignored_exactly(name):
    at = _methanol()
    cfg = _resolved(DESC_CONFIGS[name], at, max_atoms=len(at) + 3)
    d_short = _desc(cfg, at)              # padded internally with Z = 0 atoms at the origin
    rng = np.random.default_rng(1)
    # explicit padding atoms at random places, interleaved with the real atoms
    pos = np.concatenate([at.positions, rng.normal(size=(3, 3))])
    z = np.concatenate([at.numbers, [0, 0, 0]])
    perm = rng.permutation(len(z))
    d_pad = np.asarray(K.descriptor_fn(cfg)(jnp.asarray(pos[perm]), jnp.asarray(z[perm])))
    np.testing.assert_allclose(d_pad, d_short, atol=1e-11 * np.abs(d_short).max(), rtol=0)
    # the real part equals the descriptor of a model with no padding (zeros appended)
    d_exact = _desc(_resolved(DESC_CONFIGS[name], at), at)
    if name in ("coulomb_eigen", "overlap_s", "overlap_sp"):
        k = len(d_exact)
        np.testing.assert_allclose(d_pad[:k], d_exact, atol=1e-11 * np.abs(d_exact).max(), rtol=0)
        np.testing.assert_allclose(d_pad[k:], 0.0, atol=1e-11 * np.abs(d_exact).max())


def test_coulomb_matrix_and_bag_of_bonds_match_numpy_reference_in_atomic_units():
    at = _methanol()
    bohr = 0.529177210903
    z = at.numbers.astype(float)
    r = np.linalg.norm(at.positions[:, None] - at.positions[None], axis=-1) / bohr
    np.fill_diagonal(r, 1.0)
    ref = np.outer(z, z) / r
    np.fill_diagonal(ref, 0.5 * z ** 2.4)
    m = np.asarray(K.coulomb_matrix(jnp.asarray(at.positions), jnp.asarray(at.numbers), len(at)))
    np.testing.assert_allclose(m, ref, rtol=1e-13)
    w = np.linalg.eigvalsh(ref)
    np.testing.assert_allclose(_desc(_resolved(DESC_CONFIGS["coulomb_eigen"], at), at),
                               w[np.argsort(-np.abs(w))], rtol=1e-11, atol=1e-11)
    # bag of bonds, bag by bag, with one extra slot per bag from larger max_counts
    cfg = _resolved(DESC_CONFIGS["bag_of_bonds"], at, max_atoms=len(at) + 2)
    cfg["max_counts"] = {s: n + 1 for s, n in cfg["max_counts"].items()}
    expected = []
    elems = sorted(set(at.numbers))
    from ase.data import chemical_symbols
    counts = {e: cfg["max_counts"][chemical_symbols[e]] for e in elems}
    for e in elems:
        vals = [0.5 * e ** 2.4] * int(np.sum(at.numbers == e))
        expected += vals + [0.0] * (counts[e] - len(vals))
    for i, a in enumerate(elems):
        for b in elems[i:]:
            vals = sorted((ref[p, q] for p in range(len(at)) for q in range(p + 1, len(at))
                           if {at.numbers[p], at.numbers[q]} == {a, b} and
                           (a != b or at.numbers[p] == a)), reverse=True)
            size = counts[a] * (counts[a] - 1) // 2 if a == b else counts[a] * counts[b]
            expected += vals + [0.0] * (size - len(vals))
    np.testing.assert_allclose(_desc(cfg, at), expected, rtol=1e-12, atol=1e-12)
    assert K.descriptor_size(cfg) == len(expected)


def test_gaussian_s_and_p_overlaps_match_numerical_integration():
    """<s|s>, <s|p>, <p|s>, <p|p> for a C-O pair at a general offset: the
    integrals of products of Cartesian Gaussians factorise into 1D integrals,
    done here by the trapezoidal rule on a fine grid."""
    from ase.data import covalent_radii
    pos = np.array([[0.0, 0.0, 0.0], [0.7, -0.4, 0.9]])
    zs = np.array([6, 8])
    a = 1.0 / (2.0 * covalent_radii[zs] ** 2)
    x = np.linspace(-6.0, 7.0, 26001)

    def orb1d(center, alpha, power):      # factor of an orbital along one axis (unnormalised)
        return (x - center) ** power * np.exp(-alpha * (x - center) ** 2)

    def norm(alpha, p):                   # (2a/pi)^(3/4) (2 sqrt(a))^p
        return (2 * alpha / np.pi) ** 0.75 * (2 * np.sqrt(alpha)) ** p

    def overlap(mu, nu):                  # mu, nu in 0 (s), 1..3 (p_x..p_z)
        val = norm(a[0], mu > 0) * norm(a[1], nu > 0)
        for ax in range(3):
            f = orb1d(pos[0, ax], a[0], int(mu == ax + 1)) * orb1d(pos[1, ax], a[1], int(nu == ax + 1))
            val *= np.trapezoid(f, x)
        return val

    s = np.asarray(K.overlap_matrix(jnp.asarray(pos), jnp.asarray(zs), 2, "sp"))
    for mu in range(4):
        for nu in range(4):
            assert s[mu, 4 + nu] == pytest.approx(overlap(mu, nu), abs=1e-9), (mu, nu)
            assert s[4 + nu, mu] == pytest.approx(s[mu, 4 + nu], abs=1e-15)
    # normalised orbitals: unit diagonal, orthogonal s and p on one centre
    np.testing.assert_allclose(s[:4, :4], np.eye(4), atol=1e-14)
    assert np.linalg.eigvalsh(s).min() > 0      # a Gram matrix of independent functions


@pytest.mark.parametrize("name", list(DESC_CONFIGS))
def test_descriptor_gradients_match_central_finite_differences(name):
    at = _methanol(seed=2)
    cfg = _resolved(DESC_CONFIGS[name], at)
    fn = K.descriptor_fn(cfg)
    z = jnp.asarray(at.numbers)
    w = jnp.asarray(np.random.default_rng(0).normal(size=K.descriptor_size(cfg)))
    f = jax.jit(lambda p: fn(p, z) @ w)
    pos = jnp.asarray(at.positions)
    g = np.asarray(jax.jit(jax.grad(f))(pos))
    u = np.random.default_rng(4).normal(size=pos.shape)
    h = 1e-5
    fd = (float(f(pos + h * u)) - float(f(pos - h * u))) / (2 * h)
    # central differences: error ~ h^2 f''' plus rounding ~ eps |f| / h
    scale = float(jnp.abs(fn(pos, z)).max() * jnp.abs(w).max())
    assert np.sum(g * u) == pytest.approx(fd, abs=1e-6 * scale)


def _square_h4(side=1.0):
    return Atoms("H4", positions=[[0, 0, 0], [side, 0, 0], [side, side, 0], [0, side, 0]])


def test_eigenvalue_gradients_at_degenerate_square_h4_match_finite_differences():
    """The overlap matrix of a square H4 is circulant: eigenvalues
    1 + 2 s1 + s2, 1 - 2 s1 + s2 and 1 - s2 twice. For the doubly degenerate
    pair, the central finite difference of the sorted eigenvalues is the
    mean of the split slopes, which the guarded JVP reproduces; plain
    eigh-based autodiff divides by the zero gap."""
    at = _square_h4()
    cfg = _resolved({"descriptor": "overlap", "orbitals": "s"}, at)
    fn = jax.jit(K.descriptor_fn(cfg))
    z = jnp.asarray(at.numbers)
    pos = jnp.asarray(at.positions, dtype=jnp.float64)
    lam = np.asarray(fn(pos, z))
    assert abs(lam[1] - lam[2]) < 1e-14 or abs(lam[2] - lam[3]) < 1e-14
    jac = np.asarray(jax.jit(jax.jacfwd(lambda p: fn(p, z)))(pos))
    jac_rev = np.asarray(jax.jit(jax.jacrev(lambda p: fn(p, z)))(pos))
    assert np.all(np.isfinite(jac)) and np.all(np.isfinite(jac_rev))
    np.testing.assert_allclose(jac, jac_rev, atol=1e-14)
    rng = np.random.default_rng(0)
    h = 1e-6
    for _ in range(3):
        u = rng.normal(size=pos.shape)
        fd = (np.asarray(fn(pos + h * u, z)) - np.asarray(fn(pos - h * u, z))) / (2 * h)
        # kinked pair: the O(h) second-order mismatch of the two branches
        np.testing.assert_allclose(np.einsum("kij,ij->k", jac, u), fd, atol=1e-5)
    # a kernel model's energy at the symmetric geometry has finite forces
    # that agree with finite differences
    y = jnp.asarray(rng.normal(size=(5, 4)))
    energy = jax.jit(lambda p: jnp.sum(jnp.exp(-jnp.sum((fn(p, z) - y) ** 2, axis=1))))
    g = np.asarray(jax.grad(energy)(pos))
    u = rng.normal(size=pos.shape)
    fd = (float(energy(pos + h * u)) - float(energy(pos - h * u))) / (2 * h)
    assert np.all(np.isfinite(g)) and np.sum(g * u) == pytest.approx(fd, abs=1e-6)


def test_eigenvalue_gradients_near_degeneracy_and_at_tetrahedral_ch4():
    """Near-degenerate square (gap ~1e-4): the Hellmann-Feynman derivative is
    exact, so finite differences with h << gap agree. Tetrahedral CH4 has
    triply degenerate eigenvalues: symmetric functions of the spectrum
    (sum of squares = |S|_F^2, computed independently from the matrix) have
    the exact gradient."""
    at = _square_h4()
    at.positions[2] += [1e-4, 0.0, 0.0]
    cfg = _resolved({"descriptor": "overlap", "orbitals": "s"}, at)
    fn = jax.jit(K.descriptor_fn(cfg))
    z = jnp.asarray(at.numbers)
    pos = jnp.asarray(at.positions)
    lam = np.asarray(fn(pos, z))
    assert 1e-7 < np.min(np.abs(np.diff(lam))) < 1e-3
    jac = np.asarray(jax.jit(jax.jacfwd(lambda p: fn(p, z)))(pos))
    u = np.random.default_rng(1).normal(size=pos.shape)
    h = 1e-8
    fd = (np.asarray(fn(pos + h * u, z)) - np.asarray(fn(pos - h * u, z))) / (2 * h)
    np.testing.assert_allclose(np.einsum("kij,ij->k", jac, u), fd, atol=1e-6)

    ch4 = molecule("CH4")
    cfg = _resolved({"descriptor": "overlap", "orbitals": "sp"}, ch4)
    fn = jax.jit(K.descriptor_fn(cfg))
    z = jnp.asarray(ch4.numbers)
    pos = jnp.asarray(ch4.positions)
    lam = np.asarray(fn(pos, z))
    assert np.sum(np.abs(np.diff(lam)) < 1e-10) >= 2       # degenerate groups exist
    sumsq_eig = lambda p: jnp.sum(fn(p, z) ** 2)
    sumsq_mat = lambda p: jnp.sum(K.overlap_matrix(p, z, len(ch4), "sp") ** 2)
    g_eig, g_mat = jax.jit(jax.grad(sumsq_eig))(pos), jax.jit(jax.grad(sumsq_mat))(pos)
    assert np.all(np.isfinite(np.asarray(g_eig)))
    np.testing.assert_allclose(np.asarray(g_eig), np.asarray(g_mat), atol=1e-12)


def _toy_regression(n=40, m=15, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.05 * rng.normal(size=n)
    return x, y, rng.normal(size=(m, dim))


@pytest.mark.parametrize("kernel, sk_kernel", [("gaussian", "rbf"), ("laplacian", "laplacian")])
def test_kernel_ridge_matches_sklearn_kernel_ridge(kernel, sk_kernel):
    from sklearn.kernel_ridge import KernelRidge
    x, y, xt = _toy_regression()
    sigma, lam = 1.3, 1e-2
    gamma = 1.0 / (2 * sigma ** 2) if kernel == "gaussian" else 1.0 / sigma
    alpha = K.krr_fit(K.kernel_matrix(x, x, kernel, sigma), y, lam)
    pred = np.asarray(K.kernel_matrix(xt, x, kernel, sigma) @ alpha)
    ref = KernelRidge(kernel=sk_kernel, gamma=gamma, alpha=lam).fit(x, y)
    np.testing.assert_allclose(pred, ref.predict(xt), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(np.asarray(alpha), ref.dual_coef_, rtol=1e-8, atol=1e-10)


def test_linear_kernel_ridge_equals_primal_ridge_and_sklearn_ridge():
    from sklearn.linear_model import Ridge
    x, y, xt = _toy_regression()
    lam = 0.3
    w = np.asarray(K.ridge_fit(x, y, lam))
    alpha = K.krr_fit(K.kernel_matrix(x, x, "linear"), y, lam)
    dual = np.asarray(K.kernel_matrix(xt, x, "linear") @ alpha)
    ref = Ridge(alpha=lam, fit_intercept=False).fit(x, y)
    np.testing.assert_allclose(w, ref.coef_, rtol=1e-10)
    np.testing.assert_allclose(xt @ w, dual, rtol=1e-9, atol=1e-12)


def test_gaussian_process_mean_variance_and_likelihood_match_sklearn():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel
    x, y, xt = _toy_regression()
    sigma, s2, noise = 0.9, 1.7, 1e-3
    kern = ConstantKernel(s2, "fixed") * RBF(sigma, "fixed")
    gp = GaussianProcessRegressor(kernel=kern, alpha=noise, optimizer=None, normalize_y=False).fit(x, y)
    ref_mean, ref_std = gp.predict(xt, return_std=True)
    ktt = K.kernel_matrix(x, x, "gaussian", sigma, s2)
    mean, var = K.gp_predict(ktt, y, K.kernel_matrix(xt, x, "gaussian", sigma, s2), np.full(len(xt), s2), noise)
    np.testing.assert_allclose(np.asarray(mean), ref_mean, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(np.sqrt(np.asarray(var)), ref_std, rtol=1e-7, atol=1e-9)
    # at the training points the latent variance shrinks to about the noise level
    _, var_train = K.gp_predict(ktt, y, ktt, np.full(len(x), s2), noise)
    assert np.all(np.asarray(var_train) < 2 * noise) and np.all(np.asarray(var) <= s2)
    assert np.median(np.asarray(var)) > 10 * np.max(np.asarray(var_train))
    # log marginal likelihood: sklearn with alpha=noise is the same model
    lml = K.gp_log_marginal_likelihood(jnp.log(jnp.asarray([sigma, s2, noise])),
                                       K._distance_matrix(x, x, "gaussian"), jnp.asarray(y), "gaussian")
    assert float(lml) == pytest.approx(gp.log_marginal_likelihood_value_, rel=1e-9)


def test_marginal_likelihood_optimisation_increases_log_likelihood():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    x, y, _ = _toy_regression(n=60)
    start = (5.0, 0.1, 0.5)
    (sigma, s2, noise), hist = K.optimize_gp_hyperparameters(x, y, "gaussian", *start, steps=150,
                                                              learning_rate=0.05)
    assert hist[-1] > hist[0] + 5.0
    # check the optimised likelihood independently with sklearn, noise as a WhiteKernel
    kern0 = ConstantKernel(start[1]) * RBF(start[0]) + WhiteKernel(start[2])
    gp = GaussianProcessRegressor(kernel=kern0, optimizer=None).fit(x, y)
    theta = np.log([s2, sigma, noise])
    assert gp.log_marginal_likelihood(theta) > gp.log_marginal_likelihood(np.log([start[1], start[0], start[2]]))
    assert gp.log_marginal_likelihood(theta) == pytest.approx(hist.max(), rel=1e-8)


def _water_data(n, seed=0, scale=0.06):
    from jaxpot.kernels import potential_energies
    rng = np.random.default_rng(seed)
    w = molecule("H2O")
    atoms = []
    for _ in range(n):
        a = w.copy()
        a.positions += rng.normal(scale=scale, size=a.positions.shape)
        a.positions = a.positions @ _rotation(int(rng.integers(1 << 30))).T
        atoms.append(a)
    e, _, _ = potential_energies({"kind": "qtip4pf"}, atoms)
    return atoms, e


@pytest.fixture(scope="module")
def water():
    return _water_data(160)


def test_kernel_model_learns_water_monomer_energies_and_forces_are_autodiff_gradients(water):
    atoms, e = water
    cfg, params = K.fit_kernel({"descriptor": "overlap", "orbitals": "sp", "regularization": 1e-9},
                               atoms[:120], e[:120])
    pred = K.kernel_predict(cfg, params, atoms[120:])
    # a smooth 3-atom surface from 120 samples: held-out error far below the spread
    assert np.mean(np.abs(pred - e[120:])) < 0.05 * np.std(e)
    pot = build_potential(cfg, from_ase(atoms[0]))
    ef = jax.jit(energy_and_forces(pot))
    at = atoms[130]
    ctx = Context(species=jnp.asarray(at.numbers), cell=jnp.zeros((3, 3)))
    pos = jnp.asarray(at.positions)
    e0, f = ef(params, pos, ctx)
    assert float(e0) == pytest.approx(pred[10], abs=1e-10)
    u = np.random.default_rng(0).normal(size=pos.shape)
    en = lambda x: float(ef(params, pos + x * u, ctx)[0])
    h = 2e-3
    fd = (8 * (en(h) - en(-h)) - (en(2 * h) - en(-2 * h))) / (12 * h)     # O(h^4) central difference
    # rounding of the kernel sum, whose terms reach |alpha_k| s^2, dominates the error
    tol = 20 * np.finfo(float).eps * float(np.abs(params["alpha"]).sum()) * cfg["signal_variance"] / h
    assert -np.sum(np.asarray(f) * u) == pytest.approx(fd, abs=tol)
    # padding atoms (Z = 0) beyond the model's max_atoms change nothing and feel no force
    ctx_pad = Context(species=jnp.asarray([0, *at.numbers, 0]), cell=jnp.zeros((3, 3)))
    pos_pad = jnp.concatenate([jnp.ones((1, 3)), pos, -jnp.ones((1, 3))])
    e_pad, f_pad = ef(params, pos_pad, ctx_pad)
    assert float(e_pad) == pytest.approx(float(e0), abs=1e-12 * np.abs(params["alpha"]).sum())
    np.testing.assert_allclose(np.asarray(f_pad)[1:-1], np.asarray(f), atol=1e-9)
    assert np.all(np.asarray(f_pad)[[0, -1]] == 0.0)
    # rotations leave the energy alone, so the forces have no net torque or force
    assert np.abs(np.asarray(f).sum(axis=0)).max() < 1e-10
    assert np.abs(np.cross(at.positions, np.asarray(f)).sum(axis=0)).max() < 1e-9


def test_kernel_model_runs_energy_conserving_nve_from_a_model_directory(water, tmp_path):
    from ase.io import write
    from jaxpot import io
    from jaxpot.potentials.saved import save_model
    from jaxpot.simulate import run_md
    atoms, e = water
    cfg, params = K.fit_kernel({"descriptor": "overlap", "orbitals": "sp", "regularization": 1e-9,
                                "gpr": True}, atoms[:120], e[:120])
    # GP latent variance: ~0 at training structures, ~s^2 far from the data
    s2 = cfg["signal_variance"]
    _, var_train = K.kernel_predict(cfg, params, atoms[:5], variance=True)
    far = molecule("H2O")
    far.positions[1] *= 1.6
    _, var_far = K.kernel_predict(cfg, params, [far], variance=True)
    assert var_train.max() < 1e-4 * s2 and var_far[0] > 0.1 * s2
    save_model(tmp_path / "model", cfg, params)
    write(tmp_path / "h2o.xyz", molecule("H2O"))
    dt, steps = 0.1, 400
    run_md({"system": {"file": str(tmp_path / "h2o.xyz")},
            "potential": {"kind": "model", "path": str(tmp_path / "model")},
            "md": {"ensemble": "nve", "temperature": 300.0, "timestep": dt, "steps": steps,
                   "equilibration_steps": 0, "block_steps": 200, "seed": 1},
            "output": {"directory": str(tmp_path / "run"), "every": 5}}, progress=False)
    th = io.read_thermo(tmp_path / "run" / "thermo.csv")
    pe, cons = th["potential_energy_eV"], th["conserved_eV"]
    assert np.all(np.isfinite(cons)) and np.std(pe) > 1e-3      # the molecule vibrates
    # velocity Verlet with a smooth surface: the conserved energy fluctuates
    # O(dt^2) around a constant, far less than the kinetic<->potential exchange
    # (measured ratio 8e-4 at dt = 0.1 fs, growing as dt^2: 2.8e-3 at 0.2 fs, 1.2e-2 at 0.4 fs)
    assert np.ptp(cons) < 0.005 * np.ptp(pe)


def test_delta_learning_on_a_qtip4pf_baseline_reloads_as_a_sum_model(tmp_path):
    from jaxpot.kernels import potential_energies
    from jaxpot.potentials.saved import save_model
    atoms, e_q = _water_data(40, seed=3)
    e_ref, _, _ = potential_energies({"kind": "spcfw"}, atoms)
    cfg, params = K.fit_kernel({"descriptor": "bag_of_bonds", "regularization": 1e-10,
                                "baseline": {"kind": "qtip4pf"}}, atoms, e_ref)
    assert cfg["kind"] == "sum" and cfg["terms"][0]["kind"] == "qtip4pf"
    # the kernel term alone carries the correction E_ref - E_baseline
    corr = K.kernel_predict(cfg["terms"][1], params[1], atoms)
    np.testing.assert_allclose(corr, e_ref - e_q, atol=1e-4 * np.ptp(e_ref - e_q))
    save_model(tmp_path / "m", cfg, params)
    pot = build_potential({"kind": "model", "path": str(tmp_path / "m")}, from_ase(atoms[0]))
    p = pot.init(jax.random.PRNGKey(0), from_ase(atoms[0]))
    for at, ref in zip(atoms[:3], e_ref[:3]):
        ctx = Context(species=jnp.asarray(at.numbers), cell=jnp.zeros((3, 3)))
        assert float(pot.energy(p, jnp.asarray(at.positions), ctx)) == pytest.approx(ref, abs=1e-4 * np.ptp(e_ref))


def test_resolved_config_rebuilds_the_potential_and_bad_input_is_refused(water):
    atoms, e = water
    cfg, params = K.fit_kernel({"descriptor": "coulomb_eigen", "offset": "mean"}, atoms[:20], e[:20])
    pot = build_potential(dict(cfg), from_ase(atoms[0]))
    assert pot.config == cfg and set(cfg) >= {"sigma", "regularization", "species", "max_atoms", "n_train"}
    with pytest.raises(InputError, match="unknown key"):
        build_potential({**cfg, "cutof": 3.0}, None)
    with pytest.raises(InputError, match="descriptor"):
        build_potential({**cfg, "descriptor": "soap"}, None)
    with pytest.raises(InputError, match="regularization"):
        build_potential({**cfg, "regularization": -1.0}, None)
    with pytest.raises(InputError, match="sigma"):
        build_potential({k: v for k, v in cfg.items() if k != "sigma"}, None)
    box = atoms[0].copy()
    box.set_cell([10, 10, 10])
    box.set_pbc(True)
    with pytest.raises(InputError, match="periodic"):
        build_potential(dict(cfg), from_ase(box))
    with pytest.raises(InputError, match="periodic"):
        K.fit_kernel({}, [box], [0.0])
    with pytest.raises(InputError, match="no parameters for element"):
        build_potential(dict(cfg), from_ase(molecule("CH4")))


def test_gradient_domain_fit_reproduces_training_forces_and_beats_energy_only_fit():
    """GDML-style fit on forces: the Hessian kernel (built by autodiff of
    kernel and descriptor) must agree with autodiff forces of the fitted
    energy, so training forces come back to the regularisation level; and
    3N force labels per structure teach more than one energy."""
    from jaxpot.interop.ase import JaxpotCalculator
    atoms, e = _water_data(70, seed=7)
    calc = JaxpotCalculator({"kind": "qtip4pf"})
    f = []
    for a in atoms:
        b = a.copy()
        b.calc = calc
        f.append(b.get_forces())
    f = np.asarray(f)
    ntr = 30
    # the overlap spectrum is smooth where bag-of-bonds sorting has kinks (the two O-H
    # distances of water cross at the symmetric geometry): gradients of the kernel matter here
    desc = {"descriptor": "overlap", "orbitals": "sp", "regularization": 1e-9}
    pos, z = K.pad_structures(atoms, 3)
    results = {}
    for gd in (False, True):
        cfg, params = K.fit_kernel({**desc, "gradient_domain": gd}, atoms[:ntr], e[:ntr], list(f[:ntr]))
        pot = build_potential(cfg, None)
        ef = jax.jit(jax.vmap(lambda r, zz: energy_and_forces(pot)(
            params, r, Context(species=zz, cell=jnp.zeros((3, 3))))))
        ep, fp = (np.asarray(a) for a in ef(jnp.asarray(pos), jnp.asarray(z)))
        results[gd] = (ep, fp)
        np.testing.assert_allclose(K.kernel_predict(cfg, params, atoms[ntr:]), ep[ntr:], atol=1e-9)
    ep, fp = results[True]
    scale = np.abs(f).mean()
    assert np.abs(fp[:ntr] - f[:ntr]).max() < 1e-4 * scale
    mae_gd = np.abs(fp[ntr:] - f[ntr:]).mean()
    mae_energy_only = np.abs(results[False][1][ntr:] - f[ntr:]).mean()
    assert mae_gd < 0.1 * scale and mae_gd < 0.5 * mae_energy_only
    # the integration constant is fitted to the energies: held-out energies follow
    assert np.abs(ep[ntr:] - e[ntr:]).mean() < 0.1 * np.std(e)


def _soap_config(atoms, **kw):
    cfg = {**K.DEFAULTS, "descriptor": "soap", "kernel": "polynomial", **kw}
    cfg["species"] = sorted(set(atoms.get_chemical_symbols()))
    cfg["max_atoms"] = len(atoms)
    return cfg


def test_soap_power_spectrum_matches_explicit_spherical_harmonics_expansion():
    """The addition-theorem form equals sum_m c_nlm c*_n'lm with c_nlm^Z =
    sum_j g_n(r_ij) f_c(r_ij) Y_lm(r_ij/|r_ij|) built from scipy's Y_lm."""
    from scipy.special import sph_harm_y
    at = _methanol(seed=4)
    cfg = _soap_config(at, cutoff=3.5, n_max=3, l_max=3)
    got = np.asarray(K.descriptor_fn(cfg)(jnp.asarray(at.positions), jnp.asarray(at.numbers)))
    rc, nmax, lmax = 3.5, 3, 3
    rn, w = np.linspace(0, rc, nmax), rc / nmax
    zs = [int(v) for v in species_from_symbols(cfg["species"])]      # the model's element order
    for i in range(len(at)):
        c = np.zeros((len(zs), nmax, lmax + 1, 2 * lmax + 1), complex)
        for j in range(len(at)):
            d = at.positions[j] - at.positions[i]
            r = np.linalg.norm(d)
            if j == i or r >= rc:
                continue
            fc = 0.5 * (np.cos(np.pi * r / rc) + 1)
            theta, phi = np.arccos(d[2] / r), np.arctan2(d[1], d[0])
            for l in range(lmax + 1):
                for m in range(-l, l + 1):
                    c[zs.index(at.numbers[j]), :, l, m + lmax] += (
                        np.exp(-(r - rn) ** 2 / (2 * w * w)) * fc * sph_harm_y(l, m, theta, phi))
        p = np.einsum("anlm,bklm->lnakb", c, c.conj()).real      # order (l, n, Z, n', Z')
        p = p.reshape(-1)
        np.testing.assert_allclose(got[i], p / np.linalg.norm(p), atol=1e-12)


def test_soap_features_are_equivariant_under_permutation_and_ignore_padding():
    at = _methanol()
    cfg = _soap_config(at)
    fn = jax.jit(K.descriptor_fn(cfg))
    p0 = np.asarray(fn(jnp.asarray(at.positions), jnp.asarray(at.numbers)))
    perm = np.random.default_rng(2).permutation(len(at))
    moved = at.positions @ _rotation(1).T + np.array([0.3, 2.0, -1.0])
    p1 = np.asarray(fn(jnp.asarray(moved[perm]), jnp.asarray(at.numbers[perm])))
    np.testing.assert_allclose(p1, p0[perm], atol=1e-12)
    cfg_pad = {**cfg, "max_atoms": len(at) + 2}
    p2 = np.asarray(K.descriptor_fn(cfg_pad)(jnp.asarray(at.positions), jnp.asarray(at.numbers)))
    np.testing.assert_allclose(p2[:len(at)], p0, atol=1e-14)
    assert np.all(p2[len(at):] == 0.0)


def test_gap_style_sparse_soap_model_learns_water_dimer_energies():
    rng = np.random.default_rng(0)
    second = molecule("H2O")
    second.positions = second.positions @ _rotation(8).T + np.array([2.9, 0.3, -0.2])
    base = molecule("H2O") + second            # a water dimer, atoms in O, H, H order
    atoms = []
    for _ in range(130):
        a = base.copy()
        a.positions += rng.normal(scale=0.08, size=a.positions.shape)
        atoms.append(a)
    e, _, _ = K.potential_energies({"kind": "qtip4pf"}, atoms)
    cfg, params = K.fit_kernel({"descriptor": "soap", "cutoff": 3.0, "regularization": 1e-8,
                                "n_sparse": 300}, atoms[:100], e[:100])
    assert cfg["kernel"] == "polynomial" and params["sparse"].shape[0] == 300
    # the resolved config rebuilds the potential; forces are autodiff gradients
    pot = build_potential(cfg, from_ase(atoms[0]))
    ctx = Context(species=jnp.asarray(atoms[0].numbers), cell=jnp.zeros((3, 3)))
    ef = jax.jit(energy_and_forces(pot))
    pred = np.asarray([float(ef(params, jnp.asarray(a.positions), ctx)[0]) for a in atoms[100:]])
    assert np.mean(np.abs(pred - e[100:])) < 0.1 * np.std(e)
    pos = jnp.asarray(atoms[110].positions)
    e0, f = ef(params, pos, ctx)
    u = np.random.default_rng(1).normal(size=pos.shape)
    en = lambda x: float(ef(params, pos + x * u, ctx)[0])
    h = 1e-3
    fd = (8 * (en(h) - en(-h)) - (en(2 * h) - en(-2 * h))) / (12 * h)
    tol = 20 * np.finfo(float).eps * float(np.abs(params["alpha"]).sum()) * len(pos) / h + 1e-7
    assert -np.sum(np.asarray(f) * u) == pytest.approx(fd, abs=tol)
