"""OpenMM System import checked against OpenMM itself.

Systems: OpenMM's bundled villin headpiece in water (app/data/test.pdb, 8867
atoms) for the slow checks, and for the default suite a fragment of it, the
C-terminal tripeptide GLY-LEU-PHE (charged termini, hydrogens added by
Modeller for each force field): 49 atoms in vacuum, or solvated in a 1.6 nm
water box (310 atoms amber14/TIP3P, 391 atoms charmm36 water) with a 0.7 nm
cutoff (the box must be at least twice the cutoff). Flexible water, no
constraints, as the import requires.

Tolerances:
- against the Reference platform (float64 everywhere): both sides evaluate
  the same closed-form expressions with the same Ewald alpha, k-space box
  and PME grid, so they agree to rounding plus the unit constants
  (jaxpot.units.KJ_MOL and KE vs OpenMM's kJ/mol and ONE_4PI_EPS0 agree to
  ~1e-8 relative): 1e-6 relative in energy, forces within 1e-6 of the
  largest force component;
- against the CPU platform (single-precision nonbonded kernels, tabulated
  erfc): the issue's 2e-4 relative energy and 2e-3 relative RMS force.
"""
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpot  # noqa: F401  (float64)
from jaxpot import units
from jaxpot.partition import neighbor_list
from jaxpot.potentials.base import Context, energy_and_forces
from jaxpot.system import InputError

mm = pytest.importorskip("openmm")
app = pytest.importorskip("openmm.app")
unit = pytest.importorskip("openmm.unit")

from jaxpot.interop import openmm as omi  # noqa: E402

VILLIN = os.path.join(os.path.dirname(app.__file__), "data", "test.pdb")
FORCEFIELDS = {"amber14": ("amber14-all.xml", "amber14/tip3p.xml"),
               "charmm36": ("charmm36.xml", "charmm36/water.xml")}
REF_REL = 1e-6


# ---------------------------------------------------------------------------
# systems
# ---------------------------------------------------------------------------

_CACHE = {}


def forcefield(ff_name):
    """OpenMM ForceField objects, loaded once (charmm36.xml takes seconds)."""
    key = ("ff", ff_name)
    if key not in _CACHE:
        _CACHE[key] = app.ForceField(*FORCEFIELDS[ff_name])
    return _CACHE[key]


def tripeptide(ff_name, solvated):
    """(topology, positions nm) of GLY-LEU-PHE cut from villin, hydrogens by
    Modeller for force field ``ff_name``; optionally in a 1.6 nm water box."""
    key = (ff_name, solvated)
    if key not in _CACHE:
        pdb = app.PDBFile(VILLIN)
        ff = forcefield(ff_name)
        m = app.Modeller(pdb.topology, pdb.positions)
        m.delete([a for a in m.topology.atoms()
                  if a.residue.index not in (32, 33, 34) or a.element.symbol == "H"])
        m.addHydrogens(ff)
        m.topology.setPeriodicBoxVectors(None)
        if solvated:
            m = app.Modeller(m.topology, m.positions)
            m.addSolvent(ff, boxSize=mm.Vec3(1.6, 1.6, 1.6) * unit.nanometer, neutralize=False)
        _CACHE[key] = (m.topology, m.positions)
    return _CACHE[key]


def make_system(ff_name, solvated, method, cutoff_nm=0.7, **kw):
    top, pos = tripeptide(ff_name, solvated)
    ff = forcefield(ff_name)
    args = dict(nonbondedMethod=getattr(app, method), constraints=None, rigidWater=False, **kw)
    if method != "NoCutoff":
        args["nonbondedCutoff"] = cutoff_nm * unit.nanometer
    return ff.createSystem(top, **args), top, pos


def positions_A(pos):
    return np.asarray(pos.value_in_unit(unit.nanometer)) * units.NM


