"""NequIP and MACE potentials (jaxpot.ml): E(3)
symmetry of energy, forces and hidden features, autodiff forces and stress
against finite differences (triclinic cell with periodic images), smoothness
at the cutoff, padding and vmap conventions, float32, a short force fit with
optax, NVE MD through the driver, model-directory round trip, input errors.

Graphs here come from a brute-force pair search over lattice translations
written in this file (independent of jaxpot.partition), padded to one fixed
capacity so that each model compiles once for all tests of one shape.

Tolerances. Energies are float64 sums of O(10^2-10^3) rounding-level terms
through a few layers; an exact symmetry therefore holds to ~1e-14 relative,
and we allow 1e-9 (a broken equivariance shows up at O(1)). Central
differences with step h = 1e-4 A (strain 1e-4) have truncation error
h^2/6 |E'''| with |E'''| <~ 1e2 eV/A^3 for these random networks at
distances >= 0.9 A, i.e. <~ 2e-7 eV/A, plus rounding eps |E|/h ~ 1e-11, so
we allow 1e-6 eV/A (absolute) + 1e-6 relative. float32 agrees with float64
to ~1e3 eps32 ~ 1e-4 relative (error amplification through the layers);
we allow 1e-3.
"""
import itertools

import numpy as np
import pytest

import jax
import jax.numpy as jnp
import e3nn_jax as e3nn
from scipy.spatial.transform import Rotation

import jaxpot  # noqa: F401  (float64)
from jaxpot import io
from jaxpot.partition import NeighborList
from jaxpot.potentials import build_potential
from jaxpot import ml as eq
from jaxpot.potentials.base import Context, energy_and_forces, energy_forces_stress
from jaxpot.system import InputError, System, default_masses, species_from_symbols

RC = 3.0
CAPACITY = 96           # half-list slots in every test graph
TINY = {"species": ["H", "O"], "cutoff": RC, "channels": 4, "l_max": 2, "layers": 2,
        "radial_hidden": 8, "radial_layers": 1, "n_basis": 6}
CONFIGS = {"nequip": dict(TINY, kind="nequip"), "mace": dict(TINY, kind="mace", correlation=3)}
KINDS = list(CONFIGS)
SYMBOLS = ["O", "H", "H", "O", "H", "H"]


# ---------------------------------------------------------------------------
# structures and graphs
# ---------------------------------------------------------------------------

def water_dimer(seed=0):
    """Two water molecules (O, H, H; r_OH 0.96 A, 104.5 deg) with random
    orientations, O-O 2.8 A: every atom has neighbours within 3 A."""
    rng = np.random.default_rng(seed)
    th = np.deg2rad(104.5)
    mol = np.array([[0, 0, 0], [0.96, 0, 0], [0.96 * np.cos(th), 0.96 * np.sin(th), 0]])
    out = []
    for k, origin in enumerate([np.zeros(3), np.array([2.8, 0.3, -0.2])]):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        out.append(origin + mol @ q.T)
    return np.concatenate(out)


def random_points(n, box, seed, dmin=0.9):
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, box, 3)
        if all(np.linalg.norm(p - q) > dmin for q in pos):
            pos.append(p)
    return np.asarray(pos)


def brute_force_neighbors(pos, cell=None, reach=RC + 0.5, capacity=CAPACITY, exclude=()):
    """Half list by looping over all pairs and all lattice translations with
    |s_a| <= 2: pairs (i < j, any s) and self images (i, i, s > 0 lex)
    within ``reach`` A, padded to ``capacity`` slots. ``exclude``: atoms
    left out of the list (to check that the model itself ignores them)."""
    pos = np.asarray(pos, float)
    n = len(pos)
    shifts = [np.zeros(3)] if cell is None else [np.asarray(s, float) for s in
                                                  itertools.product(range(-2, 3), repeat=3)]
    cellm = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    rows = []
    for i in range(n):
        for j in range(i, n):
            if i in exclude or j in exclude:
                continue
            for s in shifts:
                if i == j and not (tuple(s) > (0, 0, 0)):
                    continue
                if np.linalg.norm(pos[j] - pos[i] + s @ cellm) < reach:
                    rows.append((i, j, s))
    assert len(rows) <= capacity, len(rows)
    idx = np.zeros((2, capacity), np.int32)
    sh = np.zeros((capacity, 3))
    mask = np.zeros(capacity, bool)
    for k, (i, j, s) in enumerate(rows):
        idx[:, k], sh[k], mask[k] = (i, j), s, True
    return NeighborList(idx=jnp.asarray(idx), shifts=jnp.asarray(sh), mask=jnp.asarray(mask),
                        reference=jnp.asarray(pos), n_pairs=jnp.int32(len(rows)),
                        max_row=jnp.int32(n), overflow=jnp.asarray(False), n_builds=jnp.int32(1))


