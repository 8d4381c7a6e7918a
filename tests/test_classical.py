"""Classical force-field terms checked against outside references:
central finite differences, analytic results (LJ minimum, tail correction),
OpenMM (Reference platform, double precision) and ASE's LennardJones.

Tolerances: float64 central differences with step h have truncation error
h^2/6 |E'''| (~1e-9 eV/A for h = 1e-4 A and |E'''| ~ 1e-1..1 eV/A^3 here)
plus rounding eps |E| / h (~1e-12), so 1e-6 eV/A leaves a wide margin while
still catching any wrong derivative (errors of a missed term are >= 1e-3).
Engine comparisons: both sides evaluate the same closed-form expressions in
float64, so they agree to rounding (1e-10 relative); the brief's 1e-6
relative bounds the unit-constant differences (kJ/mol <-> eV and OpenMM's
ONE_4PI_EPS0 vs jaxpot.units.KE agree to ~1e-8).
"""
import numpy as np
import pytest

import jax
import jax.numpy as jnp

import jaxpot  # noqa: F401  (float64 available)
from jaxpot import units
from jaxpot.partition import neighbor_list
from jaxpot.potentials.base import Context, energy_and_forces, energy_forces_stress
from jaxpot import forcefield as cl
from jaxpot.system import InputError, System, default_masses

# ---------------------------------------------------------------------------
# a small branched molecule with every bonded term
# ---------------------------------------------------------------------------