def openmm_energy_forces(system, pos, platform="Reference", groups=None):
    """(E eV, F eV/A) from OpenMM; ``groups`` a set of force-group indices."""
    ctx = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName(platform),
                     *(({"Threads": "2"},) if platform == "CPU" else ()))
    ctx.setPositions(pos)
    kw = {} if groups is None else {"groups": groups}
    st = ctx.getState(getEnergy=True, getForces=True, **kw)
    e = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * units.KJ_MOL
    f = np.asarray(st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return e, f * units.KJ_MOL / units.NM


def box_A(system):
    return np.asarray([[v.x, v.y, v.z] for v in system.getDefaultPeriodicBoxVectors()]) * units.NM


def jaxpot_energy_forces(pot, system, pos_A, dtype=jnp.float64):
    periodic = pot.config["imported"]["periodic"]
    cell = box_A(system) if periodic else np.zeros((3, 3))
    x = jnp.asarray(pos_A, dtype)
    c = jnp.asarray(cell, dtype)
    nbr = None
    if pot.cutoff > 0:
        nbr = neighbor_list(pot.cutoff, cell, periodic, skin=0.5).allocate(x, c)
    ctx = Context(species=jnp.ones(len(pos_A), jnp.int32), cell=c, neighbors=nbr)

    class _S:
        positions = x
    params = pot.init(jax.random.PRNGKey(0), _S)
    e, f = jax.jit(energy_and_forces(pot))(params, x, ctx)
    return float(e), np.asarray(f, np.float64)


def only_force(system, k):
    """A copy of ``system`` holding only its force k."""
    s = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    for j in reversed(range(s.getNumForces())):
        if j != k:
            s.removeForce(j)
    return s


def assert_matches(e, f, e_ref, f_ref, rel, what):
    assert abs(e - e_ref) <= rel * max(abs(e_ref), 1e-8), f"{what}: E {e} vs OpenMM {e_ref}"
    np.testing.assert_allclose(f, f_ref, atol=rel * max(np.abs(f_ref).max(), 1e-8), rtol=0, err_msg=what)


def check_total_and_each_force(system, pos, rel=REF_REL, only=None):
    """Total energy/forces and every force on its own (OpenMM force groups)
    against the Reference platform; ``only``: the force class names to check
    separately (default all)."""
    x = positions_A(pos)
    pot = omi.potential_from_openmm(system)
    e, f = jaxpot_energy_forces(pot, system, x)
    e_ref, f_ref = openmm_energy_forces(system, pos)
    assert_matches(e, f, e_ref, f_ref, rel, "total")
    grouped = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    for k, force in enumerate(grouped.getForces()):
        force.setForceGroup(k)
    checked = []
    for k, force in enumerate(grouped.getForces()):
        if isinstance(force, mm.CMMotionRemover) or (only is not None and type(force).__name__ not in only):
            continue
        e_ref, f_ref = openmm_energy_forces(grouped, pos, groups={k})
        e, f = jaxpot_energy_forces(omi.potential_from_openmm(only_force(system, k)), system, x)
        assert_matches(e, f, e_ref, f_ref, rel, type(force).__name__)
        checked.append(type(force).__name__)
    return pot, checked


# ---------------------------------------------------------------------------
# small systems against the Reference platform
# ---------------------------------------------------------------------------

def test_vacuum_tripeptide_charmm36_energy_forces_and_each_force_match_openmm_reference():
    """Every force of charmm36: Urey-Bradley (inside HarmonicBondForce),
    impropers, CMAP, the NBFIX table and the 1-4 LJ bonds; amber14's forces
    are a subset (amber14 in vacuum: the pdb + forcefield config test below;
    per force: villin, slow)."""
    system, _, pos = make_system("charmm36", False, "NoCutoff")
    pot, checked = check_total_and_each_force(system, pos)
    assert pot.config["imported"]["nonbonded_method"] == "NoCutoff"
    assert pot.config["imported"]["custom_nonbonded"].startswith("merged")
    assert pot.config["imported"]["terms"]["cmap"] == 1
    assert set(checked) == {"HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce",
                            "CustomTorsionForce", "CMAPTorsionForce", "CustomNonbondedForce", "CustomBondForce"}


@pytest.mark.slow   # CI budget; run with -m slow
def test_solvated_tripeptide_charmm36_pme_matches_openmm_reference_total_and_per_force():
    """Separately: the three nonbonded forces (PME Coulomb with exclusions and
    1-4 exceptions, the periodic NBFIX table, the 1-4 LJ bonds); the bonded
    forces one by one are checked in vacuum above. amber14 in water: through
    the ASE calculator below."""
    system, _, pos = make_system("charmm36", True, "PME")
    pot, checked = check_total_and_each_force(
        system, pos, only={"NonbondedForce", "CustomNonbondedForce", "CustomBondForce"})
    assert len(checked) == 3
    imp = pot.config["imported"]
    assert imp["cm_motion_remover"] is True
    assert imp["dispersion_correction"] is False      # charmm36: no long-range correction


@pytest.mark.parametrize("method", [pytest.param("Ewald", marks=pytest.mark.slow),   # CI budget; Ewald vs OpenMM
                                    "CutoffPeriodic"])                          # is also in test_classical
def test_solvated_tripeptide_ewald_and_reaction_field_match_openmm_reference(method):
    """charmm36 with OpenMM's Ewald k-space box / reaction field; with the
    reaction field also the NBFIX table's long-range correction switched on
    (OpenMM integrates it numerically, jaxpot in closed form)."""
    system, _, pos = make_system("charmm36", True, method)
    if method == "CutoffPeriodic":
        for force in system.getForces():
            if isinstance(force, mm.CustomNonbondedForce):
                force.setUseLongRangeCorrection(True)
    pot = omi.potential_from_openmm(system)
    assert pot.config["imported"]["dispersion_correction"] is (method == "CutoffPeriodic")
    e, f = jaxpot_energy_forces(pot, system, positions_A(pos))
    e_ref, f_ref = openmm_energy_forces(system, pos)
    assert_matches(e, f, e_ref, f_ref, REF_REL, method)


def test_nonbonded_lj_and_nbfix_table_together_become_two_nonbonded_terms():
    """When the NonbondedForce carries LJ as well as the NBFIX table, the
    two cannot share one LJ table: the table becomes a second term."""
    system, _, pos = make_system("charmm36", False, "NoCutoff")
    for force in system.getForces():
        if isinstance(force, mm.NonbondedForce):
            for i, (s, e) in ((0, (0.3, 0.5)), (5, (0.25, 0.2))):
                q = force.getParticleParameters(i)[0]
                force.setParticleParameters(i, q, s, e)
    pot = omi.potential_from_openmm(system)
    assert pot.config["imported"]["custom_nonbonded"] == "separate term"
    e, f = jaxpot_energy_forces(pot, system, positions_A(pos))
    e_ref, f_ref = openmm_energy_forces(system, pos)
    assert_matches(e, f, e_ref, f_ref, REF_REL, "two LJ terms")


def test_cutoff_nonperiodic_with_switch_matches_openmm_reference():
    system, _, pos = make_system("amber14", False, "CutoffNonPeriodic", cutoff_nm=0.6,
                                 switchDistance=0.5 * unit.nanometer)
    nb = [f for f in system.getForces() if isinstance(f, mm.NonbondedForce)][0]
    assert nb.getUseSwitchingFunction()
    pot = omi.potential_from_openmm(system)
    assert pot.config["imported"]["switch_distance"] == pytest.approx(5.0)
    e, f = jaxpot_energy_forces(pot, system, positions_A(pos))
    e_ref, f_ref = openmm_energy_forces(system, pos)
    assert_matches(e, f, e_ref, f_ref, REF_REL, "CutoffNonPeriodic")


def test_pme_alpha_and_grid_are_the_ones_openmm_derives_from_its_tolerance():
    """Import never creates a Context: alpha and the grid are computed as
    NonbondedForceImpl::calcPMEParameters does; compare with what OpenMM's
    CPU and Reference platforms report for villin's box and the small box."""
    pdb = app.PDBFile(VILLIN)
    ff = app.ForceField(*FORCEFIELDS["amber14"])
    small, _, _ = make_system("amber14", True, "PME")
    big = ff.createSystem(pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=1.0 * unit.nanometer,
                          constraints=None, rigidWater=False, ewaldErrorTolerance=2e-4)
    for system in (small, big):
        imp = omi.potential_from_openmm(system).config["imported"]
        nb = [f for f in system.getForces() if isinstance(f, mm.NonbondedForce)][0]
        for plat in ("Reference", "CPU"):
            ctx = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName(plat))
            alpha, nx, ny, nz = nb.getPMEParametersInContext(ctx)
            assert imp["ewald_alpha"] == pytest.approx(alpha / units.NM, rel=1e-12)
            assert imp["pme_grid"] == [nx, ny, nz]


