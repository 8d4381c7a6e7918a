"""Behler-Parrinello potential: symmetry functions against a direct NumPy
double/triple loop (clusters and a triclinic cell with self images),
symmetry of energy and forces, autodiff forces and stress against finite
differences, smoothness at the cutoff, padding and batching conventions,
overflow reporting, standardisation, a force fit with optax, float32, NVE
MD through the driver and input errors.

Tolerances: the features are sums of O(10-100) float64 terms of size <= 1,
so they agree with the loop to ~1e-14 relative; we allow 1e-10. Central
differences with h = 1e-4 A (strain 1e-5) have truncation error
h^2/6 |E'''|; with Gaussian widths down to ~0.35 A here |E'''| <~ 1e2
eV/A^3, i.e. <~ 2e-7 eV/A, plus rounding eps |E| / h ~ 1e-11; we allow
1e-6 eV/A (a wrong derivative term is off by >~ 1e-3).
"""
import itertools
import json

import numpy as np
import pytest

import jax
import jax.numpy as jnp

import jaxpot  # noqa: F401  (float64)
from jaxpot import io
from jaxpot.partition import NeighborList, neighbor_list
from jaxpot.potentials import build_potential
from jaxpot.ml import behler_parrinello as bp
from jaxpot.potentials.base import Context, energy_and_forces, energy_forces_stress
from jaxpot.system import InputError, System, default_masses, species_from_symbols

RC = 4.0
SMALL = {"kind": "behler_parrinello", "cutoff": RC, "radial": 5, "angular": 2, "hidden": [8, 8],
         "zetas": [1.0, 2.0]}


def make_system(symbols, positions, cell=None):
    z = species_from_symbols(symbols)
    pbc = cell is not None
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    return System(positions=jnp.asarray(positions, jnp.float64), species=jnp.asarray(z),
                  masses=jnp.asarray(default_masses(z)), cell=jnp.asarray(cell), pbc=(pbc,) * 3)


def numpy_neighbor_list(positions, cell, periodic, cutoff, capacity=None):
    """A half neighbor list in jaxpot's format built by brute force in NumPy
    (every atom pair and lattice translation; self images with a
    lexicographically positive shift), padded with masked slots."""
    pos = np.asarray(positions, float)
    cell = np.asarray(cell, float)
    n = len(pos)
    reps = [range(1)] * 3
    if periodic:
        vol = abs(np.linalg.det(cell))
        widths = [vol / np.linalg.norm(np.cross(cell[(a + 1) % 3], cell[(a + 2) % 3])) for a in range(3)]
        reps = [range(-int(np.ceil(cutoff / w)), int(np.ceil(cutoff / w)) + 1) for w in widths]
    rows = []
    for i in range(n):
        for j in range(i, n):
            for t in itertools.product(*reps):
                if j == i and not (t > (0, 0, 0)):
                    continue
                if np.linalg.norm(pos[j] + np.asarray(t) @ cell - pos[i]) < cutoff:
                    rows.append((i, j, t))
    cap = len(rows) + 8 if capacity is None else capacity
    assert cap >= len(rows)
    idx = np.zeros((2, cap), np.int32)
    shifts = np.zeros((cap, 3))
    mask = np.zeros(cap, bool)
    for k, (i, j, t) in enumerate(rows):
        idx[:, k], shifts[k], mask[k] = (i, j), t, True
    return NeighborList(idx=jnp.asarray(idx), shifts=jnp.asarray(shifts), mask=jnp.asarray(mask),
                        reference=jnp.asarray(pos), n_pairs=jnp.int32(len(rows)), max_row=jnp.int32(0),
                        overflow=jnp.asarray(False), n_builds=jnp.int32(1), row_capacity=n)


def make_context(system, cutoff=RC + 0.5, capacity=None, positions=None):
    pos = system.positions if positions is None else positions
    nbr = numpy_neighbor_list(pos, system.cell, system.periodic, cutoff, capacity)
    return Context(species=system.species, cell=system.cell, neighbors=nbr)


def jaxpot_context(system, skin=0.5):
    nbr = neighbor_list(RC, np.asarray(system.cell), system.periodic, skin=skin).allocate(system.positions, system.cell)
    return Context(species=system.species, cell=system.cell, neighbors=nbr)


def random_cluster(n, box, seed, dmin=0.9):
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, box, 3)
        if all(np.linalg.norm(p - q) > dmin for q in pos):
            pos.append(p)
    return np.asarray(pos)