N_MOL = 8
BONDS = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (1, 6), (4, 7)]
ANGLES = [(0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (6, 1, 2), (0, 1, 6), (3, 4, 7)]
UB = [(0, 2), (2, 4)]
TORSIONS = [(0, 1, 2, 3), (0, 1, 2, 3), (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (6, 1, 2, 3)]
PERIODICITY = [1, 2, 3, 2, 3, 1]
IMPROPERS = [(1, 0, 2, 6), (4, 3, 5, 7)]
CMAP = [(0, 1, 2, 3, 1, 2, 3, 4), (1, 2, 3, 4, 2, 3, 4, 5)]
CMAP_MAP = [0, 1]
TYPES = [0, 1, 0, 2, 0, 1, 2, 2]


def molecule_positions(seed=0):
    """A non-planar chain (A): bond lengths ~1.5, random torsions."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((N_MOL, 3))
    pos[1] = [1.5, 0, 0]
    pos[2] = [2.0, 1.42, 0]
    for k, (a, b, c) in [(3, (0, 1, 2)), (4, (1, 2, 3)), (5, (2, 3, 4))]:
        pos[k] = pos[c] + (pos[c] - pos[b]) * 0.5 + rng.normal(size=3) * 0.9
        pos[k] = pos[c] + 1.5 * (pos[k] - pos[c]) / np.linalg.norm(pos[k] - pos[c])
    pos[6] = pos[1] + np.array([-0.4, 0.6, 1.3])
    pos[7] = pos[4] + np.array([0.5, -0.7, 1.2])
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + np.eye(N_MOL) * 10
    assert d.min() > 1.0
    return pos


def molecule_topology(**kw):
    excl, p14 = cl.exclusions_from_bonds(N_MOL, BONDS)
    args = dict(atom_types=TYPES, bonds=BONDS, angles=ANGLES, urey_bradley=UB, torsions=TORSIONS,
                torsion_periodicity=PERIODICITY, impropers=IMPROPERS, cmap=CMAP, cmap_map=CMAP_MAP,
                exclusions=excl, pairs14=p14, coulomb14_scale=1 / 1.2, lj14_scale=0.5)
    args.update(kw)
    return cl.make_topology(N_MOL, **args)


def molecule_params(top, seed=1, **kw):
    rng = np.random.default_rng(seed)
    q = rng.uniform(-0.5, 0.5, N_MOL)
    q -= q.mean()
    args = dict(
        bond_k=rng.uniform(15, 30, len(BONDS)), bond_r0=rng.uniform(1.4, 1.6, len(BONDS)),
        angle_k=rng.uniform(2, 5, len(ANGLES)), angle_theta0=rng.uniform(1.8, 2.1, len(ANGLES)),
        ub_k=rng.uniform(1, 3, len(UB)), ub_r0=rng.uniform(2.4, 2.6, len(UB)),
        torsion_k=rng.uniform(0.01, 0.1, len(TORSIONS)), torsion_phase=rng.uniform(-np.pi, np.pi, len(TORSIONS)),
        improper_k=rng.uniform(0.5, 2, len(IMPROPERS)), improper_phi0=rng.uniform(-0.5, 0.5, len(IMPROPERS)),
        cmap_grids=(rng.normal(size=(6, 6)) * 0.05, rng.normal(size=(8, 8)) * 0.05),
        charges=q, lj_sigma=np.array([3.0, 2.6, 2.2]), lj_epsilon=np.array([0.008, 0.004, 0.002]),
    )
    args.update(kw)
    # drop the parameters of terms this topology does not have
    for term, fields in (("bonds", ("bond_k", "bond_r0")), ("angles", ("angle_k", "angle_theta0")),
                         ("urey_bradley", ("ub_k", "ub_r0")), ("torsions", ("torsion_k", "torsion_phase")),
                         ("impropers", ("improper_k", "improper_phi0")), ("cmap", ("cmap_grids",))):
        if len(getattr(top, term)) == 0:
            for f in fields:
                args.pop(f)
    return cl.make_params(top, **args)


def fd_forces(efn, pos, h=1e-4):
    """Central-difference forces -dE/dx (eV/A) of a float64 energy function
    (called point by point, so an already compiled function is reused)."""
    pos = np.asarray(pos, np.float64)
    out = np.zeros_like(pos)
    for a in range(pos.shape[0]):
        for k in range(3):
            e = []
            for s in (h, -h):
                p = pos.copy()
                p[a, k] += s
                e.append(float(efn(jnp.asarray(p))))
            out[a, k] = -(e[0] - e[1]) / (2 * h)
    return out


NO_CTX = Context(species=jnp.full(N_MOL, 6, jnp.int32), cell=jnp.zeros((3, 3)))


@pytest.fixture(scope="module")
def full_molecule():
    """The molecule with every term and direct Coulomb, compiled once
    (compilation dominates these tests' run time)."""
    top = molecule_topology()
    p = molecule_params(top)
    pot = cl.classical_potential(top, p, coulomb="direct")
    return top, p, pot, jax.jit(energy_and_forces(pot))

# each term alone: topology keyword overrides that remove every other term
_EMPTY = dict(bonds=None, angles=None, urey_bradley=None, torsions=None, torsion_periodicity=None,
              impropers=None, cmap=None, cmap_map=None)
TERMS = {
    "harmonic_bonds": dict(_EMPTY, bonds=BONDS),
    "harmonic_angles": dict(_EMPTY, angles=ANGLES),
    "urey_bradley": dict(_EMPTY, urey_bradley=UB),
    "periodic_torsions_several_multiplicities": dict(_EMPTY, torsions=TORSIONS, torsion_periodicity=PERIODICITY),
    "harmonic_impropers": dict(_EMPTY, impropers=IMPROPERS),
    "cmap": dict(_EMPTY, cmap=CMAP, cmap_map=CMAP_MAP),
}


def _only_term(name):
    top = molecule_topology(**TERMS[name])
    return top, molecule_params(top, charges=None, lj_sigma=None, lj_epsilon=None)


@pytest.mark.parametrize("term", sorted(TERMS))
def test_bonded_term_forces_match_central_finite_differences(term):
    top, p = _only_term(term)
    pot = cl.classical_potential(top, p, coulomb=None)
    pos = jnp.asarray(molecule_positions())
    ef = jax.jit(energy_and_forces(pot))
    e, f = ef(p, pos, NO_CTX)
    assert abs(float(e)) > 1e-4   # the term is really exercised
    ref = fd_forces(lambda x: ef(p, x, NO_CTX)[0], pos)
    np.testing.assert_allclose(np.asarray(f), ref, atol=1e-6)


@pytest.mark.parametrize("variant", ["scaled_14", "explicit_14_exceptions"])
def test_nonbonded_lj_coulomb_and_14_forces_match_finite_differences(variant):
    top = molecule_topology(**_EMPTY)
    extra = {}
    if variant == "explicit_14_exceptions":
        npair = len(top.pairs14)
        extra = dict(pair14_chargeprod=np.linspace(-0.1, 0.1, npair), pair14_sigma=np.full(npair, 2.5),
                     pair14_epsilon=np.full(npair, 0.003))
    p = molecule_params(top, **extra)
    pot = cl.classical_potential(top, p, coulomb="direct")
    pos = jnp.asarray(molecule_positions())
    ef = jax.jit(energy_and_forces(pot))
    e, f = ef(p, pos, NO_CTX)
    ref = fd_forces(lambda x: ef(p, x, NO_CTX)[0], pos)
    np.testing.assert_allclose(np.asarray(f), ref, atol=1e-6)


# ---------------------------------------------------------------------------
# OpenMM side by side
# ---------------------------------------------------------------------------

def _openmm_energy_forces(system, pos_A):
    mm = pytest.importorskip("openmm")
    integ = mm.VerletIntegrator(1.0)
    ctx = mm.Context(system, integ, mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(np.asarray(pos_A) / units.NM)
    st = ctx.getState(getEnergy=True, getForces=True)
    e = st.getPotentialEnergy().value_in_unit(mm.unit.kilojoule_per_mole) * units.KJ_MOL
    f = np.asarray(st.getForces(asNumpy=True).value_in_unit(mm.unit.kilojoule_per_mole / mm.unit.nanometer))
    return e, f * units.KJ_MOL / units.NM


def _openmm_molecule(top, p, explicit14, cell=None, cutoff=None, method="NoCutoff", tolerance=5e-4):
    mm = pytest.importorskip("openmm")
    P = {f: (None if getattr(p, f) is None else np.asarray(getattr(p, f)) if f != "cmap_grids"
             else [np.asarray(g) for g in p.cmap_grids]) for f in p.__dataclass_fields__}
    kb = units.NM ** 2 / units.KJ_MOL          # eV/A^2 -> kJ/mol/nm^2
    ka = 1.0 / units.KJ_MOL                    # eV/rad^2 -> kJ/mol/rad^2
    s = mm.System()
    for _ in range(N_MOL):
        s.addParticle(12.0)
    hb = mm.HarmonicBondForce()
    for (a, b), k, r0 in zip(BONDS, P["bond_k"], P["bond_r0"]):
        hb.addBond(a, b, r0 / units.NM, k * kb)
    for (a, b), k, r0 in zip(UB, P["ub_k"], P["ub_r0"]):
        hb.addBond(a, b, r0 / units.NM, k * kb)
    s.addForce(hb)
    ha = mm.HarmonicAngleForce()
    for (a, b, c), k, t0 in zip(ANGLES, P["angle_k"], P["angle_theta0"]):
        ha.addAngle(a, b, c, t0, k * ka)
    s.addForce(ha)
    pt = mm.PeriodicTorsionForce()
    for (a, b, c, d), n, k, ph in zip(TORSIONS, PERIODICITY, P["torsion_k"], P["torsion_phase"]):
        pt.addTorsion(a, b, c, d, n, ph, k / units.KJ_MOL)
    s.addForce(pt)
    imp = mm.CustomTorsionForce("0.5*k*dtheta^2; dtheta = min(dt, 2*pi-dt); dt = abs(theta-theta0); "
                                "pi = 3.141592653589793")
    imp.addPerTorsionParameter("k")
    imp.addPerTorsionParameter("theta0")
    for (a, b, c, d), k, t0 in zip(IMPROPERS, P["improper_k"], P["improper_phi0"]):
        imp.addTorsion(a, b, c, d, [k * ka, t0])
    s.addForce(imp)
    cm = mm.CMAPTorsionForce()
    for g in P["cmap_grids"]:
        cm.addMap(g.shape[0], list((g.T.reshape(-1)) / units.KJ_MOL))   # flat i + size*j = g[i, j]
    for m, idx in zip(CMAP_MAP, CMAP):
        cm.addTorsion(m, *idx)
    s.addForce(cm)
    nb = mm.NonbondedForce()
    nb.setNonbondedMethod(getattr(mm.NonbondedForce, method))
    if cell is not None:
        s.setDefaultPeriodicBoxVectors(*[mm.Vec3(*(row / units.NM)) for row in cell])
        nb.setCutoffDistance(cutoff / units.NM)
        nb.setEwaldErrorTolerance(tolerance)
        nb.setUseDispersionCorrection(False)
    sig = P["lj_sigma"][TYPES]
    eps = P["lj_epsilon"][TYPES]
    q = P["charges"]
    for a in range(N_MOL):
        nb.addParticle(q[a], sig[a] / units.NM, eps[a] / units.KJ_MOL)
    for a, b in top.exclusions:
        nb.addException(int(a), int(b), 0.0, 1.0, 0.0)
    for k, (a, b) in enumerate(top.pairs14):
        if explicit14:
            qq, s14, e14 = P["pair14_chargeprod"][k], P["pair14_sigma"][k], P["pair14_epsilon"][k]
        else:
            qq = top.coulomb14_scale * q[a] * q[b]
            s14 = 0.5 * (sig[a] + sig[b])
            e14 = top.lj14_scale * np.sqrt(eps[a] * eps[b])
        nb.addException(int(a), int(b), qq, s14 / units.NM, e14 / units.KJ_MOL)
    s.addForce(nb)
    return s


@pytest.mark.parametrize("explicit14", [False, True], ids=["scaled_14", "explicit_14"])
def test_molecule_energy_and_forces_match_openmm_reference_platform(explicit14, full_molecule):
    pytest.importorskip("openmm")
    top, p, pot, ef = full_molecule
    if explicit14:
        npair = len(top.pairs14)
        p = molecule_params(top, pair14_chargeprod=np.linspace(-0.1, 0.12, npair),
                            pair14_sigma=np.linspace(2.2, 2.8, npair), pair14_epsilon=np.linspace(0.001, 0.004, npair))
        # the explicit 1-4 arrays change the params pytree, and so the trace
        ef = jax.jit(energy_and_forces(cl.classical_potential(top, p, coulomb="direct")))
    system = _openmm_molecule(top, p, explicit14)
    for seed in (0, 3):
        pos = molecule_positions(seed)
        e, f = ef(p, jnp.asarray(pos), NO_CTX)
        e_ref, f_ref = _openmm_energy_forces(system, pos)
        assert abs(float(e) - e_ref) <= 1e-6 * abs(e_ref)
        np.testing.assert_allclose(np.asarray(f), f_ref, atol=1e-6 * np.abs(f_ref).max())


@pytest.mark.parametrize("method", ["ewald", "pme"])
def test_periodic_molecule_with_ewald_exclusions_matches_openmm(method, full_molecule):
    """Ewald/PME with excluded and 1-4 pairs (their reciprocal-space part removed,
    1-4 added as plain Coulomb) and truncated LJ, against OpenMM's Ewald.
    Both pick alpha = sqrt(-ln 2 delta)/rc and k-space cut-offs for the
    same delta; each is within ~delta of the converged Ewald sum, so at
    delta = 1e-7 they agree to ~1e-6 relative."""
    pytest.importorskip("openmm")
    top, p, _, _ = full_molecule
    L, rc, delta = 15.0, 7.0, 1e-7
    cell = np.eye(3) * L
    pos = molecule_positions() + 4.0
    pot = cl.classical_potential(top, p, cutoff=rc, coulomb=method, cell=cell, accuracy=delta)
    ctx = Context(NO_CTX.species, jnp.asarray(cell),
                  neighbor_list(rc, cell, pbc=True, skin=0.5).allocate(jnp.asarray(pos), jnp.asarray(cell)))
    e, f = jax.jit(energy_and_forces(pot))(p, jnp.asarray(pos), ctx)
    system = _openmm_molecule(top, p, False, cell=cell, cutoff=rc, method={"ewald": "Ewald", "pme": "PME"}[method],
                              tolerance=delta)
    e_ref, f_ref = _openmm_energy_forces(system, pos)
    assert abs(float(e) - e_ref) <= 1e-6 * abs(e_ref)
    np.testing.assert_allclose(np.asarray(f), f_ref, atol=1e-5 * np.abs(f_ref).max())


def test_cmap_matches_openmm_cmaptorsionforce_over_the_whole_map():
    mm = pytest.importorskip("openmm")
    rng = np.random.default_rng(5)
    size = 5
    grid = rng.normal(size=(size, size)) * 0.1         # eV
    top = cl.make_topology(5, cmap=[(0, 1, 2, 3, 1, 2, 3, 4)], cmap_map=[0])
    p = cl.make_params(top, cmap_grids=(grid,))
    pot = cl.classical_potential(top, p, coulomb=None)
    ctx = Context(species=jnp.zeros(5, jnp.int32), cell=jnp.zeros((3, 3)))
    s = mm.System()
    for _ in range(5):
        s.addParticle(1.0)
    f = mm.CMAPTorsionForce()
    f.addMap(size, list(grid.T.reshape(-1) / units.KJ_MOL))
    f.addTorsion(0, 0, 1, 2, 3, 1, 2, 3, 4)
    s.addForce(f)
    # the map is read back in OpenMM's layout: the converter must agree
    np.testing.assert_array_equal(cl.cmap_grid_from_openmm(size, grid.T.reshape(-1)), grid)
    ef = jax.jit(energy_and_forces(pot))
    for k in range(12):      # random (phi, psi) all over the torus, including grid patches' edges
        pos = rng.normal(size=(5, 3)) * 1.2
        e, fj = ef(p, jnp.asarray(pos), ctx)
        e_ref, f_ref = _openmm_energy_forces(s, pos)
        assert abs(float(e) - e_ref) <= 1e-6 * max(abs(e_ref), 1e-3)
        np.testing.assert_allclose(np.asarray(fj), f_ref, atol=1e-6 * np.abs(f_ref).max())


def test_cmap_interpolates_grid_values_exactly_at_the_knots():
    rng = np.random.default_rng(2)
    grid = jnp.asarray(rng.normal(size=(6, 6)))
    a, b = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    h = 2 * np.pi / 6
    # phi in (-pi, pi] convention: knot a at angle a h, equivalently a h - 2 pi
    e = cl.cmap_energy(jnp.asarray(a * h - 2 * np.pi * (a > 2)), jnp.asarray(b * h), grid)
    np.testing.assert_allclose(np.asarray(e), np.asarray(grid), atol=1e-12)


# ---------------------------------------------------------------------------
# Lennard-Jones: analytic, ASE, OpenMM, stress
# ---------------------------------------------------------------------------

def _system(symbols, pos, cell=None):
    from jaxpot.system import species_from_symbols
    z = species_from_symbols(symbols)
    periodic = cell is not None
    return System(positions=jnp.asarray(pos, jnp.float64), species=jnp.asarray(z),
                  masses=jnp.asarray(default_masses(z)),
                  cell=jnp.asarray(np.zeros((3, 3)) if cell is None else cell, jnp.float64),
                  pbc=(periodic,) * 3)


def _context(system, cutoff):
    fns = neighbor_list(cutoff, system.cell, pbc=system.periodic, skin=0.5)
    nbr = fns.allocate(system.positions, system.cell)
    return Context(system.species, system.cell, nbr)


def test_lj_dimer_minimum_is_minus_epsilon_at_two_to_one_sixth_sigma():
    eps, sigma = 0.0104, 3.4
    rmin = 2 ** (1 / 6) * sigma
    sys = _system(["Ar", "Ar"], [[0, 0, 0], [rmin, 0, 0]])
    pot = cl.lj_from_config({"kind": "lj", "epsilon": eps, "sigma": sigma, "cutoff": 12.0}, sys)
    params = pot.init(jax.random.PRNGKey(0), sys)
    ctx = _context(sys, pot.cutoff)
    ef = jax.jit(energy_and_forces(pot))
    e, f = ef(params, sys.positions, ctx)
    assert abs(float(e) + eps) < 1e-14
    assert np.abs(np.asarray(f)).max() < 1e-12
    for dr in (-0.05, 0.05):      # a minimum, not a saddle
        e2, _ = ef(params, sys.positions.at[1, 0].add(dr), ctx)
        assert float(e2) > -eps


def test_lj_switch_makes_energy_and_force_vanish_continuously_at_cutoff():
    eps, sigma, rc, rs = 0.0104, 3.4, 8.0, 6.5
    e_of_r, f_of_r = [], []
    sys = _system(["Ar", "Ar"], [[0, 0, 0], [rc - 1.0, 0, 0]])
    for switched in (True, False):
        cfg = {"kind": "lj", "epsilon": eps, "sigma": sigma, "cutoff": rc}
        if switched:
            cfg["switch_distance"] = rs
        pot = cl.lj_from_config(cfg, sys)
        params = pot.init(None, sys)
        ctx = _context(sys, rc)
        ef = jax.jit(energy_and_forces(pot))
        out = []
        for r in (rc - 1e-4, rc + 1e-4):
            e, f = ef(params, sys.positions.at[1, 0].set(r), ctx)
            out.append((float(e), float(f[1, 0])))
        e_of_r.append(out)
    u_rc = 4 * eps * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    (e_in, f_in), (e_out, f_out) = e_of_r[0]
    assert (e_out, f_out) == (0.0, 0.0)
    # S = 10 d^3 + O(d^4), d = (rc - r)/(rc - rs): E ~ 10 u(rc) d^3 and F ~ 30 u(rc) d^2/(rc - rs)
    d = 1e-4 / (rc - rs)
    assert abs(e_in) <= 11 * abs(u_rc) * d ** 3
    assert abs(f_in) <= 31 * abs(u_rc) * d ** 2 / (rc - rs) + 1e-3 * abs(u_rc) * d
    # plain truncation jumps by u(rc): the switch is what removes it
    assert abs(e_of_r[1][0][0] - u_rc) < 1e-3 * abs(u_rc)


def _argon_box(n_cells=2, a=5.26, seed=0, jitter=0.15):
    base = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    grid = np.array([[i, j, k] for i in range(n_cells) for j in range(n_cells) for k in range(n_cells)])
    frac = (grid[:, None, :] + base[None]).reshape(-1, 3) / n_cells
    cell = np.eye(3) * a * n_cells
    pos = frac @ cell + np.random.default_rng(seed).normal(size=(len(frac), 3)) * jitter
    return pos, cell


def test_periodic_argon_energy_and_forces_match_ase_lennardjones():
    from ase import Atoms
    from ase.calculators.lj import LennardJones
    eps, sigma, rc = 0.0104, 3.4, 8.5      # rc > L/2: several images per pair
    pos, cell = _argon_box()
    atoms = Atoms("Ar" * len(pos), positions=pos, cell=cell, pbc=True)
    # ASE's default (smooth=False) shifts u by u(rc): our shift=true
    atoms.calc = LennardJones(epsilon=eps, sigma=sigma, rc=rc, smooth=False)
    e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
    sys = _system(["Ar"] * len(pos), pos, cell)
    pot = cl.lj_from_config({"kind": "lj", "epsilon": eps, "sigma": sigma, "cutoff": rc, "shift": True}, sys)
    e, f = jax.jit(energy_and_forces(pot))(pot.init(None, sys), sys.positions, _context(sys, rc))
    assert abs(float(e) - e_ref) < 1e-10 * abs(e_ref)
    np.testing.assert_allclose(np.asarray(f), f_ref, atol=1e-10)


def test_dispersion_correction_matches_analytic_tail_formula():
    # one species: E_tail = (8/3) pi N^2/V eps sigma^3 [ (1/3)(sigma/rc)^9 - (sigma/rc)^3 ]
    # (Allen & Tildesley eq. 2.144 with OpenMM's N^2 pair count)
    eps, sigma, rc = 0.0104, 3.4, 5.0
    pos, cell = _argon_box()
    sys = _system(["Ar"] * len(pos), pos, cell)
    ctx = _context(sys, rc)
    cfg = {"kind": "lj", "epsilon": eps, "sigma": sigma, "cutoff": rc}
    p0 = cl.lj_from_config(cfg, sys)
    p1 = cl.lj_from_config(dict(cfg, dispersion_correction=True), sys)
    e0 = jax.jit(p0.energy)(p0.init(None, sys), sys.positions, ctx)
    e1 = jax.jit(p1.energy)(p1.init(None, sys), sys.positions, ctx)
    n, vol = len(pos), np.linalg.det(cell)
    tail = 8 / 3 * np.pi * n ** 2 / vol * eps * sigma ** 3 * ((sigma / rc) ** 9 / 3 - (sigma / rc) ** 3)
    assert abs(float(e1 - e0) - tail) < 1e-12 * abs(tail)


def test_dispersion_correction_with_switch_and_mixture_matches_openmm():
    mm = pytest.importorskip("openmm")
    rc, rs = 5.0, 4.0
    pos, cell = _argon_box(jitter=0.2, seed=3)
    n = len(pos)
    types = np.arange(n) % 3                          # three LJ types, uneven counts
    sig = np.array([3.4, 3.0, 2.6])
    eps = np.array([0.0104, 0.006, 0.003])
    top = cl.make_topology(n, atom_types=types)
    p = cl.make_params(top, lj_sigma=sig, lj_epsilon=eps)
    ctx = Context(jnp.zeros(n, jnp.int32), jnp.asarray(cell),
                  neighbor_list(rc, cell, pbc=True, skin=0.5).allocate(jnp.asarray(pos), jnp.asarray(cell)))
    out = {}
    for disp in (False, True):
        pot = cl.classical_potential(top, p, cutoff=rc, coulomb=None, switch_distance=rs,
                                     dispersion_correction=disp, cell=cell)
        e, f = jax.jit(energy_and_forces(pot))(p, jnp.asarray(pos), ctx)
        s = mm.System()
        s.setDefaultPeriodicBoxVectors(*[mm.Vec3(*(row / units.NM)) for row in cell])
        nb = mm.NonbondedForce()
        nb.setNonbondedMethod(mm.NonbondedForce.CutoffPeriodic)
        nb.setCutoffDistance(rc / units.NM)
        nb.setUseSwitchingFunction(True)
        nb.setSwitchingDistance(rs / units.NM)
        nb.setUseDispersionCorrection(disp)
        for t in types:
            s.addParticle(40.0)
            nb.addParticle(0.0, sig[t] / units.NM, eps[t] / units.KJ_MOL)
        s.addForce(nb)
        e_ref, f_ref = _openmm_energy_forces(s, pos)
        assert abs(float(e) - e_ref) <= 1e-6 * abs(e_ref)
        np.testing.assert_allclose(np.asarray(f), f_ref, atol=1e-6 * np.abs(f_ref).max())
        out[disp] = float(e)
    assert out[True] != out[False]


def test_lj_stress_matches_finite_difference_strain_and_analytic_tail_pressure():
    rc, rs = 5.0, 4.2
    pos, cell = _argon_box(jitter=0.2, seed=1)
    cell = cell + np.array([[0, 0, 0], [0.6, 0, 0], [0.3, -0.4, 0]])    # triclinic
    n = len(pos)
    top = cl.make_topology(n, atom_types=np.arange(n) % 2)
    p = cl.make_params(top, lj_sigma=np.array([3.4, 3.0]), lj_epsilon=np.array([0.0104, 0.006]))
    nbr = neighbor_list(rc, cell, pbc=True, skin=0.5).allocate(jnp.asarray(pos), jnp.asarray(cell))
    ctx = Context(jnp.zeros(n, jnp.int32), jnp.asarray(cell), nbr)
    vol = abs(np.linalg.det(cell))
    out = {}
    for disp in (False, True):
        pot = cl.classical_potential(top, p, cutoff=rc, coulomb=None, switch_distance=rs,
                                     dispersion_correction=disp, cell=cell)
        out[disp] = jax.jit(energy_forces_stress(pot))(p, jnp.asarray(pos), ctx)
        if not disp:
            truncated = pot

    @jax.jit
    def e_strained(eps):
        d = jnp.eye(3) + eps
        return truncated.energy(p, jnp.asarray(pos) @ d.T, ctx.replace(cell=jnp.asarray(cell) @ d.T))

    # truncated (switched) LJ: sigma_ab = (1/V) dE/d(eps_ab) by central differences
    # of an explicitly deformed box; truncation error ~ h^2 E^(3) / V ~ 1e-13 eV/A^3
    h = 1e-5
    ref = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] += h / 2
            e[b, a] += h / 2
            ref[a, b] = (float(e_strained(jnp.asarray(e))) - float(e_strained(jnp.asarray(-e)))) / (2 * h * vol)
    np.testing.assert_allclose(np.asarray(out[False][2]), ref, atol=1e-9)
    # dispersion correction: E_disp ~ 1/V, so it adds exactly -E_disp/V to the diagonal
    e_disp = float(out[True][0] - out[False][0])
    assert e_disp < 0
    np.testing.assert_allclose(np.asarray(out[True][2] - out[False][2]), -e_disp / vol * np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.asarray(out[True][1]), np.asarray(out[False][1]), atol=1e-12)


def test_lj_pair_table_overrides_combination_rule_like_nbfix():
    eps_ar, sig_ar, eps_kr, sig_kr = 0.0104, 3.4, 0.014, 3.65
    eps_x, sig_x = 0.02, 3.1                      # explicit Ar-Kr pair
    sys = _system(["Ar", "Kr", "Ar"], [[0, 0, 0], [4.0, 0, 0], [0, 9.0, 0]])
    cfg = {"kind": "lj", "elements": {"Ar": {"epsilon": eps_ar, "sigma": sig_ar},
                                      "Kr": {"epsilon": eps_kr, "sigma": sig_kr}},
           "pairs": {"Ar-Kr": {"epsilon": eps_x, "sigma": sig_x}}, "cutoff": 20.0}
    pot = cl.lj_from_config(cfg, sys)
    ctx = _context(sys, 20.0)
    e = float(pot.energy(pot.init(None, sys), sys.positions, ctx))
    u = lambda r, s, ep: 4 * ep * ((s / r) ** 12 - (s / r) ** 6)
    ref = u(4.0, sig_x, eps_x) + u(9.0, sig_ar, eps_ar) + u(np.hypot(4, 9), sig_x, eps_x)
    assert abs(e - ref) < 1e-14
    # without the pair table: Lorentz-Berthelot, then geometric
    for rule, s_ab in (("lorentz-berthelot", 0.5 * (sig_ar + sig_kr)), ("geometric", np.sqrt(sig_ar * sig_kr))):
        c2 = {k: v for k, v in cfg.items() if k != "pairs"}
        c2["combination_rule"] = rule
        pot = cl.lj_from_config(c2, sys)
        e = float(pot.energy(pot.init(None, sys), sys.positions, ctx))
        e_ab = np.sqrt(eps_ar * eps_kr)
        ref = u(4.0, s_ab, e_ab) + u(9.0, sig_ar, eps_ar) + u(np.hypot(4, 9), s_ab, e_ab)
        assert abs(e - ref) < 1e-14
        assert pot.config["combination_rule"] == rule


def test_nbfix_from_ab_inverts_a_b_coefficients():
    sig, eps = 3.3, 0.012
    a, b = 4 * eps * sig ** 12, 4 * eps * sig ** 6
    s, e = cl.nbfix_from_ab([[a, 0.0]], [[b, 0.0]])
    np.testing.assert_allclose([s[0, 0], e[0, 0]], [sig, eps], rtol=1e-14)
    assert e[0, 1] == 0.0
    with pytest.raises(InputError, match="positive"):
        cl.nbfix_from_ab([[a]], [[0.0]])


# ---------------------------------------------------------------------------
# invariances, periodic molecules, safety, dtypes, training
# ---------------------------------------------------------------------------

def test_molecule_energy_is_translation_rotation_and_permutation_invariant(full_molecule):
    top, p, pot, ef = full_molecule
    pos = molecule_positions()
    e0, f0 = ef(p, jnp.asarray(pos), NO_CTX)
    rot, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))
    rot *= np.sign(np.linalg.det(rot))                    # proper rotation (keeps dihedral signs)
    e1, f1 = ef(p, jnp.asarray(pos @ rot.T + np.array([3.0, -7.0, 11.0])), NO_CTX)
    assert abs(float(e1 - e0)) < 1e-12 * max(1.0, abs(float(e0)))
    np.testing.assert_allclose(np.asarray(f1), np.asarray(f0) @ rot.T, atol=1e-10)
    # relabel atoms: new index of old atom a is perm[a]
    perm = np.random.default_rng(6).permutation(N_MOL)
    inv = np.argsort(perm)
    rl = lambda idx: [tuple(int(perm[a]) for a in row) for row in idx]
    excl, p14 = cl.exclusions_from_bonds(N_MOL, BONDS)
    top2 = cl.make_topology(N_MOL, atom_types=np.asarray(TYPES)[inv], bonds=rl(BONDS), angles=rl(ANGLES),
                            urey_bradley=rl(UB), torsions=rl(TORSIONS), torsion_periodicity=PERIODICITY,
                            impropers=rl(IMPROPERS), cmap=rl(CMAP), cmap_map=CMAP_MAP,
                            exclusions=rl(excl), pairs14=rl(p14), coulomb14_scale=1 / 1.2, lj14_scale=0.5)
    kw = {f: getattr(p, f) for f in p.__dataclass_fields__ if getattr(p, f) is not None}
    kw["charges"] = np.asarray(p.charges)[inv]
    p2 = cl.make_params(top2, **kw)
    pot2 = cl.classical_potential(top2, p2, coulomb="direct")
    e2 = jax.jit(pot2.energy)(p2, jnp.asarray(pos[inv]), NO_CTX)
    assert abs(float(e2 - e0)) < 1e-12 * max(1.0, abs(float(e0)))
    # fixed force-field charges are reported as the model's charges
    np.testing.assert_array_equal(np.asarray(pot.charges(p, jnp.asarray(pos), NO_CTX)), np.asarray(p.charges))


def test_molecule_split_across_periodic_boundary_has_same_energy_as_whole_with_ewald():
    """Bonded terms and exclusions use the minimum image: wrapping atoms
    of a molecule into the box one by one must not change anything."""
    top = molecule_topology()
    p = molecule_params(top)
    L = 14.0
    cell = np.eye(3) * L
    pos = molecule_positions() + np.array([L - 3.0, 5.0, 5.0])     # sticks out of the +x face
    wrapped = pos - np.floor(pos / L) * L
    assert not np.allclose(wrapped, pos)
    pot = cl.classical_potential(top, p, cutoff=6.0, coulomb="ewald", cell=cell, accuracy=1e-6,
                                 dispersion_correction=True)
    fns = neighbor_list(6.0, cell, pbc=True, skin=0.5)
    ef = jax.jit(energy_and_forces(pot))
    out = []
    for x in (pos, wrapped):
        ctx = Context(NO_CTX.species, jnp.asarray(cell), fns.allocate(jnp.asarray(x), jnp.asarray(cell)))
        out.append(ef(p, jnp.asarray(x), ctx))
    assert abs(float(out[0][0] - out[1][0])) < 1e-10
    np.testing.assert_allclose(np.asarray(out[0][1]), np.asarray(out[1][1]), atol=1e-9)


def test_collinear_angle_and_dihedral_have_finite_gradients():
    pos = jnp.asarray([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0.5, 0]])
    top = cl.make_topology(4, angles=[(0, 1, 2)], torsions=[(0, 1, 2, 3)], torsion_periodicity=[2],
                           impropers=[(0, 1, 2, 3)])
    p = cl.make_params(top, angle_k=[1.0], angle_theta0=[2.0], torsion_k=[0.1], torsion_phase=[0.3],
                       improper_k=[1.0], improper_phi0=[0.4])
    pot = cl.classical_potential(top, p, coulomb=None)
    ctx = Context(jnp.zeros(4, jnp.int32), jnp.zeros((3, 3)))
    e, f = jax.jit(energy_and_forces(pot))(p, pos, ctx)
    assert np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(f)))
    # theta = pi exactly (atan2 form, no acos clipping)
    np.testing.assert_allclose(float(cl.angle_values(pos, np.array([[0, 1, 2]]))[0]), np.pi, rtol=1e-15)
    g = jax.jit(jax.grad(lambda pr: pot.energy(pr, pos, ctx)))(p)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))