def _torsion_system(expr, theta0, k_kj):
    s = mm.System()
    for _ in range(4):
        s.addParticle(12.0)
    f = mm.CustomTorsionForce(expr)
    f.addPerTorsionParameter("k")
    f.addPerTorsionParameter("theta0")
    f.addTorsion(0, 1, 2, 3, [k_kj, theta0])
    s.addForce(f)
    return s


@pytest.mark.parametrize("expr", ["k*(theta-theta0)^2",
                                  "0.5*k*dtheta^2; dtheta = min(dt, 2*pi-dt); dt = abs(theta-theta0); "
                                  "pi = 3.141592653589793"], ids=["charmm36_xml_unwrapped", "psf_wrapped"])
def test_harmonic_improper_forms_match_openmm_on_both_sides_of_the_branch_cut(expr):
    """theta0 = pi with theta just past -pi: charmm36.xml's expression is not
    wrapped (OpenMM's theta is in [-pi, pi], so E = k (2 pi - 0.2)^2), the
    CharmmPsfFile form is; both are reproduced as OpenMM evaluates them."""
    system = _torsion_system(expr, math.pi, 40.0)
    energies = []
    for phi in (-math.pi + 0.2, math.pi - 0.3, 0.4):
        # b at the origin, c on z, a on x: the dihedral a-b-c-d is +-phi
        pos = np.array([[1.5, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.5],
                        [1.5 * math.cos(phi), 1.5 * math.sin(phi), 1.5]])
        q = unit.Quantity([mm.Vec3(*(r / units.NM)) for r in pos], unit.nanometer)
        e_ref, f_ref = openmm_energy_forces(system, q)
        e, f = jaxpot_energy_forces(omi.potential_from_openmm(system), system, pos)
        assert_matches(e, f, e_ref, f_ref, REF_REL, f"phi={phi}")
        energies.append(e_ref)
    # one of the two points near +-pi lies across the cut from theta0 = pi:
    # unwrapped, its energy exceeds k pi^2; wrapped, no energy does
    far = 40.0 * units.KJ_MOL * math.pi ** 2
    assert (max(energies) > far) == ("dtheta" not in expr)