CLUSTER_SYMBOLS = ["O", "H", "H", "O", "H", "C", "H"]


@pytest.fixture(scope="module")
def cluster():
    return make_system(CLUSTER_SYMBOLS, random_cluster(7, 3.2, seed=1))


# ---------------------------------------------------------------------------
# an independent NumPy evaluation, straight from Behler JCP 134, 074106 (2011)
# ---------------------------------------------------------------------------

def numpy_symmetry_functions(pos, symbols, species, cell, periodic, rc, radial, angular):
    """G2 per neighbor element and G4/G5 per unordered element pair, summed
    over each unordered neighbor pair j < k once, neighbors found by looping
    over every atom and every lattice translation."""
    pos = np.asarray(pos, float)
    n, ne = len(pos), len(species)
    el = [species.index(s) for s in symbols]
    pairs_order = [(a, b) for a in range(ne) for b in range(a, ne)]
    pair_of = {}
    for c, (a, b) in enumerate(pairs_order):
        pair_of[(a, b)] = pair_of[(b, a)] = c
    fc = lambda r: 0.5 * (np.cos(np.pi * r / rc) + 1.0) if r < rc else 0.0  # noqa: E731
    reps = range(-3, 4) if periodic else range(1)
    eta_r, rs_r = radial
    eta_a, zeta, lam, rs_a, is_g4 = angular
    out = np.zeros((n, ne * len(eta_r) + len(pairs_order) * len(eta_a)))
    for i in range(n):
        neigh = []
        for j in range(n):
            for t in itertools.product(reps, repeat=3):
                if j == i and t == (0, 0, 0):
                    continue
                v = pos[j] + np.asarray(t) @ np.asarray(cell) - pos[i]
                if np.linalg.norm(v) < rc:
                    neigh.append((el[j], v))
        for e, v in neigh:
            r = np.linalg.norm(v)
            for p in range(len(eta_r)):
                out[i, e * len(eta_r) + p] += np.exp(-eta_r[p] * (r - rs_r[p]) ** 2) * fc(r)
        off = ne * len(eta_r)
        for a in range(len(neigh)):
            for b in range(a + 1, len(neigh)):
                (ea, va), (eb, vb) = neigh[a], neigh[b]
                rj, rk, rjk = np.linalg.norm(va), np.linalg.norm(vb), np.linalg.norm(vb - va)
                cos = va @ vb / (rj * rk)
                c = pair_of[(ea, eb)]
                for p in range(len(eta_a)):
                    t = 2.0 ** (1 - zeta[p]) * (1 + lam[p] * cos) ** zeta[p]
                    t *= np.exp(-eta_a[p] * ((rj - rs_a[p]) ** 2 + (rk - rs_a[p]) ** 2)) * fc(rj) * fc(rk)
                    if is_g4[p]:
                        t *= np.exp(-eta_a[p] * (rjk - rs_a[p]) ** 2) * fc(rjk)
                    out[i, off + c * len(eta_a) + p] += t
    return out


EXPLICIT_ANGULAR = [
    {"eta": 0.05, "zeta": 1.0, "lambda": 1.0, "type": "g4"},
    {"eta": 0.2, "zeta": 4.0, "lambda": -1.0, "type": "g4", "r_s": 0.5},
    {"eta": 0.02, "zeta": 2.0, "lambda": 1.0, "type": "g5"},
    {"eta": 0.3, "zeta": 1.5, "lambda": -1.0, "type": "g5", "r_s": 1.0},
]


def reference_features(pot, system):
    radial, angular = bp.symmetry_function_parameters(pot.config)
    return numpy_symmetry_functions(
        system.positions, system.symbols, pot.config["species"], np.asarray(system.cell), system.periodic,
        pot.config["cutoff"], (radial["eta"], radial["r_s"]),
        (angular["eta"], angular["zeta"], angular["lambda"], angular["r_s"], angular["is_g4"]))


@pytest.fixture(scope="module")
def cluster_model(cluster):
    """A three-element potential on the 7-atom cluster, its params, context
    and jitted energy-and-forces (shared, to compile once)."""
    pot = build_potential(dict(SMALL, species=["H", "C", "O"]), cluster)
    params = pot.init(jax.random.PRNGKey(0), cluster)
    ctx = make_context(cluster, capacity=32)
    ef = jax.jit(energy_and_forces(pot))
    e0, f0 = ef(params, cluster.positions, ctx)
    return pot, params, ctx, ef, e0, f0