def test_improper_difference_is_wrapped_to_minus_pi_pi():
    # phi0 = 170 deg, phi = -170 deg: the difference is 20 deg, not 340 deg
    phi, phi0 = np.deg2rad(-170.0), np.deg2rad(170.0)
    e = cl.harmonic_improper_energy(jnp.asarray(phi), 2.0, jnp.asarray(phi0))
    assert abs(float(e) - 0.5 * 2.0 * np.deg2rad(20.0) ** 2) < 1e-14
    assert float(cl.wrap_angle(jnp.asarray(np.pi))) == pytest.approx(np.pi)
    assert float(cl.wrap_angle(jnp.asarray(-np.pi))) == pytest.approx(np.pi)


def test_float32_energy_agrees_with_float64(full_molecule):
    top, p64, pot, ef = full_molecule
    pos = molecule_positions()
    e64, f64 = ef(p64, jnp.asarray(pos), NO_CTX)
    p32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), p64)
    e32, f32 = ef(p32, jnp.asarray(pos, jnp.float32), NO_CTX)
    assert f32.dtype == jnp.float32
    # float32 rounding ~1e-7 relative on terms of size ~|E_coulomb| ~ 10 eV
    assert abs(float(e32) - float(e64)) < 1e-4
    np.testing.assert_allclose(np.asarray(f32), np.asarray(f64), atol=1e-3 * np.abs(np.asarray(f64)).max())