# ---------------------------------------------------------------------------
# parameters, calculator, config, dynamics
# ---------------------------------------------------------------------------

def test_imported_params_are_a_trainable_savable_pytree_with_bond_gradient_of_harmonic_form():
    """dE/dk_b = 1/2 (r_b - r0_b)^2 for every bond (eV/(eV/A^2) = A^2)."""
    system, _, pos = make_system("amber14", False, "NoCutoff")
    pot = omi.potential_from_openmm(system)
    x = jnp.asarray(positions_A(pos))

    class _S:
        positions = x
    params = pot.init(jax.random.PRNGKey(0), _S)
    ctx = Context(species=jnp.ones(len(x), jnp.int32), cell=jnp.zeros((3, 3)))
    g = jax.grad(pot.energy)(params, x, ctx)
    assert jax.tree.structure(g) == jax.tree.structure(params)
    bonds = []
    for force in system.getForces():
        if isinstance(force, mm.HarmonicBondForce):
            for k in range(force.getNumBonds()):
                a, b, r0, _ = force.getBondParameters(k)
                bonds.append((a, b, r0.value_in_unit(unit.nanometer) * units.NM))
    r = np.array([np.linalg.norm(np.asarray(x)[a] - np.asarray(x)[b]) for a, b, _ in bonds])
    r0 = np.array([c for _, _, c in bonds])
    np.testing.assert_allclose(np.asarray(g.bond_k), 0.5 * (r - r0) ** 2, rtol=1e-10, atol=1e-14)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(g))
    # savable: a msgpack round trip through flax gives the same leaves
    from flax import serialization
    back = serialization.from_bytes(params, serialization.to_bytes(params))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_ase_calculator_from_openmm_matches_openmm_for_solvated_tripeptide_and_gives_stress():
    from ase import Atoms
    from jaxpot.interop.ase import JaxpotCalculator

    system, top, pos = make_system("amber14", True, "PME")
    atoms = Atoms(numbers=[a.element.atomic_number for a in top.atoms()], positions=positions_A(pos),
                  cell=box_A(system), pbc=True)
    atoms.calc = JaxpotCalculator.from_openmm(mm.XmlSerializer.serialize(system))
    assert atoms.calc.spec.config["imported"]["dispersion_correction"] is True
    e_ref, f_ref = openmm_energy_forces(system, pos)
    assert_matches(atoms.get_potential_energy(), atoms.get_forces(), e_ref, f_ref, REF_REL, "calculator")
    assert np.all(np.isfinite(atoms.get_stress()))


