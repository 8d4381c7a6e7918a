"""q-TIP4P/F water in OpenMM from custom forces: an independent reference for
jaxpot's ``qtip4pf`` potential (used by ``tests/test_water_openmm.py`` and
``experiments/bench_md.py``).

Model (Habershon, Markland, Manolopoulos, JCP 131, 024501 (2009)):
  O-H bond   V = D_r [a^2 dr^2 - a^3 dr^3 + (7/12) a^4 dr^4], dr = r - r_eq
             (quartic expansion of a Morse bond), D_r = 116.09 kcal/mol,
             a = 2.287 1/A, r_eq = 0.9419 A                 -> CustomBondForce
  H-O-H      V = (1/2) k (theta - theta_eq)^2, k = 87.85 kcal/mol/rad^2,
             theta_eq = 107.4 deg                           -> HarmonicAngleForce
             (OpenMM's harmonic angle is also (1/2) k x^2)
  O-O LJ     4 eps [(s/r)^12 - (s/r)^6], eps = 0.1852 kcal/mol, s = 3.1589 A,
             truncated at the cutoff (no switch, no shift, no tail correction)
  Coulomb    q_H = +0.5564 e, q_M = -1.1128 e on a massless virtual site
             r_M = gamma r_O + (1 - gamma)/2 (r_H1 + r_H2), gamma = 0.73612
             (ThreeParticleAverageSite), q_O = 0; every intramolecular pair
             excluded; PME or Ewald for the long range.

OpenMM works in nm, kJ/mol, ps; this module takes and returns metal units
(A, eV, eV/A) and converts with ``jaxpot.units`` only. The M sites are extra
particles appended after the N atoms (particle N + k is the M site of
molecule k); OpenMM reports forces with the virtual-site force already
distributed onto O, H, H, so the first N rows are the atomic forces.

Force groups: 0 O-H bonds, 1 H-O-H angles, 2 O-O Lennard-Jones, 3 Coulomb
(real and reciprocal space). With ``separate_lj=False`` (the usual, faster
setup for benchmarks) the LJ sits in the NonbondedForce with the charges and
groups 2 and 3 are merged into group 3.
"""
from __future__ import annotations

import numpy as np

from jaxpot import units

# q-TIP4P/F in the units of the paper (kcal/mol, A, deg, e)
QTIP4PF = dict(D_r=116.09, a_r=2.287, r_eq=0.9419, k_theta=87.85, theta_eq=107.4,
               epsilon=0.1852, sigma=3.1589, q_H=0.5564, gamma=0.73612)

GROUPS = {"bond": 0, "angle": 1, "lj": 2, "coulomb": 3}

# OpenMM unit conversions from jaxpot.units: 1 kJ/mol = KJ_MOL eV, 1 nm = NM A
_KCAL_TO_KJ = units.KCAL_MOL / units.KJ_MOL          # 4.184
_EV_TO_KJ = 1.0 / units.KJ_MOL
_A_TO_NM = 1.0 / units.NM


def water_molecules(atoms) -> np.ndarray:
    """(M, 3) indices (O, H1, H2): atom order O, H, H, or else each H to its
    nearest O at the minimum image."""
    z = atoms.numbers
    n = len(z)
    if n % 3 == 0 and np.all(z[0::3] == 8) and np.all(z[1::3] == 1) and np.all(z[2::3] == 1):
        return np.arange(n).reshape(-1, 3)
    o = np.where(z == 8)[0]
    h = np.where(z == 1)[0]
    if len(h) != 2 * len(o) or len(o) + len(h) != n:
        raise ValueError("not a pure water system")
    d = atoms.positions[h][:, None] - atoms.positions[o][None]
    cell = atoms.cell.array
    f = d @ np.linalg.inv(cell)
    d = (f - np.round(f)) @ cell
    owner = np.argmin(np.linalg.norm(d, axis=-1), axis=1)
    if np.any(np.bincount(owner, minlength=len(o)) != 2):
        raise ValueError("cannot assign two H atoms to every O")
    return np.array([[o[k], *h[owner == k]] for k in range(len(o))])


def unwrapped_positions(atoms, mols) -> np.ndarray:
    """Atom positions (A) with each H moved to the periodic image nearest its
    O, so that molecules are whole (the virtual site is built from raw
    positions in OpenMM)."""
    pos = atoms.positions.copy()
    cell = atoms.cell.array
    inv = np.linalg.inv(cell)
    for k in (1, 2):
        d = pos[mols[:, k]] - pos[mols[:, 0]]
        f = d @ inv
        pos[mols[:, k]] = pos[mols[:, 0]] + (f - np.round(f)) @ cell
    return pos