def test_symmetry_functions_of_a_cluster_match_numpy_triple_loop(cluster):
    cfg = dict(SMALL, species=["H", "C", "O"], radial=[{"eta": 0.5, "r_s": 0.0}, {"eta": 2.0, "r_s": 1.0},
                                                       {"eta": 4.0, "r_s": 2.5}], angular=EXPLICIT_ANGULAR)
    pot = build_potential(cfg, cluster)
    g = np.asarray(bp.symmetry_functions(pot, cluster.positions, make_context(cluster)))
    ref = reference_features(pot, cluster)
    assert g.shape == (7, 3 * 3 + 6 * 4)
    # G4 and G5 channels of several element pairs are really exercised
    assert np.sum(ref[:, 9:].max(axis=0) > 1e-4) >= 16
    np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-13)


def test_symmetry_functions_in_narrow_triclinic_cell_count_every_periodic_image():
    # cell widths ~2.6-3.2 A < cutoff 4 A: each atom sees several images of
    # every atom, its own included; the list comes from jaxpot's neighbor search
    cell = np.array([[3.1, 0.0, 0.0], [0.9, 2.9, 0.0], [0.4, -0.6, 3.3]])
    frac = np.array([[0.1, 0.1, 0.1], [0.6, 0.4, 0.3], [0.3, 0.8, 0.7]])
    system = make_system(["Si", "C", "Si"], frac @ cell, cell)
    cfg = dict(SMALL, species=["C", "Si"], radial_grid="centred", angular_grid="shifted",
               angular_type="g5", angular=3)
    pot = build_potential(cfg, system)
    g = np.asarray(bp.symmetry_functions(pot, system.positions, jaxpot_context(system)))
    np.testing.assert_allclose(g, reference_features(pot, system), rtol=1e-10, atol=1e-13)


def test_generated_grids_follow_n2p2_shifted_and_centred_rules():
    # shifted: Gaussians exp(-(r - r_k)^2 / (2 sigma^2)) centred on the grid
    # with sigma = grid spacing; centred: at r = 0 with sigma = r_k
    eta, rs = bp.radial_grid(5, 1.0, 5.0, "shifted")
    np.testing.assert_allclose(rs, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(1 / np.sqrt(2 * eta), 1.0)
    eta, rs = bp.radial_grid(3, 1.0, 4.0, "centred")
    np.testing.assert_allclose(1 / np.sqrt(2 * eta), [1.0, 2.5, 4.0])
    assert np.all(rs == 0)
    cfg = bp.resolve_config({"species": ["H"], "cutoff": 5.0, "angular": 2, "zetas": [1, 4]})
    assert cfg["grid_r_max"] == 4.5
    _, ang = bp.symmetry_function_parameters(cfg)
    assert len(ang["eta"]) == 2 * 2 * 2 and set(ang["lambda"]) == {-1.0, 1.0}


# ---------------------------------------------------------------------------
# symmetry, derivatives, smoothness
# ---------------------------------------------------------------------------

def test_energy_invariant_and_forces_equivariant_under_rotation_translation_permutation(cluster, cluster_model):
    pot, params, _, ef, e0, f0 = cluster_model
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    perm = rng.permutation(7)
    pos = (np.asarray(cluster.positions) @ q.T + [3.0, -1.0, 7.5])[perm]
    moved = make_system([CLUSTER_SYMBOLS[k] for k in perm], pos)
    e1, f1 = ef(params, moved.positions, make_context(moved, capacity=32))
    assert abs(e1 - e0) <= 1e-6 * abs(e0)
    expected = np.asarray(f0)[perm] @ q.T
    assert np.abs(np.asarray(f1) - expected).max() <= 1e-6 * np.abs(expected).max()
    assert np.abs(np.asarray(f0).sum(axis=0)).max() < 1e-10    # no net force on an isolated cluster


def test_forces_and_stress_match_finite_differences_in_triclinic_cell():
    cell = np.array([[4.2, 0.0, 0.0], [1.1, 3.9, 0.0], [-0.7, 0.5, 4.4]])
    frac = np.array([[0.05, 0.1, 0.2], [0.55, 0.35, 0.25], [0.3, 0.75, 0.65], [0.8, 0.6, 0.9]])
    system = make_system(["O", "H", "H", "O"], frac @ cell, cell)
    pot = build_potential(dict(SMALL, species=["H", "O"]), system)
    params = pot.init(jax.random.PRNGKey(1), system)
    ctx = jaxpot_context(system)
    e, f, s = jax.jit(energy_forces_stress(pot))(params, system.positions, ctx)
    pos0 = np.asarray(system.positions)

    @jax.jit
    def strained(eps, pos):
        d = jnp.eye(3) + eps
        return pot.energy(params, pos @ d.T, ctx.replace(cell=jnp.asarray(cell) @ d.T))

    zero = jnp.zeros((3, 3))
    h = 1e-4
    fd = np.zeros_like(pos0)
    for i in range(4):
        for k in range(3):
            d = np.zeros_like(pos0)
            d[i, k] = h
            fd[i, k] = -(strained(zero, pos0 + d) - strained(zero, pos0 - d)) / (2 * h)
    assert np.abs(fd).max() > 1e-3
    np.testing.assert_allclose(np.asarray(f), fd, atol=1e-6)
    vol = abs(np.linalg.det(cell))
    hs = 1e-5
    fs = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] += 0.5 * hs
            eps[b, a] += 0.5 * hs
            fs[a, b] = (strained(eps, pos0) - strained(-eps, pos0)) / (2 * hs) / vol
    assert np.abs(fs).max() > 1e-4
    # dE/d(eps) to ~1e-6 eV, divided by the volume (~70 A^3)
    np.testing.assert_allclose(np.asarray(s), fs, atol=1e-6 / vol)
    np.testing.assert_allclose(np.asarray(s), np.asarray(s).T, atol=1e-12)


