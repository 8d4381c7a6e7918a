"""q-TIP4P/F and SPC/Fw: every term against an independent numpy evaluation
of the published formulas, autodiff forces and stress against finite
differences, symmetry, molecule recognition, image conventions and NVE
energy conservation."""
import numpy as np
import pytest
from ase import Atoms

from jaxpot import units
from jaxpot.build import water_box, water_cluster
from jaxpot.interop.ase import JaxpotCalculator
from jaxpot.system import InputError

KCAL = units.KCAL_MOL


def qtip4pf_reference_cluster(pos):
    """q-TIP4P/F energy of a water cluster (O,H,H order) written directly
    from Habershon et al. JCP 131, 024501 (2009), Table I, in numpy."""
    pos = np.asarray(pos, float).reshape(-1, 3, 3)
    e = 0.0
    D, a, req = 116.09 * KCAL, 2.287, 0.9419
    kth, th0 = 87.85 * KCAL, np.deg2rad(107.4)
    eps, sig = 0.1852 * KCAL, 3.1589
    qh, gam = 0.5564, 0.73612
    sites = []
    for o, h1, h2 in pos:
        r1, r2 = h1 - o, h2 - o
        for r in (np.linalg.norm(r1), np.linalg.norm(r2)):
            x = a * (r - req)
            e += D * (x ** 2 - x ** 3 + 7 / 12 * x ** 4)
        th = np.arccos(r1 @ r2 / np.linalg.norm(r1) / np.linalg.norm(r2))
        e += 0.5 * kth * (th - th0) ** 2
        m = gam * o + (1 - gam) / 2 * (h1 + h2)
        sites.append([(m, -2 * qh), (h1, qh), (h2, qh)])
    n = len(pos)
    for i in range(n):
        for j in range(i + 1, n):
            r = np.linalg.norm(pos[i, 0] - pos[j, 0])
            if r < 9.0:
                e += 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)
            for xa, qa in sites[i]:
                for xb, qb in sites[j]:
                    e += units.KE * qa * qb / np.linalg.norm(xa - xb)
    return e


@pytest.fixture(scope="module")
def hexamer():
    a = water_box(6, density=0.9, seed=3)
    a.set_pbc(False)
    a.set_cell(np.zeros((3, 3)))
    return a


def test_cluster_energy_matches_independent_formula(hexamer):
    hexamer.calc = JaxpotCalculator({"kind": "qtip4pf"})
    assert hexamer.get_potential_energy() == pytest.approx(qtip4pf_reference_cluster(hexamer.positions), rel=1e-12)


def test_isolated_molecule_at_equilibrium_has_zero_energy():
    r, th = 0.9419, np.deg2rad(107.4)
    a = Atoms("OH2", positions=[[0, 0, 0], [r, 0, 0], [r * np.cos(th), r * np.sin(th), 0]])
    a.calc = JaxpotCalculator({"kind": "qtip4pf"})
    assert abs(a.get_potential_energy()) < 1e-12
    assert np.abs(a.get_forces()).max() < 1e-9


def _fd_forces(atoms, idx, h=1e-4):
    out = []
    for i, k in idx:
        p = atoms.positions.copy()
        p[i, k] += h
        atoms.positions = p
        ep = atoms.get_potential_energy()
        p[i, k] -= 2 * h
        atoms.positions = p
        em = atoms.get_potential_energy()
        p[i, k] += h
        atoms.positions = p
        out.append(-(ep - em) / (2 * h))
    return np.array(out)


def _cutoff_away_from_pairs(atoms, lo=3.9, hi=4.1):
    from ase.geometry import get_distances
    p = atoms.positions.reshape(-1, 3, 3)
    m = 0.73612 * p[:, 0] + 0.13194 * (p[:, 1] + p[:, 2])
    pts = np.concatenate([atoms.positions, m])
    d = get_distances(pts, cell=atoms.cell, pbc=True)[1].ravel()
    grid = np.linspace(lo, hi, 401)
    gap = np.array([np.min(np.abs(d - rc)) for rc in grid])
    assert gap.max() > 1e-3
    return float(grid[np.argmax(gap)])


@pytest.mark.parametrize("kind,coulomb", [("qtip4pf", "ewald"), ("qtip4pf", "pme"), ("spcfw", "ewald")])
def test_periodic_forces_and_stress_match_finite_differences(kind, coulomb):
    a = water_box(16, density=0.997, seed=1)
    # truncation makes the energy jump where a pair crosses the cutoff, so the
    # cutoff is put where no atom or M-site pair lies within 1e-3 A of it
    a.calc = JaxpotCalculator({"kind": kind, "coulomb": coulomb, "cutoff": _cutoff_away_from_pairs(a)})
    f = a.get_forces()
    idx = [(0, 0), (1, 1), (2, 2), (30, 0), (47, 2)]
    # central differences with h = 1e-4 A: error ~ h^2 f''' ~ 1e-7 eV/A
    np.testing.assert_allclose(_fd_forces(a, idx), [f[i, k] for i, k in idx], atol=2e-6)
    s = a.get_stress(voigt=False)
    v = a.get_volume()
    cell0, pos0 = a.cell.array.copy(), a.positions.copy()
    for (i, j) in [(0, 0), (1, 2)]:
        h = 1e-5
        es = []
        for sgn in (1, -1):
            eps = np.zeros((3, 3))
            eps[i, j] += sgn * h / 2
            eps[j, i] += sgn * h / 2
            a.set_cell(cell0 @ (np.eye(3) + eps).T, scale_atoms=False)
            a.positions = pos0 @ (np.eye(3) + eps).T
            es.append(a.get_potential_energy())
        a.set_cell(cell0, scale_atoms=False)
        a.positions = pos0
        assert (es[0] - es[1]) / (2 * h) / v == pytest.approx(s[i, j], abs=2e-7)