def test_parameter_gradient_matches_analytic_for_bond_constants():
    # dE/dk_b = 1/2 (r_b - r0_b)^2 and dE/dr0_b = -k_b (r_b - r0_b): params are trainable
    top = molecule_topology(**dict(_EMPTY, bonds=BONDS))
    p = cl.make_params(top, bond_k=np.full(len(BONDS), 20.0), bond_r0=np.full(len(BONDS), 1.45))
    assert len(top.angles) == 0
    pot = cl.classical_potential(top, p, coulomb=None)
    pos = molecule_positions()
    g = jax.jit(jax.grad(pot.energy))(p, jnp.asarray(pos), NO_CTX)
    r = np.linalg.norm(pos[[b for _, b in BONDS]] - pos[[a for a, _ in BONDS]], axis=1)
    np.testing.assert_allclose(np.asarray(g.bond_k), 0.5 * (r - 1.45) ** 2, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g.bond_r0), -20.0 * (r - 1.45), rtol=1e-12)


def test_harmonic_tether_energy_and_flag():
    pos = np.array([[0.0, 0, 0], [1.0, 1.0, 1.0]])
    sys = _system(["H", "H"], pos)
    pot = cl.harmonic_from_config({"kind": "harmonic", "k": 2.0}, sys)
    assert pot.translation_invariant is False and pot.config == {"kind": "harmonic", "k": 2.0}
    d = np.array([[0.1, 0.0, 0.0], [0.0, -0.2, 0.3]])
    e = pot.energy(pot.init(None, sys), jnp.asarray(pos + d), Context(sys.species, sys.cell))
    assert abs(float(e) - 0.5 * 2.0 * np.sum(d * d)) < 1e-15