def build_system(atoms, *, cutoff: float = 9.0, coulomb: str = "pme", tolerance: float = 1e-6,
                 separate_lj: bool = True, params: dict | None = None):
    """An ``openmm.System`` of q-TIP4P/F for the periodic water ``atoms``.

    cutoff A (LJ and real-space Coulomb), coulomb "pme" | "ewald",
    tolerance: OpenMM's ewaldErrorTolerance. Returns (system, positions_nm
    with the M sites appended, mols)."""
    import openmm as mm

    p = {**QTIP4PF, **(params or {})}
    mols = water_molecules(atoms)
    n = len(atoms)
    cell = atoms.cell.array
    if not np.allclose(cell, np.diag(np.diag(cell))):
        raise ValueError("this builder handles orthorhombic boxes only")
    if 2.0 * cutoff > np.min(np.diag(cell)):
        raise ValueError(f"OpenMM needs the cutoff ({cutoff} A) below half the box ({np.min(np.diag(cell))} A)")

    system = mm.System()
    a, b, c = (mm.Vec3(*(row * _A_TO_NM)) for row in cell)
    system.setDefaultPeriodicBoxVectors(a, b, c)
    for z, m in zip(atoms.numbers, atoms.get_masses()):
        system.addParticle(float(m))
    m_index = []
    for o, h1, h2 in mols:
        k = system.addParticle(0.0)
        m_index.append(k)
        w_o = p["gamma"]
        w_h = 0.5 * (1.0 - p["gamma"])
        system.setVirtualSite(k, mm.ThreeParticleAverageSite(int(o), int(h1), int(h2), w_o, w_h, w_h))

    # quartic Morse O-H bond; D in kJ/mol, a in 1/nm, r0 in nm
    bond = mm.CustomBondForce("D*(x^2 - x^3 + (7/12)*x^4); x = a*(r - r0)")
    bond.addGlobalParameter("D", p["D_r"] * _KCAL_TO_KJ)
    bond.addGlobalParameter("a", p["a_r"] * units.NM)
    bond.addGlobalParameter("r0", p["r_eq"] * _A_TO_NM)
    bond.setUsesPeriodicBoundaryConditions(True)
    angle = mm.HarmonicAngleForce()
    angle.setUsesPeriodicBoundaryConditions(True)
    k_theta = p["k_theta"] * _KCAL_TO_KJ
    theta_eq = np.deg2rad(p["theta_eq"])
    for o, h1, h2 in mols:
        bond.addBond(int(o), int(h1), [])
        bond.addBond(int(o), int(h2), [])
        angle.addAngle(int(h1), int(o), int(h2), theta_eq, k_theta)
    bond.setForceGroup(GROUPS["bond"])
    angle.setForceGroup(GROUPS["angle"])
    system.addForce(bond)
    system.addForce(angle)

    nb = mm.NonbondedForce()
    nb.setNonbondedMethod({"pme": mm.NonbondedForce.PME, "ewald": mm.NonbondedForce.Ewald}[coulomb])
    nb.setCutoffDistance(cutoff * _A_TO_NM)
    nb.setEwaldErrorTolerance(tolerance)
    nb.setUseDispersionCorrection(False)
    nb.setUseSwitchingFunction(False)
    eps_kj = p["epsilon"] * _KCAL_TO_KJ
    sig_nm = p["sigma"] * _A_TO_NM
    is_o = np.zeros(n, bool)
    is_o[mols[:, 0]] = True
    for i in range(n):
        if is_o[i]:
            nb.addParticle(0.0, sig_nm if not separate_lj else 1.0, 0.0 if separate_lj else eps_kj)
        else:
            nb.addParticle(p["q_H"], 1.0, 0.0)
    for _ in m_index:
        nb.addParticle(-2.0 * p["q_H"], 1.0, 0.0)
    for (o, h1, h2), msite in zip(mols, m_index):
        sites = [int(o), int(h1), int(h2), int(msite)]
        for x in range(4):
            for y in range(x + 1, 4):
                nb.addException(sites[x], sites[y], 0.0, 1.0, 0.0)
    nb.setForceGroup(GROUPS["coulomb"])
    nb.setReciprocalSpaceForceGroup(GROUPS["coulomb"])
    system.addForce(nb)

    if separate_lj:
        # O-O LJ alone, truncated at the cutoff like NonbondedForce does
        lj = mm.CustomNonbondedForce("4*eps*((sig/r)^12 - (sig/r)^6)")
        lj.addGlobalParameter("eps", eps_kj)
        lj.addGlobalParameter("sig", sig_nm)
        lj.setNonbondedMethod(mm.CustomNonbondedForce.CutoffPeriodic)
        lj.setCutoffDistance(cutoff * _A_TO_NM)
        lj.setUseSwitchingFunction(False)
        lj.setUseLongRangeCorrection(False)
        for _ in range(n + len(m_index)):
            lj.addParticle([])
        oxygens = [int(o) for o in mols[:, 0]]
        lj.addInteractionGroup(oxygens, oxygens)
        for (o, h1, h2), msite in zip(mols, m_index):
            sites = [int(o), int(h1), int(h2), int(msite)]
            for x in range(4):
                for y in range(x + 1, 4):
                    lj.addExclusion(sites[x], sites[y])
        lj.setForceGroup(GROUPS["lj"])
        system.addForce(lj)

    pos = unwrapped_positions(atoms, mols)
    m_pos = (p["gamma"] * pos[mols[:, 0]]
             + 0.5 * (1.0 - p["gamma"]) * (pos[mols[:, 1]] + pos[mols[:, 2]]))
    positions_nm = np.concatenate([pos, m_pos]) * _A_TO_NM
    return system, positions_nm, mols