def test_virtual_site_forces_conserve_momentum_and_angular_momentum(hexamer):
    hexamer.calc = JaxpotCalculator({"kind": "qtip4pf"})
    f = hexamer.get_forces()
    np.testing.assert_allclose(f.sum(axis=0), 0.0, atol=1e-10)
    torque = np.cross(hexamer.positions - hexamer.positions.mean(0), f).sum(axis=0)
    np.testing.assert_allclose(torque, 0.0, atol=1e-9)


def test_energy_is_invariant_under_rotation_translation_and_molecule_permutation(hexamer):
    calc = JaxpotCalculator({"kind": "qtip4pf"})
    hexamer.calc = calc
    e0 = hexamer.get_potential_energy()
    b = hexamer.copy()
    b.rotate(37, (1, 2, 3), center="COM")
    b.translate((1.0, -2.0, 0.5))
    b.calc = JaxpotCalculator({"kind": "qtip4pf"})
    assert b.get_potential_energy() == pytest.approx(e0, abs=1e-10)
    order = np.arange(len(b)).reshape(-1, 3)[::-1].ravel()
    c = hexamer[order]
    c.calc = JaxpotCalculator({"kind": "qtip4pf"})
    assert c.get_potential_energy() == pytest.approx(e0, abs=1e-10)


def test_molecules_recognised_from_geometry_when_atoms_are_not_ordered(hexamer):
    hexamer.calc = JaxpotCalculator({"kind": "qtip4pf"})
    e0 = hexamer.get_potential_energy()
    z = hexamer.numbers
    order = np.concatenate([np.where(z == 8)[0], np.where(z == 1)[0]])   # O O O ... H H H ...
    b = hexamer[order]
    b.calc = JaxpotCalculator({"kind": "qtip4pf"})
    assert b.get_potential_energy() == pytest.approx(e0, abs=1e-10)


def test_non_water_structure_is_rejected_with_the_element_named():
    a = Atoms("OH2C", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [3, 3, 3]])
    a.calc = JaxpotCalculator({"kind": "qtip4pf"})
    with pytest.raises(InputError, match="non-water elements: C"):
        a.get_potential_energy()


def test_periodic_image_conventions_on_ipi_32_water_box(shared_data):
    from ase.io import read
    a = read(shared_data / "water_32.pdb")
    assert a.cell.lengths()[0] < 18.0    # narrower than twice the 9 A cutoff
    a.calc = JaxpotCalculator({"kind": "qtip4pf", "images": "minimum"})
    e_min = a.get_potential_energy()
    b = a.copy()
    b.calc = JaxpotCalculator({"kind": "qtip4pf", "images": "all"})
    e_all = b.get_potential_energy()
    # The conventions differ only in the pairs beyond the minimum image (the
    # Ewald reciprocal sum is the same). Sum those independently in numpy:
    # O-O LJ and real-space Ewald erfc(alpha r)/r between charge sites,
    # with the image chosen by atom positions as the neighbor list does.
    from math import erfc
    from jaxpot.electrostatics import ewald_alpha
    alpha = ewald_alpha(9.0, 1e-5)
    x = a.positions
    L = a.cell.lengths()[0]
    mol = x.reshape(-1, 3, 3)
    site = x.copy()
    site[0::3] = 0.73612 * mol[:, 0] + 0.13194 * (mol[:, 1] + mol[:, 2])
    q = np.where(a.numbers == 8, -1.1128, 0.5564)
    is_o = a.numbers == 8
    eps, sig = 0.1852 * KCAL, 3.1589
    # input positions are not wrapped, so images are offsets around the minimum image
    offsets = [np.array((i, j, k)) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
               if (i, j, k) != (0, 0, 0)]
    extra = 0.0
    for i in range(len(x)):
        for j in range(len(x)):
            s0 = -np.round((x[j] - x[i]) / L)
            for s in (s0 + o for o in offsets):
                r = np.linalg.norm(x[j] - x[i] + s * L)
                if is_o[i] and is_o[j] and r < 9.0:
                    extra += 0.5 * 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)
                rs = np.linalg.norm(site[j] - site[i] + s * L)
                if rs < 9.0:
                    extra += 0.5 * units.KE * q[i] * q[j] * erfc(alpha * rs) / rs
    assert e_all - e_min == pytest.approx(extra, rel=1e-8, abs=1e-9)