def test_energy_and_forces_continuous_as_an_atom_crosses_the_cutoff():
    # atom 2 moves along x through r = rc from atom 0 (and beyond atom 1's
    # cutoff): f_c ~ (pi/2)^2 (1 - r/rc)^2 near rc, so E jumps by O(delta^2)
    # and F by O(delta) across a gap of 2 delta
    base = np.array([[0.0, 0.0, 0.0], [-1.2, 0.5, 0.0]])
    pot = build_potential(dict(SMALL, species=["H", "O"]), None)
    sym = ["O", "H", "H"]
    params = pot.init(jax.random.PRNGKey(2), None)
    ef = jax.jit(energy_and_forces(pot))

    def at(x):
        s = make_system(sym, np.vstack([base, [[x, 0.0, 0.0]]]))
        return ef(params, s.positions, make_context(s, cutoff=RC + 2.0, capacity=8))

    delta = 1e-6
    e_in, f_in = at(RC - delta)
    e_out, f_out = at(RC + delta)
    e_mid, _ = at(RC - 1.0)
    assert abs(float(e_mid - e_out)) > 1e-4          # the atom does interact inside the cutoff
    assert abs(float(e_in - e_out)) < 1e-9
    assert np.abs(np.asarray(f_in - f_out)).max() < 1e-4
    assert np.all(np.asarray(f_out)[2] == 0.0)        # beyond the cutoff: exactly no force
    e_far, _ = at(RC + 0.7)
    assert float(e_far) == pytest.approx(float(e_out), abs=1e-13)


# ---------------------------------------------------------------------------
# padding, batching, degenerate geometry, overflow
# ---------------------------------------------------------------------------

def test_padding_atoms_and_masked_slots_contribute_nothing(cluster, cluster_model):
    pot, params, _, ef, e0, f0 = cluster_model
    # three padding atoms: one on top of a real atom, two near the cluster;
    # the list is built with them present (as for batched data), plus 16 masked
    # slots whose indices point at real atoms
    extra = np.vstack([np.asarray(cluster.positions)[2], [1.0, 1.0, 1.0], [0.3, 2.0, 0.4]])
    pos = jnp.asarray(np.vstack([np.asarray(cluster.positions), extra]))
    species = jnp.concatenate([cluster.species, jnp.zeros(3, jnp.int32)])
    nbr = numpy_neighbor_list(pos, np.zeros((3, 3)), False, RC + 0.5)
    n_real = int(nbr.n_pairs)
    assert n_real > 21                                 # pairs with padding atoms are in the list
    idx = np.asarray(nbr.idx).copy()
    idx[:, n_real:] = [[0], [1]]
    nbr = nbr.replace(idx=jnp.asarray(idx), shifts=nbr.shifts.at[n_real:].set(1.0))
    ctx = Context(species=species, cell=cluster.cell, neighbors=nbr)
    e1, f1 = ef(params, pos, ctx)
    assert float(e1) == pytest.approx(float(e0), rel=1e-12)
    np.testing.assert_allclose(np.asarray(f1)[:7], np.asarray(f0), rtol=0, atol=1e-12)
    assert np.all(np.asarray(f1)[7:] == 0.0)
    gp = jax.jit(jax.grad(lambda p: pot.energy(p, pos, ctx)))(params)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(gp))