def test_resolved_lj_config_has_defaults_filled_in():
    sys = _system(["Ar", "Ar"], [[0, 0, 0], [4.0, 0, 0]])
    pot = cl.lj_from_config({"kind": "lj", "epsilon": 0.01, "sigma": 3.4}, sys)
    assert pot.config == {"kind": "lj", "epsilon": 0.01, "sigma": 3.4, "cutoff": 2.5 * 3.4,
                          "shift": False, "dispersion_correction": False}
    assert pot.cutoff == pytest.approx(8.5)
    # the resolved config builds the same potential, also through the registry
    from jaxpot.potentials import build_potential
    again = build_potential(pot.config, sys)
    assert again.config == pot.config and again.name == "lj"
    tether = build_potential({"kind": "harmonic", "k": 1.5}, sys)
    assert tether.config == {"kind": "harmonic", "k": 1.5}


@pytest.mark.parametrize("cfg, message", [
    ({"kind": "lj", "epsilon": 0.01, "sigma": 3.4, "sigmaa": 1}, "unknown key.*sigmaa"),
    ({"kind": "lj", "epsilon": 0.01}, "missing sigma"),
    ({"kind": "lj"}, "needs epsilon and sigma"),
    ({"kind": "lj", "elements": {"Ar": {"epsilon": 0.01, "sigma": 3.4}}}, "element Kr"),
    ({"kind": "lj", "pairs": {"Ar-Ar": {"epsilon": 0.01, "sigma": 3.4}}}, "pair Ar-Kr"),
    ({"kind": "lj", "epsilon": -0.01, "sigma": 3.4}, "non-negative"),
    ({"kind": "lj", "epsilon": 0.01, "sigma": 3.4, "shift": "yes"}, "true or false"),
    ({"kind": "harmonic"}, "needs k"),
    ({"kind": "harmonic", "k": 1.0, "x0": 1}, "unknown key.*x0"),
])
def test_bad_simple_kind_configs_raise_input_error_naming_the_problem(cfg, message):
    sys = _system(["Ar", "Kr"], [[0, 0, 0], [4.0, 0, 0]])
    factory = cl.lj_from_config if cfg["kind"] == "lj" else cl.harmonic_from_config
    with pytest.raises(InputError, match=message):
        factory(cfg, sys)


