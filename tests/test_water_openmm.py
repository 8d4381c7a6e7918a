"""Independent cross-check of jaxpot's q-TIP4P/F against OpenMM.

The OpenMM side is built from generic custom forces in
``experiments/openmm_qtip4pf.py`` (quartic Morse CustomBondForce,
HarmonicAngleForce, O-O LJ, ThreeParticleAverageSite M site, PME/Ewald), so
it shares no code with jaxpot beyond the unit constants.

Tolerances. OpenMM's ``ewaldErrorTolerance`` delta and jaxpot's ``accuracy``
are the same estimate of the relative error of the Ewald/PME forces, and
jaxpot picks alpha = sqrt(-ln 2 delta)/rc and the PME grid by OpenMM's rules.
So (i) PME at equal delta should agree far below delta (same discretisation),
and (ii) each method at delta lies within ~delta |E_coul| of the converged
answer, which we get from OpenMM's Ewald at delta = 1e-8. Bonded and LJ terms
are exact in both and are held to round-off.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")

import jax  # noqa: E402

import jaxpot  # noqa: E402,F401  (float64)
from jaxpot.build import water_box  # noqa: E402
from jaxpot.interop.ase import JaxpotCalculator  # noqa: E402
from jaxpot.partition import neighbor_list  # noqa: E402
from jaxpot.potentials import build_potential  # noqa: E402
from jaxpot.potentials.base import Context, energy_forces_stress  # noqa: E402
from jaxpot.system import from_ase  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import openmm_qtip4pf as oq  # noqa: E402

WATER_216 = ROOT / "tests" / "data" / "water_216.extxyz"   # i-PI's q-TIP4P/F box, shipped (tests/data/README.md)

# jaxpot param switches that isolate each term (the energy is linear in them)
OFF = {"bond": {"D_r": 0.0}, "angle": {"k_theta": 0.0}, "lj": {"epsilon": 0.0}, "coulomb": {"q_H": 0.0}}


def _water_216():
    import ase.io
    return ase.io.read(WATER_216)


@pytest.fixture(scope="module")
def water_216():
    return _water_216()


@pytest.fixture(scope="module")
def water_32():
    # unrelaxed (contacts >= 1.6 A): any valid water configuration serves the
    # cross-check, and the relaxation would cost a compile of its own
    return water_box(molecules=32, density=0.997, seed=0, relax=False)


def _jaxpot_terms(atoms, spec):
    """jaxpot energies (eV), forces (eV/A) and stress (eV/A^3) of each term,
    isolated by switching the other terms' parameters off; one compile."""
    system = from_ase(atoms)
    pot = build_potential(spec, system)
    params = pot.init(jax.random.PRNGKey(0), system)
    fns = neighbor_list(pot.cutoff, np.asarray(system.cell), True, skin=0.0, images=pot.neighbor_images)
    nbr = fns.allocate(system.positions, system.cell)
    ctx = Context(species=system.species, cell=system.cell, neighbors=nbr)
    efs = jax.jit(energy_forces_stress(pot))
    out = {}
    for term in OFF:
        p = dict(params)
        for other, off in OFF.items():
            if other != term:
                p.update({k: jax.numpy.asarray(v) for k, v in off.items()})
        e, f, s = efs(p, system.positions, ctx)
        out[term] = (float(e), np.asarray(f), np.asarray(s))
    e, f, s = efs(params, system.positions, ctx)
    out["total"] = (float(e), np.asarray(f), np.asarray(s))
    return out


def _openmm(atoms, coulomb, tolerance, cutoff=9.0, separate_lj=True):
    system, pos, _ = oq.build_system(atoms, cutoff=cutoff, coulomb=coulomb, tolerance=tolerance,
                                     separate_lj=separate_lj)
    return oq.make_context(system, pos, "Reference"), pos


def _rel_rms(f, ref):
    return np.sqrt(np.mean((f - ref) ** 2)) / np.sqrt(np.mean(ref ** 2))