def test_bad_openmm_input_raises_input_error_naming_the_force_or_key(tmp_path):
    system, _, _ = make_system("amber14", False, "NoCutoff")
    s = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    s.addConstraint(0, 1, 0.1)
    with pytest.raises(InputError, match="constraints"):
        omi.potential_from_openmm(s)
    s = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    s.addForce(mm.CustomExternalForce("x^2"))
    with pytest.raises(InputError, match="CustomExternalForce"):
        omi.potential_from_openmm(s)
    s = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    tf = mm.CustomTorsionForce("k*cos(theta-theta0)")
    tf.addPerTorsionParameter("k")
    tf.addPerTorsionParameter("theta0")
    s.addForce(tf)
    with pytest.raises(InputError, match="CustomTorsionForce.*unrecognised"):
        omi.potential_from_openmm(s)
    s = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    s.setVirtualSite(0, mm.TwoParticleAverageSite(1, 2, 0.5, 0.5))
    with pytest.raises(InputError, match="virtual site.*TwoParticleAverageSite"):
        omi.potential_from_openmm(s)
    sys_pme, _, _ = make_system("amber14", True, "PME")
    for f in sys_pme.getForces():
        if isinstance(f, mm.NonbondedForce):
            f.setNonbondedMethod(mm.NonbondedForce.LJPME)
    with pytest.raises(InputError, match="LJPME"):
        omi.potential_from_openmm(sys_pme)
    from jaxpot.potentials import build_potential
    from jaxpot.system import from_ase
    from ase import Atoms
    jsys = from_ase(Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]))
    with pytest.raises(InputError, match="unknown key"):
        build_potential({"kind": "openmm", "system": "x.xml", "colour": 1}, jsys)
    with pytest.raises(InputError, match="either system"):
        build_potential({"kind": "openmm"}, jsys)
    with pytest.raises(InputError, match="not found"):
        build_potential({"kind": "openmm", "system": str(tmp_path / "missing.xml")}, jsys)
    with pytest.raises(InputError, match="nonbonded_method"):
        build_potential({"kind": "openmm", "pdb": VILLIN, "forcefield": ["amber14-all.xml"],
                         "nonbonded_method": "PPPM"}, jsys)


def _write_inputs(tmp_path, ff_name="amber14"):
    """system.xml (serialized, NoCutoff) and start.pdb of the vacuum
    tripeptide, relaxed by OpenMM's minimizer so MD starts near equilibrium."""
    system, top, pos = make_system(ff_name, False, "NoCutoff")
    ctx = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos)
    mm.LocalEnergyMinimizer.minimize(ctx, 1.0, 200)
    pos = ctx.getState(getPositions=True).getPositions()
    (tmp_path / "system.xml").write_text(mm.XmlSerializer.serialize(system))
    with open(tmp_path / "start.pdb", "w") as fh:
        app.PDBFile.writeFile(top, pos, fh)
    return system, pos


def test_config_with_pdb_and_forcefield_builds_the_same_energy_as_openmm(tmp_path):
    from ase.io import read
    from jaxpot.potentials import build_potential
    from jaxpot.system import from_ase

    system, pos = _write_inputs(tmp_path)
    jsys = from_ase(read(tmp_path / "start.pdb"))
    pot = build_potential({"kind": "openmm", "pdb": str(tmp_path / "start.pdb"),
                           "forcefield": list(FORCEFIELDS["amber14"])}, jsys)
    assert pot.config["nonbonded_method"] == "NoCutoff"      # default for a cluster
    assert pot.config["cutoff"] == 10.0 and pot.config["check_masses"] is True
    e, f = jaxpot_energy_forces(pot, system, positions_A(pos))
    e_ref, f_ref = openmm_energy_forces(system, pos)
    assert_matches(e, f, e_ref, f_ref, REF_REL, "pdb+forcefield")


def _md_config(tmp_path, name, **md):
    return {"system": {"file": str(tmp_path / "start.pdb")},
            "potential": {"kind": "openmm", "system": str(tmp_path / "system.xml")},
            "md": {"temperature": 300.0, "timestep": 0.5, "seed": 1, **md},
            "output": {"directory": str(tmp_path / name), "every": 10}}