def test_batched_vmap_energy_equals_single_structure_energies():
    pot = build_potential(dict(SMALL, species=["H", "O"], max_neighbors=8), None)
    params = pot.init(jax.random.PRNGKey(4), None)
    systems = [make_system(["O", "H", "H", "O", "H"], random_cluster(5, 2.8, seed=s)) for s in (10, 11, 12)]
    ctxs = [make_context(s, capacity=16) for s in systems]
    bpos = jnp.stack([s.positions for s in systems])
    bctx = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *ctxs)
    ef = energy_and_forces(pot)
    eb, fb = jax.jit(jax.vmap(ef, in_axes=(None, 0, 0)))(params, bpos, bctx)
    single = jax.jit(ef)
    for k, (s, c) in enumerate(zip(systems, ctxs)):
        e, f = single(params, s.positions, c)
        assert float(eb[k]) == pytest.approx(float(e), rel=1e-12)
        np.testing.assert_allclose(np.asarray(fb[k]), np.asarray(f), atol=1e-12)


def test_coincident_and_collinear_atoms_give_finite_gradients():
    # atoms 0 and 1 coincide (r = 0); 2, 0, 3 are collinear (cos theta = -1)
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.5, 0.0, 0.0], [0.0, 1.2, 0.3]])
    system = make_system(["O", "H", "H", "O", "H"], pos)
    pot = build_potential(dict(SMALL, species=["H", "O"], max_neighbors=8), None)
    params = pot.init(jax.random.PRNGKey(5), None)
    ctx = make_context(system)
    ef = energy_and_forces(pot)

    @jax.jit
    def run(p):
        e, f = ef(p, system.positions, ctx)
        return e, f, jax.grad(lambda q: jnp.sum(ef(q, system.positions, ctx)[1] ** 2))(p)

    e, f, g = run(params)
    assert np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(f)))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(g))


def test_atom_blocks_of_the_angular_sum_do_not_change_energy_or_forces(cluster, cluster_model):
    pot, params, ctx, _, e0, f0 = cluster_model
    for block in (0, 3):      # all atoms at once; three blocks with a padded last one
        other = build_potential(dict(pot.config, atom_block=block), cluster)
        e, f = jax.jit(energy_and_forces(other))(params, cluster.positions, ctx)
        assert float(e) == pytest.approx(float(e0), rel=1e-12)
        np.testing.assert_allclose(np.asarray(f), np.asarray(f0), rtol=0, atol=1e-12 * np.abs(f0).max())


def test_too_many_neighbors_is_never_silent(cluster, cluster_model):
    _, params, ctx, _, _, _ = cluster_model
    cfg = dict(SMALL, species=["H", "C", "O"])
    # with a system, a capacity too small for it is raised (1.25 x 6 + 4 -> 16)
    assert build_potential(dict(cfg, max_neighbors=3), cluster).config["max_neighbors"] == 16
    pot = build_potential(dict(cfg, max_neighbors=5), None)     # no system: nothing to size it on
    assert int(bp.max_neighbor_count(pot, cluster.positions, ctx)) == 6
    e, f = jax.jit(energy_and_forces(pot))(params, cluster.positions, ctx)
    assert np.isnan(float(e)) and np.all(np.isnan(np.asarray(f)))


# ---------------------------------------------------------------------------
# standardisation and fitting
# ---------------------------------------------------------------------------