def context(pos, symbols=SYMBOLS, cell=None, **kw):
    z = [0 if s == "X" else int(species_from_symbols([s])[0]) for s in symbols]
    c = jnp.zeros((3, 3)) if cell is None else jnp.asarray(cell, jnp.float64)
    return Context(species=jnp.asarray(z, jnp.int32), cell=c, neighbors=brute_force_neighbors(pos, cell, **kw))


def make_system(symbols, positions, cell=None):
    z = species_from_symbols(symbols)
    pbc = cell is not None
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    return System(positions=jnp.asarray(positions, jnp.float64), species=jnp.asarray(z),
                  masses=jnp.asarray(default_masses(z)), cell=jnp.asarray(cell), pbc=(pbc,) * 3)


# the default run covers both models for symmetry, forces, smoothness, padding and
# features; the stress and float32 checks of nequip (same graph code as mace's)
# are in the slow set to keep the default run within its time budget
SLOW_FOR_NEQUIP = pytest.mark.slow


def kinds_with_slow_nequip():
    return [pytest.param("nequip", marks=SLOW_FOR_NEQUIP), "mace"]


_MODELS = {}


def get_model(kind):
    """(potential, params, jitted energy_and_forces) of a tiny model, built
    once per test session (compiling is most of the cost of these tests)."""
    if kind not in _MODELS:
        pot = build_potential(CONFIGS[kind], None)
        params = pot.init(jax.random.PRNGKey(1), None)
        _MODELS[kind] = pot, params, jax.jit(energy_and_forces(pot))
    return _MODELS[kind]


@pytest.fixture(params=KINDS)
def model(request):
    return get_model(request.param)


def assert_close(a, b, rtol, atol=0.0, what=""):
    a, b = np.asarray(a), np.asarray(b)
    err = np.abs(a - b).max()
    assert err <= atol + rtol * np.abs(b).max(), f"{what}: max error {err:.3e} (scale {np.abs(b).max():.3e})"


# ---------------------------------------------------------------------------
# shared radial pieces
# ---------------------------------------------------------------------------

def test_polynomial_envelope_value_slope_and_curvature_vanish_at_the_cutoff():
    # DimeNet eq. 8: u(0) = 1 and u(1) = u'(1) = u''(1) = 0, identical to e3nn's
    # generalised envelope with p - 1 zero derivatives at 0 and 2 at 1
    p = 6
    u = lambda x: eq.polynomial_envelope(x, p)
    assert float(u(0.0)) == 1.0
    for f in (u, jax.grad(u), jax.grad(jax.grad(u))):
        assert abs(float(f(1.0))) < 1e-12
    x = jnp.linspace(0.0, 1.2, 25)
    assert_close(u(x), e3nn.poly_envelope(p - 1, 2)(x), 1e-12, 1e-12, "envelope")


# ---------------------------------------------------------------------------
# symmetry
# ---------------------------------------------------------------------------

def test_energy_invariant_and_forces_equivariant_under_rotation_reflection_translation(model):
    pot, params, ef = model
    pos = water_dimer(seed=2)
    e0, f0 = ef(params, jnp.asarray(pos), context(pos))
    assert np.abs(np.asarray(f0)).max() > 1e-3        # a non-trivial surface
    rng = np.random.default_rng(3)
    R = Rotation.random(random_state=4).as_matrix()
    for Q in (R, -R):                                   # proper rotation, and with an inversion
        t = rng.normal(size=3) * 5
        new = pos @ Q.T + t
        e, f = ef(params, jnp.asarray(new), context(new))
        assert_close(e, e0, 1e-9, what="energy")
        assert_close(f, np.asarray(f0) @ Q.T, 1e-9, what="forces")