def make_context(system, positions_nm, platform: str = "Reference", threads: int | None = None,
                 integrator=None):
    """An ``openmm.Context`` on a platform ("Reference" double precision,
    "CPU" with ``threads``)."""
    import openmm as mm

    plat = mm.Platform.getPlatformByName(platform)
    props = {}
    if platform == "CPU" and threads is not None:
        props["Threads"] = str(threads)
    if integrator is None:
        integrator = mm.VerletIntegrator(0.0005)
    ctx = mm.Context(system, integrator, plat, props)
    ctx.setPositions(positions_nm)
    ctx.computeVirtualSites()
    return ctx


def energy_forces(ctx, n_atoms: int, groups=None):
    """(energy eV, forces (n_atoms, 3) eV/A) of the given force groups
    (an iterable of group numbers; all when None)."""
    kw = {}
    if groups is not None:
        kw["groups"] = set(int(g) for g in groups)
    st = ctx.getState(getEnergy=True, getForces=True, **kw)
    e = st.getPotentialEnergy().value_in_unit_system(_md_unit_system()) * units.KJ_MOL
    f = np.asarray(st.getForces(asNumpy=True).value_in_unit_system(_md_unit_system()))
    return float(e), f[:n_atoms] * units.KJ_MOL / units.NM


def _md_unit_system():
    from openmm import unit
    return unit.md_unit_system


def components(ctx, n_atoms: int) -> dict:
    """Energies (eV) and forces (eV/A) per term: bond, angle, lj, coulomb, total."""
    out = {}
    for name, g in GROUPS.items():
        out[name] = energy_forces(ctx, n_atoms, [g])
    out["total"] = energy_forces(ctx, n_atoms)
    return out


def stress(ctx, atoms_positions_nm, box_nm, n_atoms: int, eps: float = 1e-7) -> np.ndarray:
    """Diagonal stress (eV/A^3, ASE sign, sigma = (1/V) dE/d eps) by central
    differences of the energy under a homogeneous strain of the atoms and the
    box along x, y and z (virtual sites follow their parents)."""
    import openmm as mm

    box_nm = np.asarray(box_nm, dtype=np.float64)
    vol = np.linalg.det(box_nm) * units.NM ** 3
    out = np.zeros(3)
    base = np.asarray(atoms_positions_nm, dtype=np.float64)
    for ax in range(3):
        e = []
        for s in (+eps, -eps):
            d = np.eye(3)
            d[ax, ax] += s
            pos = base.copy()
            pos[:n_atoms] = base[:n_atoms] @ d.T
            b = box_nm @ d.T
            ctx.setPeriodicBoxVectors(*(mm.Vec3(*row) for row in b))
            ctx.setPositions(pos)
            ctx.computeVirtualSites()
            e.append(energy_forces(ctx, n_atoms)[0])
        out[ax] = (e[0] - e[1]) / (2.0 * eps) / vol
    ctx.setPeriodicBoxVectors(*(mm.Vec3(*row) for row in box_nm))
    ctx.setPositions(base)
    ctx.computeVirtualSites()
    return out