def test_qtip4pf_216_water_total_energy_forces_match_openmm_pme(water_216):
    """i-PI's 216-water box, cutoff 9 A, through the public ASE calculator:
    against OpenMM PME at the same delta (same alpha and grid, so agreement
    far below delta) and against the converged Coulomb (OpenMM Ewald at
    1e-8), where OpenMM's own PME at delta is off by 0.1-1 delta |E_coul| in
    energy and 2-4 delta in relative force RMS, hence the 10 delta bounds."""
    delta = 1e-6
    atoms = water_216.copy()
    atoms.calc = JaxpotCalculator({"kind": "qtip4pf", "coulomb": "pme", "accuracy": delta})
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    ctx, _ = _openmm(water_216, "pme", delta, separate_lj=False)
    e_pme, f_pme = oq.energy_forces(ctx, len(water_216))
    ctx, _ = _openmm(water_216, "ewald", 1e-8)
    ref = oq.components(ctx, len(water_216))
    e_scale = abs(ref["coulomb"][0])
    assert abs(e - e_pme) < 0.1 * delta * e_scale
    assert _rel_rms(f, f_pme) < 0.1 * delta
    assert abs(e - ref["total"][0]) < 10 * delta * e_scale
    assert _rel_rms(f, ref["total"][1]) < 10 * delta
    # OpenMM's two setups (LJ in NonbondedForce or in its own force) agree
    assert abs(e_pme - ref["total"][0]) < 10 * delta * e_scale


@pytest.mark.parametrize("coulomb", ["pme", "ewald"])
def test_qtip4pf_32_water_small_cutoff_terms_and_stress_match_openmm(water_32, coulomb):
    """jaxpot's own 32-water box (9.86 A, so cutoff 4.5 A < half the box for
    OpenMM's minimum image): bond, angle, O-O LJ and Coulomb separately, the
    total, and the diagonal stress against central differences of OpenMM
    energies under strain. Reference: OpenMM with Ewald at delta = 1e-8
    (converged); jaxpot at delta = 1e-6 is held to 10 delta (see above)."""
    delta, rc = 1e-6, 4.5
    ctx, pos = _openmm(water_32, "ewald", 1e-8, cutoff=rc)
    ref = oq.components(ctx, len(water_32))
    mine = _jaxpot_terms(water_32, {"kind": "qtip4pf", "coulomb": coulomb, "accuracy": delta, "cutoff": rc})
    # the unrelaxed box's net Coulomb energy nearly cancels, so take the
    # scale from liquid water instead (0.57 eV per molecule in the 216 box)
    e_scale = 0.5 * len(water_32) / 3
    for term in ("bond", "angle", "lj"):
        e, f, _ = mine[term]
        assert e == pytest.approx(ref[term][0], rel=1e-10, abs=1e-9), term
        assert np.max(np.abs(f - ref[term][1])) < 1e-7, term
    e, f, _ = mine["coulomb"]
    assert abs(e - ref["coulomb"][0]) < 10 * delta * e_scale
    assert _rel_rms(f, ref["coulomb"][1]) < 10 * delta
    e, f, s = mine["total"]
    assert abs(e - ref["total"][0]) < 10 * delta * e_scale
    assert _rel_rms(f, ref["total"][1]) < 10 * delta
    # stress: sigma_aa = (1/V) dE/d eps_aa (ASE sign); the O-O LJ is truncated
    # without a shift, so the strain (1e-7) is kept small enough that no pair
    # crosses the cutoff between the two energies
    box_nm = water_32.cell.array / 10.0
    s_ref = oq.stress(ctx, pos, box_nm, len(water_32), eps=1e-7)
    p_scale = e_scale / water_32.get_volume()
    assert np.max(np.abs(np.diag(s) - s_ref)) < 10 * delta * p_scale, (np.diag(s), s_ref)