def test_energy_invariant_and_forces_permute_under_atom_permutation(model):
    pot, params, ef = model
    pos = water_dimer(seed=5)
    e0, f0 = ef(params, jnp.asarray(pos), context(pos))
    perm = np.random.default_rng(6).permutation(len(pos))
    sym = [SYMBOLS[k] for k in perm]
    e, f = ef(params, jnp.asarray(pos[perm]), context(pos[perm], sym))
    assert_close(e, e0, 1e-9, what="energy")
    assert_close(f, np.asarray(f0)[perm], 1e-9, what="forces")


def test_hidden_vector_and_l2_features_rotate_with_wigner_matrices(model):
    # h_i(R x) = D(R) h_i(x) block by block (D^1 = R in e3nn's xyz basis,
    # D^2 the 5x5 Wigner matrix): an exact statement for every layer
    pot, params, _ = model
    feats = jax.jit(lambda p, x, c: eq.intermediate_features(pot, p, x, c))
    pos = water_dimer(seed=7)
    R = Rotation.random(random_state=8).as_matrix()
    a = feats(params, jnp.asarray(pos), context(pos))
    b = feats(params, jnp.asarray(pos @ R.T), context(pos @ R.T))
    h = a["features_0"]
    assert {1, 2} <= {ir.l for _, ir in h.irreps}
    D = np.asarray(h.irreps.D_from_matrix(jnp.asarray(R)))
    rotated = np.asarray(h.array) @ D.T
    assert np.abs(np.asarray(h.filter(drop="0e").array)).max() > 1e-3     # non-trivial l > 0 features
    assert_close(b["features_0"].array, rotated, 1e-9, what="features")
    for k in a:
        D = np.asarray(a[k].irreps.D_from_matrix(jnp.asarray(R)))
        assert_close(b[k].array, np.asarray(a[k].array) @ D.T, 1e-9, what=k)


# ---------------------------------------------------------------------------
# derivatives and smoothness
# ---------------------------------------------------------------------------

TRICLINIC = np.array([[4.3, 0.0, 0.0], [1.1, 4.0, 0.0], [-0.7, 0.9, 4.2]])


def test_forces_match_central_differences_in_triclinic_cell_with_images(model):
    pot, params, ef = model
    pos = random_points(6, 4.0, seed=9)
    ctx = context(pos, cell=TRICLINIC)
    # periodic images (including an atom's own) are neighbours in this cell
    assert np.any(np.asarray(ctx.neighbors.shifts)[np.asarray(ctx.neighbors.mask)] != 0)
    _, f = ef(params, jnp.asarray(pos), ctx)
    h = 1e-4
    fd = np.zeros_like(pos)
    for a in range(len(pos)):
        for d in range(3):
            p, m = pos.copy(), pos.copy()
            p[a, d] += h
            m[a, d] -= h
            fd[a, d] = -(float(ef(params, jnp.asarray(p), ctx)[0]) - float(ef(params, jnp.asarray(m), ctx)[0])) / (2 * h)
    assert np.abs(fd).max() > 1e-2
    assert_close(f, fd, 1e-6, 1e-6, "forces")


@pytest.mark.parametrize("kind", kinds_with_slow_nequip())
def test_stress_matches_strain_derivative_in_triclinic_cell(kind):
    pot, params, ef = get_model(kind)
    pos = random_points(6, 4.0, seed=10)
    ctx = context(pos, cell=TRICLINIC)
    _, _, sigma = jax.jit(energy_forces_stress(pot))(params, jnp.asarray(pos), ctx)
    vol = abs(np.linalg.det(TRICLINIC))
    h = 1e-4

    def strained(eps):
        deform = np.eye(3) + eps
        return float(ef(params, jnp.asarray(pos @ deform.T), ctx.replace(cell=jnp.asarray(TRICLINIC @ deform.T)))[0])

    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = e[b, a] = 0.5 * h if a != b else h
            fd[a, b] = (strained(e) - strained(-e)) / (2 * h) / vol
    assert np.abs(fd).max() > 1e-4
    assert_close(sigma, fd, 1e-6, 1e-7, "stress")