def test_bad_topology_and_params_raise_input_error():
    with pytest.raises(InputError, match="atom 9"):
        cl.make_topology(4, bonds=[(0, 9)])
    with pytest.raises(InputError, match="torsion_periodicity"):
        cl.make_topology(4, torsions=[(0, 1, 2, 3)])
    with pytest.raises(InputError, match="listed twice"):
        cl.make_topology(4, exclusions=[(0, 1)], pairs14=[(1, 0)])
    top = cl.make_topology(4, bonds=[(0, 1)])
    with pytest.raises(InputError, match="bond_r0 is missing"):
        cl.make_params(top, bond_k=[1.0])
    with pytest.raises(InputError, match="shape"):
        cl.make_params(top, bond_k=[1.0, 2.0], bond_r0=[1.0])
    p = cl.make_params(top, bond_k=[1.0], bond_r0=[1.0])
    with pytest.raises(InputError, match="needs charges"):
        cl.classical_potential(top, p, coulomb="direct")
    with pytest.raises(InputError, match="periodic cell"):
        cl.classical_potential(top, p, cutoff=5.0, coulomb=None, dispersion_correction=True)
    with pytest.raises(InputError, match="switch"):
        cl.classical_potential(top, p, cutoff=5.0, coulomb=None, switch_distance=6.0)