def test_standardize_from_data_gives_zero_mean_unit_std_per_element_ignoring_padding():
    pot = build_potential(dict(SMALL, species=["H", "O", "N"], max_neighbors=8), None)
    params = pot.init(jax.random.PRNGKey(6), None)
    n_real = [5, 4]
    systems, ctxs = [], []
    for s, n in zip((20, 21), n_real):
        pos = np.vstack([random_cluster(n, 2.8, seed=s), np.full((5 - n, 3), 0.5)])
        z = np.concatenate([species_from_symbols(["O", "H", "H", "O", "H"][:n]), np.zeros(5 - n, np.int32)])
        sysm = System(positions=jnp.asarray(pos), species=jnp.asarray(z), masses=jnp.ones(5),
                      cell=jnp.zeros((3, 3)), pbc=(False,) * 3)
        systems.append(sysm)
        ctxs.append(make_context(sysm, capacity=16))
    bpos = jnp.stack([s.positions for s in systems])
    bctx = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *ctxs)
    new = bp.standardize_from_data(pot, params, bpos, bctx)
    g = np.concatenate([np.asarray(bp.symmetry_functions(pot, s.positions, c))[:n]
                        for s, c, n in zip(systems, ctxs, n_real)])
    z = np.concatenate([np.asarray(s.species)[:n] for s, n in zip(systems, n_real)])
    for k, zk in enumerate((1, 8)):
        x = g[z == zk]
        np.testing.assert_allclose(np.asarray(new["feature_mean"][k]), x.mean(axis=0), rtol=1e-12, atol=1e-14)
        spread = x.std(axis=0)
        assert np.sum(spread > 1e-3) > 10
        np.testing.assert_allclose(np.asarray(new["feature_std"][k]),
                                   np.where(spread > 1e-8 * (1 + np.abs(x.mean(0))), spread, 1.0), rtol=1e-12)
    # N is absent from the data: identity standardisation
    assert np.all(np.asarray(new["feature_mean"][2]) == 0) and np.all(np.asarray(new["feature_std"][2]) == 1)
    assert new["networks"] is params["networks"]


def lj_forces(pos, sigma=2.2, eps=0.05):
    """Lennard-Jones forces (eV/A) of a cluster, every pair, in NumPy."""
    d = pos[:, None] - pos[None]
    r = np.linalg.norm(d, axis=-1) + np.eye(len(pos))
    dv = 24 * eps * (2 * (sigma / r) ** 12 - (sigma / r) ** 6) / r ** 2 * (1 - np.eye(len(pos)))
    return np.sum(dv[..., None] * d, axis=1)


def test_adam_fit_to_lennard_jones_forces_reduces_force_error_tenfold():
    import optax
    pot = build_potential(dict(SMALL, species=["Ar"], hidden=[16, 16], grid_r_min=1.8, radial=6,
                               max_neighbors=8), None)
    rng = np.random.default_rng(7)
    base = np.array([[0, 0, 0], [2.5, 0, 0], [1.25, 2.1, 0], [1.25, 0.7, 2.0], [-1.2, 1.9, 1.1]], float)
    positions = [base + rng.normal(scale=0.15, size=base.shape) for _ in range(12)]
    systems = [make_system(["Ar"] * 5, p) for p in positions]
    ctxs = [make_context(s, capacity=16) for s in systems]
    bpos = jnp.stack([s.positions for s in systems])
    bctx = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *ctxs)
    fref = jnp.asarray(np.stack([lj_forces(p) for p in positions]))
    assert float(jnp.sqrt(jnp.mean(fref ** 2))) > 0.05
    params = bp.standardize_from_data(pot, pot.init(jax.random.PRNGKey(8), None), bpos, bctx)
    forces = jax.vmap(energy_and_forces(pot), in_axes=(None, 0, 0))

    def loss(p):
        return jnp.mean((forces(p, bpos, bctx)[1] - fref) ** 2)

    opt = optax.adam(3e-3)

    @jax.jit
    def steps(p, s):
        def one(carry, _):
            p, s = carry
            lv, g = jax.value_and_grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), lv
        (p, s), losses = jax.lax.scan(one, (p, s), None, length=300)
        return p, losses, loss(p)

    _, losses, last = steps(params, opt.init(params))
    # force RMSE down by >= 10x (the MSE by >= 100x)
    assert np.sqrt(float(last)) < 0.1 * np.sqrt(float(losses[0])), (float(losses[0]), float(last))


def test_float32_evaluation_agrees_with_float64(cluster, cluster_model):
    from jaxpot.simulate import cast_params
    pot, params, ctx, _, e64, f64 = cluster_model
    p32 = cast_params(params, jnp.float32)
    ctx32 = ctx.replace(cell=ctx.cell.astype(jnp.float32))
    e32, f32 = jax.jit(energy_and_forces(pot))(p32, cluster.positions.astype(jnp.float32), ctx32)
    assert f32.dtype == jnp.float32 and p32["feature_std"].dtype == jnp.float32
    # float32 rounding (eps 6e-8) amplified by O(10-100) feature sums and
    # the layer products: 1e-5 relative is ~100 eps
    scale = np.abs(np.asarray(f64)).max()
    assert abs(float(e32) - float(e64)) < 1e-5 * max(1.0, abs(float(e64)))
    assert np.abs(np.asarray(f32, np.float64) - np.asarray(f64)).max() < 1e-4 * scale
    assert abs(float(e32) - float(e64)) > 0          # it did run in single precision