def test_energy_and_force_vanish_smoothly_as_a_pair_leaves_the_cutoff(model):
    # one O-H pair at distance rc - d, every other atom far away. Each radial
    # basis function sin(n pi r / rc) / r has a simple zero at rc and the
    # envelope u_p(x) ~ (1 - x)^3 (u, u', u'' vanish at x = 1), and the
    # networks are smooth at zero message, so the pair's contribution
    # E(rc - d) - E(beyond) goes as d^4 and the force as d^3; beyond rc the
    # pair contributes exactly nothing
    pot, params, ef = model
    far = np.array([[20.0, 0, 0], [20.0, 0.96, 0], [0, 20.0, 0], [0, 0, 20.0]])

    def at(r):
        pos = np.concatenate([[[0.0, 0, 0], [r * 0.6, r * 0.8, 0.0]], far])
        e, f = ef(params, jnp.asarray(pos), context(pos, ["O", "H", "O", "H", "H", "H"], reach=30.0))
        return float(e), float(np.linalg.norm(np.asarray(f)[1]))

    e_out, f_out = at(RC + 1e-3)
    assert at(RC + 0.3)[0] == pytest.approx(e_out, abs=1e-13) and f_out < 1e-13
    d1, d2 = 0.02, 0.04
    (e1, f1), (e2, f2) = at(RC - d1), at(RC - d2)
    assert abs(e2 - e_out) > 1e-12
    # ratios for a pure power law: 2^4 = 16 (energy) and 2^3 = 8 (force); the
    # next order changes them by O(d / rc) ~ 3 %; allow 20 %
    assert (e2 - e_out) / (e1 - e_out) == pytest.approx(16.0, rel=0.2)
    assert f2 / f1 == pytest.approx(8.0, rel=0.2)


# ---------------------------------------------------------------------------
# padding, batching, precision
# ---------------------------------------------------------------------------

def test_padded_batch_under_vmap_matches_each_unpadded_structure(model):
    # two structures padded to 9 atoms with species 0 (one padding atom on
    # top of a real atom, two on top of each other), batched with vmap: each
    # energy and force equals the unpadded 6-atom result, padding atoms get
    # exactly zero force, and no force is NaN (parameter gradients through
    # padding: the fit test below)
    pot, params, ef = model
    structures = [water_dimer(seed=11), random_points(6, 3.2, seed=12)]
    pads = [np.array([[0.0, 0, 0], [5.0, 5, 5], [5.0, 5, 5]]), np.array([[1.0, 2, 3], [1.0, 2, 3.5], [9, 9, 9]])]
    padded_pos, padded_ctx, ref = [], [], []
    for k, (pos, pad) in enumerate(zip(structures, pads)):
        pad = pad.copy()
        pad[0] = pos[k]            # a padding atom exactly on a real atom
        full = np.concatenate([pos, pad])
        padded_pos.append(full)
        padded_ctx.append(context(full, SYMBOLS + ["X"] * 3))
        ref.append(ef(params, jnp.asarray(pos), context(pos)))
    ctxs = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *padded_ctx)
    e, f = jax.jit(jax.vmap(energy_and_forces(pot), in_axes=(None, 0, 0)))(params, jnp.asarray(np.stack(padded_pos)), ctxs)
    for k, (e_ref, f_ref) in enumerate(ref):
        assert_close(e[k], e_ref, 1e-12, what="energy")
        assert_close(f[k, :6], f_ref, 1e-12, 1e-14, "forces")
        assert np.all(np.asarray(f[k, 6:]) == 0.0)
    assert np.all(np.isfinite(np.asarray(f)))


def test_coincident_atoms_give_finite_energy_and_forces(model):
    # two real atoms on top of each other: the edge direction is undefined, so
    # such an edge is dropped (r < 1e-6 A); nothing may become NaN
    pot, params, ef = model
    pos = water_dimer(seed=14)
    pos[4] = pos[1]
    e, f = ef(params, jnp.asarray(pos), context(pos))
    assert np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(f)))