def test_exclusion_bitmask_lookup_matches_pair_set_in_either_order():
    from jaxpot.partition.exclusions import exclusion_bitmask, excluded_pairs_lookup

    rng = np.random.default_rng(0)
    n = 300
    ex = set()
    while len(ex) < 800:
        a, d = int(rng.integers(0, n)), int(rng.integers(1, 70))
        if a + d < n:
            ex.add((a, a + d) if rng.random() < 0.5 else (a + d, a))
    ex = np.array(sorted(ex))
    masks, dmax = exclusion_bitmask(n, ex)
    assert masks.dtype == np.uint32 and masks.shape == (n, -(-dmax // 32))
    i = np.concatenate([rng.integers(0, n, 20000), ex[:, 0], ex[:, 1], np.arange(n)])
    j = np.concatenate([rng.integers(0, n, 20000), ex[:, 1], ex[:, 0], np.arange(n)])
    got = np.asarray(excluded_pairs_lookup((jnp.asarray(masks), dmax), jnp.asarray(i), jnp.asarray(j)))
    pair_set = {(min(a, b), max(a, b)) for a, b in ex.tolist()}
    ref = np.array([(min(a, b), max(a, b)) in pair_set for a, b in zip(i.tolist(), j.tolist())])
    np.testing.assert_array_equal(got, ref)
    # pairs far apart in index fall back to the table lookup; none -> None
    assert exclusion_bitmask(n, np.array([[0, 299]])) is None
    assert exclusion_bitmask(n, np.zeros((0, 2), int)) is None