# ---------------------------------------------------------------------------
# configuration, model directories, driver
# ---------------------------------------------------------------------------

def test_resolved_config_survives_toml_and_model_directory(tmp_path, cluster, cluster_model):
    from jaxpot.potentials.saved import save_model
    pot, params, ctx, _, e0, _ = cluster_model
    io.write_toml(tmp_path / "p.toml", {"potential": pot.config})
    again = build_potential(io.read_toml(tmp_path / "p.toml")["potential"], cluster)
    assert again.config == pot.config
    explicit = build_potential(dict(SMALL, species=["H", "C", "O"], angular=EXPLICIT_ANGULAR), cluster)
    io.write_toml(tmp_path / "q.toml", {"potential": explicit.config})
    assert build_potential(io.read_toml(tmp_path / "q.toml")["potential"], cluster).config == explicit.config
    save_model(tmp_path / "model", pot.config, params)
    loaded = build_potential({"kind": "model", "path": str(tmp_path / "model")}, cluster)
    e_loaded = jax.jit(loaded.energy)(loaded.init(jax.random.PRNGKey(99), cluster), cluster.positions, ctx)
    assert float(e_loaded) == pytest.approx(float(e0), rel=1e-14)
    # the features of a model directory's potential are reachable too
    assert bp.symmetry_functions(loaded, cluster.positions, ctx).shape == (7, 3 * 5 + 6 * 8)


@pytest.mark.parametrize("change,message", [
    ({"species": ["H", "O"]}, "no parameters for element(s) C"),
    ({"colour": 1}, "unknown key(s) for potential kind 'behler_parrinello': colour"),
    ({"species": []}, "needs 'species'"),
    ({"species": ["H", "Xx", "C", "O"]}, "unknown element 'Xx'"),
    ({"cutoff": -1.0}, "cutoff must be positive"),
    ({"activation": "relu6"}, "unknown behler_parrinello activation"),
    ({"radial": 1}, "shifted symmetry-function grid needs at least 2"),
    ({"zetas": [0.5]}, "zeta must be >= 1"),
    ({"angular": [{"eta": 0.1, "zeta": 1, "lambda": 0.5}]}, "lambda must be +1 or -1"),
    ({"angular": [{"eta": 0.1, "zeta": 1}]}, "needs lambda"),
    ({"hidden": 32}, "hidden must be a list"),
    ({"grid_r_max": 9.0}, "grid_r_min < grid_r_max <= cutoff"),
    ({"atom_block": -1}, "atom_block must be >= 0"),
])
def test_bad_configuration_raises_input_error_naming_the_problem(cluster, change, message):
    with pytest.raises(InputError) as err:
        build_potential({**SMALL, "species": ["H", "C", "O"], **change}, cluster)
    assert message in str(err.value)


def test_nve_md_through_the_driver_conserves_energy(tmp_path):
    from ase import Atoms
    from ase.io import write
    from jaxpot.simulate import run_md
    pos = random_cluster(6, 3.0, seed=30, dmin=1.0)
    write(tmp_path / "start.xyz", Atoms(["O", "H", "H", "O", "H", "H"], positions=pos))
    cfg = {
        "system": {"file": str(tmp_path / "start.xyz")},
        "potential": {"kind": "behler_parrinello", "species": ["H", "O"], "cutoff": RC, "hidden": [8],
                      "radial": 4, "angular": 1, "zetas": [1.0]},
        "md": {"ensemble": "nve", "temperature": 100.0, "timestep": 0.25, "steps": 200,
               "equilibration_steps": 0, "block_steps": 200},
        "output": {"directory": str(tmp_path / "run"), "every": 10},
    }
    summary = run_md(cfg, progress=False)
    thermo = io.read_thermo(tmp_path / "run" / "thermo.csv")
    pe, cons = np.asarray(thermo["potential_energy_eV"]), np.asarray(thermo["conserved_eV"])
    assert np.all(np.isfinite(cons)) and len(cons) == 20
    assert pe.max() - pe.min() > 1e-4                   # the atoms do move on this surface
    # velocity Verlet at dt = 0.25 fs: the conserved energy wanders by a tiny
    # fraction of the potential-energy excursion
    assert np.abs(cons - cons[0]).max() < 0.02 * (pe.max() - pe.min())
    resolved = io.read_toml(tmp_path / "run" / "config.toml")["potential"]
    assert resolved["max_neighbors"] >= 8 and resolved["energy_scale"] == 1.0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["atoms"] == summary["atoms"] == 6