@pytest.mark.parametrize("kind", kinds_with_slow_nequip())
def test_float32_params_and_positions_run_in_float32_and_agree_with_float64(kind):
    pot, params, ef = get_model(kind)
    pos = water_dimer(seed=13)
    ctx = context(pos)
    e64, f64 = ef(params, jnp.asarray(pos), ctx)
    p32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), params)
    e32, f32 = ef(p32, jnp.asarray(pos, jnp.float32), ctx)
    assert f32.dtype == jnp.float32
    # the hidden features (hence the whole network) are float32, even with a float64 cell
    feats = jax.eval_shape(lambda p, x: eq.intermediate_features(pot, p, x, ctx), p32, jnp.asarray(pos, jnp.float32))
    assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(feats))
    assert_close(e32, e64, 1e-3, what="energy")
    assert_close(f32, f64, 1e-3, what="forces")


# ---------------------------------------------------------------------------
# training and MD
# ---------------------------------------------------------------------------

def morse_cluster_labels(pos):
    """Energy (eV) and forces of a smooth pairwise Morse reference,
    D (1 - exp(-a (r - r0)))^2 - D with D = 0.5 eV, a = 1.5/A, r0 = 1.5 A."""
    def e(x):
        d = x[:, None] - x[None]
        r = jnp.sqrt(jnp.sum(d ** 2, -1) + jnp.eye(len(x)))
        v = 0.5 * (1 - jnp.exp(-1.5 * (r - 1.5))) ** 2 - 0.5
        return 0.5 * jnp.sum(jnp.where(jnp.eye(len(x)) > 0, 0.0, v))
    x = jnp.asarray(pos)
    return float(e(x)), -np.asarray(jax.grad(e)(x))


def test_short_adam_force_fit_to_a_morse_cluster_reduces_the_force_error():
    # three 6-slot structures, the last with 5 atoms and one padding slot, so
    # the parameter gradients also pass through the padding convention
    import optax
    cfg = dict(TINY, kind="nequip", l_max=1, energy_scale=0.1)
    pot = build_potential(cfg, None)
    params = pot.init(jax.random.PRNGKey(0), None)
    pos = [random_points(6, 3.0, seed=20 + k, dmin=1.0) for k in range(3)]
    symbols = [SYMBOLS, SYMBOLS, SYMBOLS[:5] + ["X"]]
    labels = [morse_cluster_labels(p)[1] for p in pos[:2]] + [
        np.concatenate([morse_cluster_labels(pos[2][:5])[1], np.zeros((1, 3))])]
    forces = jnp.asarray(np.stack(labels))
    ctxs = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[context(p, s) for p, s in zip(pos, symbols)])
    xs = jnp.asarray(np.stack(pos))
    ef = jax.vmap(energy_and_forces(pot), in_axes=(None, 0, 0))

    def loss(p):
        return jnp.mean((ef(p, xs, ctxs)[1] - forces) ** 2)

    opt = optax.adam(1e-2)

    @jax.jit
    def step(p, s):
        value, g = jax.value_and_grad(loss)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, value

    state = opt.init(params)
    history = []
    for _ in range(60):
        params, state, value = step(params, state)
        history.append(float(value))
    assert np.all(np.isfinite(history))
    # loss after the last update, from the same compiled step (its update is discarded)
    final = float(step(params, state)[2])
    assert final < 0.25 * history[0], (history[0], final)        # force RMSE at least halved