def _nve_drift(tmp_path, atoms, steps, dt=0.25, **potential):
    from ase.io import write
    from jaxpot.io import read_thermo
    from jaxpot.simulate import run_md
    write(tmp_path / "w.extxyz", atoms)
    cfg = {"system": {"file": str(tmp_path / "w.extxyz")}, "potential": {"kind": "qtip4pf", **potential},
           "md": {"ensemble": "nve", "timestep": dt, "steps": steps, "equilibration_steps": 10,
                  "temperature": 200.0, "block_steps": 1000},
           "output": {"directory": str(tmp_path / "run"), "every": 10}}
    s = run_md(cfg, progress=False)
    return s, read_thermo(tmp_path / "run" / "thermo.csv")


@pytest.mark.slow   # CI budget: NVE conservation is checked by default for Behler-Parrinello, the tripeptide and ring polymers
def test_qtip4pf_cluster_nve_conserves_energy_in_float64(tmp_path):
    """(H2O)8 in vacuum: no pair crosses the 9 A LJ cutoff and Coulomb is a
    direct sum, so the only error is the integrator's: no drift, and
    fluctuations of the conserved energy tiny against kinetic fluctuations."""
    a = water_cluster(8, seed=0)
    s, th = _nve_drift(tmp_path, a, steps=4000)
    assert abs(s["conserved_drift_eV_per_ps_per_atom"]) < 1e-6
    assert th["conserved_eV"].std() < 0.02 * th["kinetic_energy_eV"].std()


@pytest.mark.slow
def test_qtip4pf_liquid_nve_drift_below_1e_5_eV_per_ps_per_atom(tmp_path):
    """216 molecules, float64, 0.25 fs, 1 ps, LJ shifted at the 9 A cutoff.

    With the published truncation (no shift) each O-O pair crossing 9 A
    changes the energy by |V_LJ(9 A)| = 6e-5 eV; ~12 crossings per fs in this
    box make the conserved energy random-walk by ~sqrt(12500) x 6e-5 eV in
    1 ps, i.e. a fitted slope of order 1e-5 eV/ps/atom from truncation noise
    alone (3e-5 measured here). Shifting the LJ removes those jumps, so what is
    left measures the integrator and the consistency of forces with the
    energy (Ewald real-space truncation at 1e-5 accuracy remains)."""
    s, th = _nve_drift(tmp_path, water_box(216, seed=0), steps=4000, lj_shift=True)
    assert abs(s["conserved_drift_eV_per_ps_per_atom"]) < 1e-5


@pytest.mark.parametrize("periodic", [False, True])
def test_intramolecular_and_intermolecular_parts_sum_to_the_model(periodic):
    atoms = water_box(16, seed=3) if periodic else water_cluster(5, seed=3)
    extra = {"coulomb": "pme"} if periodic else {}
    full = JaxpotCalculator({"kind": "qtip4pf", **extra})
    split = JaxpotCalculator({"kind": "sum", "terms": [{"kind": "qtip4pf", "part": "intramolecular", **extra},
                                                       {"kind": "qtip4pf", "part": "intermolecular", **extra}]})
    a, b = atoms.copy(), atoms.copy()
    a.calc, b.calc = full, split
    np.testing.assert_allclose(b.get_potential_energy(), a.get_potential_energy(), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(b.get_forces(), a.get_forces(), rtol=1e-10, atol=1e-10)
    # charges come from the intermolecular part only (not counted twice)
    np.testing.assert_allclose(b.get_charges(), a.get_charges(), atol=1e-12)


def test_unknown_water_part_is_rejected():
    with pytest.raises(InputError, match="part"):
        JaxpotCalculator({"kind": "qtip4pf", "part": "bonds"}).get_potential_energy(water_cluster(2, seed=0))


@pytest.mark.slow   # CI budget
def test_calculator_reuses_compiled_setups_when_structures_alternate(monkeypatch):
    import jaxpot.interop.ase as ase_mod

    built = []
    real = ase_mod.build_potential

    def counting(spec, system):
        built.append(system.n_atoms)
        return real(spec, system)

    monkeypatch.setattr(ase_mod, "build_potential", counting)
    calc = JaxpotCalculator({"kind": "qtip4pf"})
    a = water_cluster(2, seed=1)
    b = water_cluster(3, seed=2)
    energies = []
    for x in (a, b, a, b, a):
        y = x.copy()
        y.calc = calc
        energies.append(y.get_potential_energy())
    assert built == [6, 9]              # one set-up per structure, none rebuilt
    for x, e in zip((a, b), energies[:2]):
        y = x.copy()
        y.calc = JaxpotCalculator({"kind": "qtip4pf"})
        assert y.get_potential_energy() == pytest.approx(e, rel=1e-12)
    assert energies[2] == energies[4] == energies[0] and energies[3] == energies[1]