# ---------------------------------------------------------------------------
# longer studies (python -m pytest -m slow tests/test_behler_parrinello.py)
# ---------------------------------------------------------------------------

@pytest.mark.slow
def test_fit_to_qtip4pf_water_trimer_forces_generalises_to_held_out_structures():
    """40 thermally perturbed water trimers with q-TIP4P/F forces; after
    Adam on the force error, the force RMSE on 10 held-out trimers is below
    15% of the RMS reference force (a network that learned nothing scores 100%)."""
    import optax
    from jaxpot.build import water_cluster
    from jaxpot.interop.ase import JaxpotCalculator
    from jaxpot.system import from_ase
    rng = np.random.default_rng(11)
    start = water_cluster(3, seed=2)
    calc = JaxpotCalculator({"kind": "qtip4pf"})
    structures, forces = [], []
    for _ in range(50):
        a = start.copy()
        a.positions += rng.normal(scale=0.06, size=a.positions.shape)
        a.calc = calc
        forces.append(a.get_forces())
        structures.append(from_ase(a))
    pot = build_potential({"kind": "behler_parrinello", "species": ["H", "O"], "cutoff": 5.0, "radial": 10,
                           "angular": 4, "grid_r_min": 0.7, "hidden": [32, 32], "max_neighbors": 8}, None)
    ctxs = [make_context(s, cutoff=5.5, capacity=48) for s in structures]
    bpos = jnp.stack([s.positions for s in structures])
    bctx = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *ctxs)
    fref = jnp.asarray(np.stack(forces))
    tr, va = slice(0, 40), slice(40, 50)
    take = lambda tree, sl: jax.tree_util.tree_map(lambda x: x[sl], tree)  # noqa: E731
    params = bp.standardize_from_data(pot, pot.init(jax.random.PRNGKey(12), None), bpos[tr], take(bctx, tr))
    forces_fn = jax.vmap(energy_and_forces(pot), in_axes=(None, 0, 0))

    def mse(p, sl):
        return jnp.mean((forces_fn(p, bpos[sl], take(bctx, sl))[1] - fref[sl]) ** 2)

    opt = optax.adam(optax.exponential_decay(3e-3, 3000, 0.1))

    @jax.jit
    def train(p):
        def one(carry, _):
            p, s = carry
            g = jax.grad(mse)(p, tr)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None
        (p, _), _ = jax.lax.scan(one, (p, opt.init(p)), None, length=3000)
        return p

    rms = float(jnp.sqrt(jnp.mean(fref[va] ** 2)))
    before = float(jnp.sqrt(mse(params, va)))
    params = train(params)
    after = float(jnp.sqrt(mse(params, va)))
    print(f"held-out force RMSE {before:.3f} -> {after:.3f} eV/A (reference RMS {rms:.3f})")
    assert after < 0.15 * rms


@pytest.mark.slow
def test_nve_md_of_periodic_water_box_with_default_settings_conserves_energy(tmp_path):
    """32 waters (96 atoms, 9.9 A box, 6 A cutoff: ~100 neighbors per atom,
    periodic images) with an untrained network and every default, including
    max_neighbors sized from the box; neighbor-list rebuilds happen on device."""
    from jaxpot.simulate import run_md
    cfg = {
        "system": {"build": {"kind": "water_box", "molecules": 32, "density": 0.997, "seed": 1}},
        "potential": {"kind": "behler_parrinello", "species": ["H", "O"]},
        "md": {"ensemble": "nve", "temperature": 300.0, "timestep": 0.25, "steps": 200,
               "equilibration_steps": 0, "block_steps": 200, "skin": 0.5},
        "output": {"directory": str(tmp_path / "run"), "every": 10},
    }
    run_md(cfg, progress=False)
    thermo = io.read_thermo(tmp_path / "run" / "thermo.csv")
    pe, cons = np.asarray(thermo["potential_energy_eV"]), np.asarray(thermo["conserved_eV"])
    print(f"PE range {pe.max() - pe.min():.4f} eV, conserved drift {np.abs(cons - cons[0]).max():.2e} eV")
    assert np.all(np.isfinite(cons)) and pe.max() - pe.min() > 1e-3
    assert np.abs(cons - cons[0]).max() < 0.02 * (pe.max() - pe.min())
    resolved = io.read_toml(tmp_path / "run" / "config.toml")["potential"]
    assert resolved["max_neighbors"] >= 100