@pytest.mark.slow   # CI budget: BP's driver NVE test covers ML potentials in run_md on every run
def test_nve_md_with_mace_through_the_driver_gives_finite_energies(tmp_path):
    from ase import Atoms
    from ase.io import write
    from jaxpot.simulate import run_md
    pos = water_dimer(seed=30)
    write(tmp_path / "start.xyz", Atoms(SYMBOLS, positions=pos))
    potential = {"kind": "mace", "species": ["H", "O"], "cutoff": RC, "channels": 4, "l_max": 1,
                 "layers": 1, "radial_hidden": 8, "radial_layers": 1, "energy_scale": 0.1}
    cfg = {
        "system": {"file": str(tmp_path / "start.xyz")},
        "potential": potential,
        "md": {"ensemble": "nve", "temperature": 100.0, "timestep": 0.25, "steps": 40,
               "equilibration_steps": 0, "block_steps": 40},
        "output": {"directory": str(tmp_path / "run"), "every": 10},
    }
    run_md(cfg, progress=False)
    thermo = io.read_thermo(tmp_path / "run" / "thermo.csv")
    pe, cons = np.asarray(thermo["potential_energy_eV"]), np.asarray(thermo["conserved_eV"])
    assert len(cons) == 4 and np.all(np.isfinite(cons)) and np.all(np.isfinite(pe))
    assert np.ptp(pe) > 0                               # the atoms move on this surface
    resolved = io.read_toml(tmp_path / "run" / "config.toml")["potential"]
    assert resolved["correlation"] == 3 and resolved["n_basis"] == 8 and resolved["avg_num_neighbors"] == 10.0


def test_resolved_config_and_saved_model_rebuild_the_same_potential(tmp_path, model):
    # the energy is a function of (module, species table, cutoff, energy
    # scale) built from the configuration alone, and of the params: the
    # configuration read back from TOML must rebuild an equal module and the
    # model directory must return the params bit for bit (and their energy)
    from jaxpot.potentials.saved import save_model
    pot, params, ef = model
    io.write_toml(tmp_path / "p.toml", {"potential": pot.config})
    again = build_potential(io.read_toml(tmp_path / "p.toml")["potential"], None)
    assert again.config == pot.config and again.cutoff == pot.cutoff
    assert eq.build_module(again.config) == eq.build_module(pot.config)
    save_model(tmp_path / "model", pot.config, params)
    pos = water_dimer(seed=31)
    system = make_system(SYMBOLS, pos)
    loaded = build_potential({"kind": "model", "path": str(tmp_path / "model")}, system)
    assert loaded.cutoff == pot.cutoff
    p2 = loaded.init(jax.random.PRNGKey(99), system)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(p2)
    ctx = context(pos)
    assert float(ef(p2, jnp.asarray(pos), ctx)[0]) == float(ef(params, jnp.asarray(pos), ctx)[0])


# ---------------------------------------------------------------------------
# input errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_unknown_element_in_system_gives_input_error_naming_it(kind):
    system = make_system(["O", "H", "N"], random_points(3, 3.0, seed=40))
    with pytest.raises(InputError, match="N"):
        build_potential(CONFIGS[kind], system)
    build_potential(CONFIGS[kind], make_system(["O", "H", "H"], random_points(3, 3.0, seed=40)))


@pytest.mark.parametrize("change,message", [
    ({"colour": 1}, "unknown key(s) for potential kind 'mace': colour"),
    ({"species": []}, "species"),
    ({"species": ["H", "Xx"]}, "Xx"),
    ({"l_max": 7}, "l_max"),
    ({"channels": 0}, "channels"),
    ({"cutoff": -1.0}, "cutoff"),
    ({"correlation": 2.5}, "correlation"),
    ({"avg_num_neighbors": "many"}, "avg_num_neighbors"),
])
def test_bad_configuration_gives_input_error_naming_the_problem(change, message):
    with pytest.raises(InputError) as err:
        build_potential(dict(CONFIGS["mace"], **change), None)
    assert message in str(err.value)


def test_defaults_are_filled_into_the_resolved_configuration():
    for kind, layers, radial_layers in (("nequip", 3, 2), ("mace", 2, 3)):
        cfg = build_potential({"kind": kind, "species": ["H", "O"]}, None).config
        assert cfg["layers"] == layers and cfg["radial_layers"] == radial_layers
        assert cfg["cutoff"] == 5.0 and cfg["channels"] == 32 and cfg["l_max"] == 2 and cfg["n_basis"] == 8
        assert cfg["avg_num_neighbors"] == 10.0 and cfg["energy_scale"] == 1.0 and cfg["seed"] == 0
    assert build_potential({"kind": "mace", "species": ["H"]}, None).config["correlation"] == 3
