"""Cluster-pair neighbor lists (jaxpot.partition) against the pair list.

The pair-list path of the classical potential is validated against OpenMM
elsewhere (test_classical, test_openmm_import); here the cluster-pair path
must give the same energy, forces and stress to rounding (float64), for
every nonbonded variant it implements, and must behave like a neighbor
list in the MD loop (reuse within the skin, rebuild, overflow, errors)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk

from jaxpot.partition import (
    ClusterLayoutError, ClusterNeighborList, cluster_list, computed_once, neighbor_fns_for,
)
from jaxpot.partition import NeighborList, neighbor_list
from jaxpot import forcefield as cl
from jaxpot.partition.exclusions import exclusion_lookup
from jaxpot.potentials.base import Context, energy_forces_stress
from jaxpot.space import times3
from jaxpot.system import InputError

RC, SKIN = 8.0, 1.0


def fluid(seed=0, reps=7, shake=0.35):
    """A disordered LJ-like configuration of 1372 atoms in a 36.8 A cube:
    fcc argon shaken by ``shake`` A, so the clusters are irregular."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(reps)
    rng = np.random.default_rng(seed)
    pos = atoms.positions + rng.normal(scale=shake, size=atoms.positions.shape)
    return pos, np.asarray(atoms.cell)


def force_field(n, rng, *, rule="lorentz-berthelot", nbfix=False, far_exclusions=False, charges=True):
    """Three LJ types, +-q charges, bonded-like exclusions between index
    neighbours (and, optionally, pairs ~n/2 apart, beyond the bit-mask
    window) and 1-4 pairs."""
    types = rng.integers(0, 3, n).astype(np.int32)
    excl = [(2 * k, 2 * k + 1) for k in range(0, n // 2, 3)]
    if far_exclusions:
        excl += [(k, k + n // 2) for k in range(1, n // 2, 7)]
    p14 = [(2 * k + 1, 2 * k + 2) for k in range(0, n // 2 - 1, 5)]
    nb = None
    if nbfix:
        nb = np.zeros((3, 3), bool)
        nb[0, 2] = nb[2, 0] = True
    top = cl.make_topology(n, atom_types=types, n_types=3, exclusions=excl, pairs14=p14, nbfix=nb,
                           combination_rule=rule, coulomb14_scale=0.8333, lj14_scale=0.5)
    q = np.where(np.arange(n) % 2 == 0, 0.4, -0.4) if charges else None
    kw = {}
    if nbfix:
        kw = dict(nbfix_sigma=np.full((3, 3), 3.6), nbfix_epsilon=np.full((3, 3), 0.02))
    params = cl.make_params(top, lj_sigma=np.array([3.4, 3.0, 3.8]), lj_epsilon=np.array([0.0104, 0.006, 0.0]),
                            charges=q, **kw)
    return top, params


def both_layouts(pot, params, pos, cell):
    """(E, F, stress) from a pair list and from a cluster-pair list."""
    x, c = jnp.asarray(pos), jnp.asarray(cell)
    efs = jax.jit(energy_forces_stress(pot))
    out = []
    for nbr in (neighbor_list(pot.cutoff, cell, True, skin=SKIN).allocate(x, c),
                cluster_list(pot.cutoff, cell, len(pos), skin=SKIN, excluded=pot.cluster_exclusions).allocate(x, c)):
        assert not nbr.did_overflow()
        ctx = Context(species=jnp.full(len(pos), 18, jnp.int32), cell=c, neighbors=nbr)
        out.append(tuple(np.asarray(v, np.float64) for v in efs(params, x, ctx)))
    return out


def assert_same(a, b, rel=1e-10):
    (e1, f1, s1), (e2, f2, s2) = a, b
    assert abs(e2 - e1) <= rel * max(1.0, abs(e1)), (e1, e2)
    np.testing.assert_allclose(f2, f1, rtol=0, atol=rel * 10 * np.abs(f1).max())
    np.testing.assert_allclose(s2, s1, rtol=0, atol=rel * 10 * np.abs(s1).max())


CASES = {
    "lorentz_berthelot_pme_dispersion": (dict(), dict(coulomb="pme", dispersion_correction=True)),
    "geometric_switch_reaction_field_short_lj": (
        dict(rule="geometric"), dict(coulomb="cutoff", lj_cutoff=7.0, switch_distance=6.0,
                                     coulomb_options={"cutoff_scheme": "reaction_field", "dielectric": 78.3})),
    "nbfix_table_shift_far_exclusions_no_charges": (
        dict(nbfix=True, far_exclusions=True, charges=False), dict(coulomb=None, lj_shift=True)),
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.startswith("geometric") else c
                                  for c in CASES])
def test_cluster_pairs_give_the_pair_list_energy_forces_and_stress(case):
    ff_kw, pot_kw = CASES[case]
    pos, cell = fluid()
    top, params = force_field(len(pos), np.random.default_rng(1), **ff_kw)
    pot = cl.classical_potential(top, params, cutoff=RC, cell=cell, **pot_kw)
    assert pot.cluster_exclusions is not None
    assert_same(*both_layouts(pot, params, pos, cell))


@pytest.mark.slow   # CI budget; run with -m slow
def test_float32_cluster_pairs_agree_with_float64_pair_list():
    pos, cell = fluid()
    top, params = force_field(len(pos), np.random.default_rng(2))
    pot = cl.classical_potential(top, params, cutoff=RC, cell=cell, coulomb="pme")
    (e, f, _), _ = both_layouts(pot, params, pos, cell)
    x, c = jnp.asarray(pos, jnp.float32), jnp.asarray(cell, jnp.float32)
    nbr = cluster_list(RC, cell, len(pos), skin=SKIN, excluded=pot.cluster_exclusions).allocate(x, c)
    p32 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
    e32, f32, _ = jax.jit(energy_forces_stress(pot))(p32, x, Context(jnp.zeros(len(pos), jnp.int32), c, nbr))
    assert abs(float(e32) - e) <= 1e-5 * abs(e)
    rms = np.sqrt(np.mean((np.asarray(f32) - f) ** 2)) / np.sqrt(np.mean(f ** 2))
    assert rms < 1e-4


@pytest.mark.slow   # CI budget; the MD test below rebuilds inside a run
def test_cluster_list_is_reused_within_the_skin_and_rebuilt_beyond_it():
    """Within skin/2 the old list still holds every pair inside the cutoff;
    beyond it update() rebuilds; both give the fresh pair-list energy. The
    shaken fcc lattice puts atoms on both sides of every cell face, so
    wrapped slots and image shifts are exercised."""
    pos, cell = fluid()
    top, params = force_field(len(pos), np.random.default_rng(3))
    pot = cl.classical_potential(top, params, cutoff=RC, cell=cell, coulomb="pme")
    fns = cluster_list(RC, cell, len(pos), skin=SKIN, excluded=pot.cluster_exclusions)
    c = jnp.asarray(cell)
    nbr = fns.allocate(jnp.asarray(pos), c)
    energy = jax.jit(pot.energy)
    rng = np.random.default_rng(4)
    for step, scale in ((1, 0.45 * SKIN / 2 / np.sqrt(3)), (2, 1.5 * SKIN)):
        moved = pos + rng.uniform(-scale, scale, pos.shape)
        x = jnp.asarray(moved)
        nbr = jax.jit(fns.update)(x, nbr, c)
        assert int(nbr.n_builds) == step
        ref = neighbor_list(RC, cell, True, skin=SKIN).allocate(x, c)
        ctx = Context(jnp.zeros(len(pos), jnp.int32), c)
        assert abs(float(energy(params, x, ctx.replace(neighbors=nbr)))
                   - float(energy(params, x, ctx.replace(neighbors=ref)))) < 1e-9 * len(pos)
        pos = moved if step == 1 else pos


def test_column_search_finds_the_cluster_pairs_of_the_all_pairs_search():
    """The build reads only the x-y columns within reach of a cluster's
    column (O(clusters)); it must list the same cluster pairs, with the same
    image shifts, as testing every pair of clusters. A column fuller than
    the capacity searched is an overflow, and reallocation mends it."""
    pos, cell = fluid(seed=5, reps=9)                 # 2916 atoms, 47 A cube
    cutoff = 6.0
    fns = cluster_list(cutoff, cell, len(pos), skin=SKIN)
    nx, ny = fns.columns
    assert len(fns.column_offsets) < nx * ny          # the search is restricted
    x, c = jnp.asarray(pos), jnp.asarray(cell)
    nbl = fns.allocate(x, c)
    assert not nbl.did_overflow() and nbl.cell_capacity > 0
    every = fns.build_jit(x, c, nbl.capacity, fns.n_clusters, 0)

    def listed(lst):
        k = int(lst.n_pairs)
        return sorted(zip(np.asarray(lst.pair_a)[:k].tolist(), np.asarray(lst.pair_b)[:k].tolist(),
                          map(tuple, np.asarray(lst.shifts)[:k].astype(int).tolist())))
    assert int(nbl.n_pairs) == int(every.n_pairs) > 0
    assert listed(nbl) == listed(every)
    full = int(fns.fullest_column(x, c))
    tight = fns.build_jit(x, c, nbl.capacity, nbl.row_capacity, full - 1)
    assert tight.did_overflow()
    grown = fns.reallocate(tight, x, c)
    assert not grown.did_overflow() and grown.cell_capacity >= full


def test_cluster_list_overflow_is_flagged_and_reallocation_grows_it():
    pos, cell = fluid()
    fns = cluster_list(RC, cell, len(pos), skin=SKIN)
    x, c = jnp.asarray(pos), jnp.asarray(cell)
    small = fns.build_jit(x, c, 256, 16, 0)
    assert small.did_overflow()
    assert int(small.n_pairs) > small.capacity or int(small.max_row) > small.row_capacity
    grown = fns.reallocate(small, x, c)
    assert not grown.did_overflow() and grown.capacity >= int(grown.n_pairs)


def test_computed_once_returns_fn_of_its_operand_under_jit_and_times3_matches_matmul():
    """The pair sum's CPU position gradient reads du/dr^2 through
    computed_once: under jit and with a traced token it must be fn(x)."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(5, 8, 8)))
    xi = jnp.asarray(rng.normal(size=(5, 3, 8)))

    def fn(g):
        return jnp.sum(g[:, None] * xi[:, :, :, None], axis=2), -jnp.sum(g[:, None] * xi[:, :, None, :], axis=3)
    want = fn(x)
    for token in (0, 7):
        got = jax.jit(lambda x, t: computed_once(fn, x, t))(x, jnp.int32(token))
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    m = jnp.asarray(rng.normal(size=(3, 3)))
    v = jnp.asarray(rng.normal(size=(4, 7, 3)))
    np.testing.assert_allclose(times3(v, m), v @ m, rtol=1e-13, atol=1e-13)


def test_pair_capacity_has_a_small_margin_in_whole_chunks_and_regrows_by_a_tenth():
    pos, cell = fluid()
    fns = cluster_list(RC, cell, len(pos), skin=SKIN)
    x, c = jnp.asarray(pos), jnp.asarray(cell)
    nbl = fns.allocate(x, c)
    n = int(nbl.n_pairs)
    assert n <= nbl.capacity <= max(1.05 * n + 8 + 2047, n + 256)
    if nbl.capacity >= 16384:
        assert nbl.capacity % 2048 == 0
    else:
        assert nbl.capacity % 256 == 0
    grown = fns.reallocate(nbl, x, c)
    assert 1.1 * nbl.capacity <= grown.capacity <= 1.1 * nbl.capacity + 8 + 2048


def test_cluster_tiles_hold_every_pair_once_and_no_excluded_pair():
    pos, cell = fluid()
    n = len(pos)
    excl = np.array([(k, k + 1) for k in range(0, n - 1, 4)] + [(3, n - 3)])
    fns = cluster_list(RC, cell, n, skin=SKIN, excluded=excl)
    nbr = fns.allocate(jnp.asarray(pos), jnp.asarray(cell))
    atoms = np.asarray(nbr.slots).reshape(-1, nbr.cluster_size)
    pm = np.asarray(nbr.pair_mask)
    k, a, b = np.nonzero(pm)
    i = atoms[np.asarray(nbr.pair_a)[k], a]
    j = atoms[np.asarray(nbr.pair_b)[k], b]
    key = np.minimum(i, j) * n + np.maximum(i, j)
    assert len(np.unique(key)) == len(key)            # each atom pair at most once
    excluded = set((np.minimum(excl[:, 0], excl[:, 1]) * n + np.maximum(excl[:, 0], excl[:, 1])).tolist())
    assert not excluded & set(key.tolist())
    # every pair within the cutoff (minimum image) is present
    d = pos[None] - pos[:, None]
    L = np.diag(cell)
    d -= np.round(d / L) * L
    r = np.sqrt((d ** 2).sum(-1))
    ii, jj = np.nonzero(np.triu(r < RC, 1))
    want = set((ii * n + jj).tolist()) - excluded
    assert want <= set(key.tolist())


def test_exclusion_lookup_bitmask_and_sorted_paths_agree():
    n = 600
    rng = np.random.default_rng(7)
    near = np.array([(k, k + rng.integers(1, 20)) for k in range(0, n - 20, 3)])
    far = np.concatenate([near, [(1, 590), (10, 400)]])
    i = jnp.asarray(rng.integers(0, n + 1, 5000))
    j = jnp.asarray(rng.integers(0, n + 1, 5000))
    for pairs in (near, far):
        want = {(min(a, b), max(a, b)) for a, b in pairs.tolist()}
        got = np.asarray(exclusion_lookup(n, pairs)(i, j))
        ref = np.array([(min(a, b), max(a, b)) in want and a < n and b < n for a, b in zip(np.asarray(i), np.asarray(j))])
        np.testing.assert_array_equal(got, ref)
        got_t = np.asarray(exclusion_lookup(n, pairs)(jnp.asarray(pairs[:, 1]), jnp.asarray(pairs[:, 0])))
        assert got_t.all()


def test_layout_choice_and_errors_name_the_reason():
    pos, cell = fluid()
    top, params = force_field(len(pos), np.random.default_rng(5))
    pot = cl.classical_potential(top, params, cutoff=RC, cell=cell, coulomb="pme")
    assert isinstance(neighbor_fns_for(pot, cell, True, len(pos), skin=SKIN).allocate(
        jnp.asarray(pos), jnp.asarray(cell)), ClusterNeighborList)
    assert isinstance(neighbor_fns_for(pot, cell, True, len(pos), skin=SKIN, layout="pairs").allocate(
        jnp.asarray(pos), jnp.asarray(cell)), NeighborList)
    with pytest.raises(InputError, match="too narrow"):
        neighbor_fns_for(pot, cell * 0.6, True, len(pos), skin=SKIN, layout="clusters")
    tilted = np.asarray(cell).copy()
    tilted[1, 0] = 3.0
    with pytest.raises(InputError, match="orthorhombic"):
        neighbor_fns_for(pot, tilted, True, len(pos), skin=SKIN, layout="clusters")
    from jaxpot.potentials.base import Potential
    ml = Potential(energy=lambda p, x, c: 0.0, cutoff=5.0, name="mlp")
    with pytest.raises(InputError, match="reads only pair lists"):
        neighbor_fns_for(ml, cell, True, len(pos), skin=SKIN, layout="clusters")
    with pytest.raises(InputError, match="unknown neighbor layout"):
        neighbor_fns_for(pot, cell, True, len(pos), skin=SKIN, layout="cells")
    with pytest.raises(ClusterLayoutError, match="too narrow"):
        cluster_list(RC, cell * 0.6, len(pos), skin=SKIN)
    # a pair potential handed a cluster list it cannot read says so
    pot_direct = cl.classical_potential(top, params, coulomb="direct")
    nbr = cluster_list(RC, cell, len(pos), skin=SKIN).allocate(jnp.asarray(pos), jnp.asarray(cell))
    with pytest.raises(InputError, match="cannot read a cluster-pair"):
        pot_direct.energy(params, jnp.asarray(pos), Context(jnp.zeros(len(pos), jnp.int32), jnp.asarray(cell), nbr))


@pytest.mark.slow   # CI budget; run with -m slow (the layouts agree by default in the single-point tests)
@pytest.mark.parametrize("ensemble", ["nvt", "pimd"])
def test_md_with_cluster_and_pair_layouts_follows_the_same_trajectory(tmp_path, ensemble):
    """``jaxpot md`` on a 1372-atom LJ mixture: the same seed with
    neighbor_layout = "clusters" and "pairs" gives the same energies step
    by step (float64: differences are rounding, far below 1e-8 relative
    over 40 steps); the list is rebuilt inside the run."""
    from ase.io import write

    from jaxpot import io
    from jaxpot.simulate import run_md

    pos, cell = fluid(seed=8, shake=0.1)
    from ase import Atoms
    atoms = Atoms("Ar" * len(pos), positions=pos, cell=cell, pbc=True)
    atoms.numbers[::3] = 36
    write(tmp_path / "fluid.extxyz", atoms)
    thermo = {}
    for layout in ("clusters", "pairs"):
        md = {"ensemble": ensemble, "steps": 40, "equilibration_steps": 0, "timestep": 5.0, "temperature": 120.0,
              "seed": 3, "neighbor_layout": layout, "block_steps": 20, "skin": 0.6}
        if ensemble == "pimd":
            md.update(beads=2, steps=20, block_steps=10)
        cfg = {"system": {"file": str(tmp_path / "fluid.extxyz")},
               "potential": {"kind": "lj", "elements": {"Ar": {"epsilon": 0.0104, "sigma": 3.4},
                                                         "Kr": {"epsilon": 0.014, "sigma": 3.65}},
                             "cutoff": RC, "dispersion_correction": True},
               "md": md, "output": {"directory": str(tmp_path / layout), "every": 5}}
        run_md(cfg, progress=False)
        thermo[layout] = io.read_thermo(tmp_path / layout / "thermo.csv")
        assert np.isfinite(json.loads((tmp_path / layout / "summary.json").read_text())["steps_per_second"])
    for col in ("potential_energy_eV", "conserved_eV"):
        a, b = np.asarray(thermo["clusters"][col]), np.asarray(thermo["pairs"][col])
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=0)


def test_a_cluster_pair_in_range_at_two_images_is_refused_and_auto_falls_back_to_pairs():
    """Each cluster pair is listed at one image; when the cell leaves so
    little room (L/2 - cutoff - skin ~ 4 A) that two images of some cluster
    pair come within range, allocation refuses with a reason and the "auto"
    layout takes a pair list instead."""
    pos, cell = fluid()                      # 36.8 A cube, cluster half-extents up to ~4 A
    rc = 0.5 * 36.8 - 1.0 - 4.2
    top, params = force_field(len(pos), np.random.default_rng(6), charges=False)
    pot = cl.classical_potential(top, params, cutoff=rc, cell=cell, coulomb=None)
    fns = cluster_list(rc, cell, len(pos), skin=SKIN, excluded=pot.cluster_exclusions)
    assert not fns.fits(pos, cell)
    with pytest.raises(ClusterLayoutError, match="too wide"):
        fns.allocate(jnp.asarray(pos), jnp.asarray(cell))
    auto = neighbor_fns_for(pot, cell, True, len(pos), skin=SKIN, positions=jnp.asarray(pos))
    assert isinstance(auto.allocate(jnp.asarray(pos), jnp.asarray(cell)), NeighborList)


def test_ase_calculator_on_a_3nm_water_box_reads_clusters_and_matches_openmm():
    """amber14/TIP3P (flexible) water in a 3 nm box, PME 0.9 nm: the ASE
    calculator picks the cluster layout ("auto") and reproduces OpenMM's
    Reference energy (2e-5 relative: PME at tolerance 5e-4 on both sides,
    same alpha and grid), forces and a finite stress."""
    mm = pytest.importorskip("openmm")
    from ase import Atoms
    from openmm import app, unit

    from jaxpot import units
    from jaxpot.interop.ase import JaxpotCalculator

    ff = app.ForceField("amber14/tip3p.xml")
    m = app.Modeller(app.Topology(), [])
    m.addSolvent(ff, boxSize=mm.Vec3(3.0, 3.0, 3.0) * unit.nanometer)
    system = ff.createSystem(m.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                             constraints=None, rigidWater=False)
    pos_nm = np.asarray(m.positions.value_in_unit(unit.nanometer))
    ctx = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(m.positions)
    st = ctx.getState(getEnergy=True, getForces=True)
    e_ref = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * units.KJ_MOL
    f_ref = np.asarray(st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    f_ref = f_ref * units.KJ_MOL / units.NM
    box = np.asarray(m.topology.getPeriodicBoxVectors().value_in_unit(unit.nanometer)) * units.NM
    atoms = Atoms(numbers=[a.element.atomic_number for a in m.topology.atoms()], positions=pos_nm * units.NM,
                  cell=box, pbc=True)
    assert len(atoms) > 2000
    calc = JaxpotCalculator.from_openmm(system)
    atoms.calc = calc
    e = atoms.get_potential_energy()
    assert isinstance(calc._nbr_state, ClusterNeighborList)
    assert abs(e - e_ref) <= 2e-5 * abs(e_ref)
    rms = np.sqrt(np.mean((atoms.get_forces() - f_ref) ** 2)) / np.sqrt(np.mean(f_ref ** 2))
    assert rms < 1e-3
    assert np.all(np.isfinite(atoms.get_stress()))