def test_imported_tripeptide_conserves_energy_in_nve(tmp_path):
    """Velocity Verlet at 0.25 fs: the shadow-energy error is ~(omega dt)^2/12
    of the energy exchanged (omega dt ~ 0.2 for X-H stretches, ~0.3%), so
    the conserved energy fluctuates by well under 2% of the potential energy
    fluctuation; a wrong force (a missed term, a sign) breaks this at O(1)."""
    from jaxpot import io
    from jaxpot.simulate import run_md

    _write_inputs(tmp_path)
    run_md(_md_config(tmp_path, "nve", ensemble="nve", timestep=0.25, steps=200, equilibration_steps=0),
           progress=False)
    th = io.read_thermo(tmp_path / "nve" / "thermo.csv")
    cons = np.asarray(th["conserved_eV"])
    pe = np.asarray(th["potential_energy_eV"])
    assert np.all(np.isfinite(cons))
    assert np.std(cons) < 0.02 * np.std(pe)
    assert abs(cons[-1] - cons[0]) < 0.02 * np.std(pe)


@pytest.mark.slow   # CI budget; run with -m slow
def test_jaxpot_md_runs_nvt_and_pimd_with_openmm_potential_kind(tmp_path):
    import json

    from jaxpot import io
    from jaxpot.cli import main

    _write_inputs(tmp_path)
    for name, md in (("nvt", dict(ensemble="nvt", steps=20)),
                     ("pimd", dict(ensemble="pimd", beads=2, steps=10))):
        cfg = _md_config(tmp_path, name, **md)
        path = tmp_path / f"{name}.toml"
        io.write_toml(path, cfg)
        assert main(["md", str(path), "--no-progress"]) == 0
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert math.isfinite(summary["potential_energy_eV"]["mean"])
        assert 50.0 < summary["temperature_K"]["mean"] < 1000.0
        resolved = io.read_toml(tmp_path / name / "config.toml")["potential"]
        assert resolved["imported"]["cm_motion_remover"] is True
        assert resolved["imported"]["terms"]["bonds"] > 0


# ---------------------------------------------------------------------------
# villin in water, 8867 atoms (slow)
# ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("ff_name", ["amber14", "charmm36"])
def test_villin_in_water_pme_matches_openmm_cpu_total_and_each_force_group(ff_name):
    """PME, 1.0 nm cutoff, flexible water: total and each force group
    against the CPU platform (2e-4 relative energy, 2e-3 relative RMS force)."""
    pdb = app.PDBFile(VILLIN)
    ff = app.ForceField(*FORCEFIELDS[ff_name])
    system = ff.createSystem(pdb.topology, nonbondedMethod=app.PME, nonbondedCutoff=1.0 * unit.nanometer,
                             constraints=None, rigidWater=False)
    assert system.getNumParticles() == 8867
    x = positions_A(pdb.positions)

    def check(e, f, e_ref, f_ref, what):
        assert abs(e - e_ref) <= 2e-4 * abs(e_ref), f"{what}: {e} vs {e_ref}"
        rms = np.sqrt(np.mean((f - f_ref) ** 2)) / np.sqrt(np.mean(f_ref ** 2))
        assert rms <= 2e-3, f"{what}: relative RMS force error {rms}"

    pot = omi.potential_from_openmm(system)
    e, f = jaxpot_energy_forces(pot, system, x)
    e_ref, f_ref = openmm_energy_forces(system, pdb.positions, "CPU")
    check(e, f, e_ref, f_ref, "total")
    # the same total through a cluster-pair list (jaxpot.partition)
    from jaxpot.partition import cluster_list
    cell = jnp.asarray(box_A(system))
    cnbr = cluster_list(pot.cutoff, box_A(system), len(x), skin=0.5,
                        excluded=pot.cluster_exclusions).allocate(jnp.asarray(x), cell)
    params = pot.init(jax.random.PRNGKey(0), type("S", (), {"positions": jnp.asarray(x)}))
    ec, fc = jax.jit(energy_and_forces(pot))(params, jnp.asarray(x), Context(jnp.ones(len(x), jnp.int32), cell, cnbr))
    check(float(ec), np.asarray(fc, np.float64), e_ref, f_ref, "total (cluster-pair list)")
    grouped = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    for k, force in enumerate(grouped.getForces()):
        force.setForceGroup(k)
    for k, force in enumerate(grouped.getForces()):
        if isinstance(force, mm.CMMotionRemover):
            continue
        e_ref, f_ref = openmm_energy_forces(grouped, pdb.positions, "CPU", groups={k})
        e, f = jaxpot_energy_forces(omi.potential_from_openmm(only_force(system, k)), system, x)
        check(e, f, e_ref, f_ref, type(force).__name__)
