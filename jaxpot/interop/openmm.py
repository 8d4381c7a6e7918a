"""Read an OpenMM ``System`` into jaxpot classical parameters ("bring your
own force field").

    pot = potential_from_openmm(system)          # openmm.System, XML file or XML text
    params = pot.init(key, jaxpot_system)        # ForceFieldParams (or a tuple, see below)
    [potential] kind = "openmm", system = "system.xml"      (TOML)
    [potential] kind = "openmm", pdb = "villin.pdb", forcefield = ["amber14-all.xml", "amber14/tip3p.xml"]

OpenMM is an optional dependency, imported only inside this module's
functions. The System object itself is read (not force-field XML files):
whatever generator built it, the forces below are recognised term by term,
and anything else is an :class:`~jaxpot.system.InputError` naming the force.

Units: OpenMM works in nm, kJ/mol, ps, e; everything is converted once here
to metal units (A, eV, e; :mod:`jaxpot.units`):
lengths x 10 (``units.NM``), energies x ``units.KJ_MOL``, bond constants
kJ/mol/nm^2 -> eV/A^2 (x KJ_MOL / 100), angle constants kJ/mol/rad^2 -> eV/rad^2.

Force mapping (energy expressions as OpenMM documents them):

``HarmonicBondForce``     E = 1/2 k (r - r0)^2 -> bonds (Urey-Bradley 1-3 terms of
                          CHARMM arrive here too and are ordinary bonds)
``HarmonicAngleForce``    E = 1/2 k (theta - theta0)^2 -> angles
``PeriodicTorsionForce``  E = k (1 + cos(n phi - phi0)) -> torsions
``CMAPTorsionForce``      bicubic (phi, psi) maps -> cmap
``CustomTorsionForce``    harmonic impropers only, in the two forms OpenMM's own
                          tools write: ``c*k*(theta-theta0)^2`` (charmm36.xml;
                          theta in [-pi, pi], *not* wrapped: reproduced exactly,
                          rows with theta0 != 0 go to a small extra term) and
                          ``c*k*dtheta^2; dtheta = min(dt, 2*pi-dt); dt = abs(theta-theta0)``
                          (CharmmPsfFile; wrapped) -> impropers with k' = 2 c k
``NonbondedForce``        charges, per-particle LJ (grouped into types by (sigma,
                          epsilon), Lorentz-Berthelot), exceptions (zero charge
                          product and epsilon -> exclusions, the rest -> explicit
                          1-4 pairs), switching function, dispersion correction;
                          NoCutoff -> all pairs, CutoffNonPeriodic/CutoffPeriodic
                          -> reaction-field Coulomb (OpenMM's dielectric),
                          Ewald/PME -> the alpha, k-space box and PME grid OpenMM
                          derives from its error tolerance (NonbondedForceImpl::
                          calcEwaldParameters / calcPMEParameters, or the explicit
                          values set with setPMEParameters). LJPME is refused.
``CustomNonbondedForce``  ``acoef(type1, type2)/r^12 - bcoef(type1, type2)/r^6``
                          (OpenMM's LennardJonesForce generator: CHARMM NBFIX) ->
                          LJ types with NBFIX tables, merged with the
                          NonbondedForce when that carries no LJ and excludes the
                          same pairs (the case OpenMM's generator produces);
                          otherwise a second nonbonded term.
``CustomBondForce``       ``c*epsilon*((sigma/r)^12-(sigma/r)^6)`` (the CHARMM 1-4
                          LJ of the same generator) -> the explicit 1-4 LJ of the
                          excluded pair, or an extra bonded LJ term.
``CMMotionRemover``       centre-of-mass motion removal: recorded as
                          ``config["cm_motion_remover"]``; jaxpot's MD driver removes
                          the centre-of-mass motion of translation-invariant
                          potentials by default (``[md] remove_com``).

Refused with an InputError naming the reason: constraints (build the System
with ``constraints=None, rigidWater=False``), virtual sites, any other force
or custom expression, global parameters and parameter offsets, LJPME.

Parameters: a :class:`~jaxpot.potentials.classical.ForceFieldParams` pytree
(trainable with optax, savable, shared by all PIMD beads); when an extra
term is needed the params are the tuple ``(ForceFieldParams, extra dict)``
of :func:`jaxpot.potentials.base.sum_potentials`.

Differences from OpenMM by construction: bonded terms and exceptions use
minimum-image distances in periodic cells (OpenMM uses raw distances unless
the force uses periodic boundary conditions); they agree whenever molecules
are whole, as in every System built from a PDB file.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from .. import units
from ..potentials import classical as cl
from ..potentials.base import Potential, esum, sum_potentials
from ..system import InputError, System

NONBONDED_METHODS = ("NoCutoff", "CutoffNonPeriodic", "CutoffPeriodic", "Ewald", "PME")
CONFIG_KEYS = ("system", "pdb", "forcefield", "nonbonded_method", "cutoff", "ewald_error_tolerance",
               "switch_distance", "dispersion_correction", "check_masses", "imported")
# "imported": what the import found (terms, alpha, grid, ...): written into the
# resolved configuration for the record, accepted and recomputed on re-reading.
CONFIG_DEFAULTS = {"cutoff": 10.0, "ewald_error_tolerance": 5e-4, "check_masses": True}

_BOND_K = units.KJ_MOL / units.NM ** 2       # kJ/mol/nm^2 -> eV/A^2
_PME_ORDER = 5                               # OpenMM's PME B-spline order


def _openmm():
    try:
        import openmm
    except ImportError as err:  # pragma: no cover - OpenMM is a test dependency
        raise InputError("potential kind 'openmm' needs the optional dependency OpenMM "
                         "(pip install openmm)") from err
    return openmm


def _num(x):
    """A bare float in OpenMM's MD unit system (nm, kJ/mol, ps, e, rad)."""
    if hasattr(x, "value_in_unit_system"):
        from openmm import unit
        return float(x.value_in_unit_system(unit.md_unit_system))
    return float(x)


def load_openmm_system(source):
    """An ``openmm.System`` from a System, a path to a file written by
    ``openmm.XmlSerializer`` or the XML text itself."""
    mm = _openmm()
    if isinstance(source, mm.System):
        return source
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("<")):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"OpenMM system file not found: {source}")
        text = path.read_text()
    elif isinstance(source, str):
        text = source
    else:
        raise InputError("from_openmm needs an openmm.System, a serialized System XML file or XML text")
    try:
        system = mm.XmlSerializer.deserialize(text)
    except Exception as err:
        raise InputError(f"cannot read an OpenMM System from {str(source)[:60]!r}: {err}") from None
    if not isinstance(system, mm.System):
        raise InputError(f"the XML holds a {type(system).__name__}, not an OpenMM System")
    return system


def _norm_expr(expr: str) -> str:
    return re.sub(r"\s+", "", expr).rstrip(";")


_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


def _prefactor(match) -> float:
    c = match.group("c")
    return 1.0 if c is None else float(c[:-1])


def _per_item_names(force, kind):
    n = getattr(force, f"getNumPer{kind}Parameters")()
    return [getattr(force, f"getPer{kind}ParameterName")(i) for i in range(n)]


def _no_globals(force, what):
    if force.getNumGlobalParameters():
        names = [force.getGlobalParameterName(i) for i in range(force.getNumGlobalParameters())]
        raise InputError(f"{what} uses global parameters ({', '.join(names)}): not supported")
    if hasattr(force, "getNumEnergyParameterDerivatives") and force.getNumEnergyParameterDerivatives():
        raise InputError(f"{what} requests energy parameter derivatives: not supported")


# ---------------------------------------------------------------------------
# recognisers for the custom forms OpenMM's own force fields write
# ---------------------------------------------------------------------------

_IMPROPER_PLAIN = re.compile(rf"^(?P<c>{_NUMBER}\*)?k\*\(theta-theta0\)\^2$")
_IMPROPER_WRAPPED = re.compile(rf"^(?P<c>{_NUMBER}\*)?k\*dtheta\^2;dtheta=min\(dt,2\*pi-dt\);"
                               rf"dt=abs\(theta-theta0\);pi=(?P<pi>{_NUMBER})$")
_LJ14 = re.compile(rf"^(?P<c>{_NUMBER}\*)?epsilon\*\(\(sigma/r\)\^12-\(sigma/r\)\^6\)$")
_NBFIX = "acoef(type1,type2)/r^12-bcoef(type1,type2)/r^6"


def _read_custom_torsion(force, label):
    expr = _norm_expr(force.getEnergyFunction())
    _no_globals(force, label)
    m_plain, m_wrap = _IMPROPER_PLAIN.match(expr), _IMPROPER_WRAPPED.match(expr)
    if m_wrap and abs(float(m_wrap.group("pi")) - math.pi) > 1e-6:
        m_wrap = None
    if not (m_plain or m_wrap):
        raise InputError(f"{label}: unrecognised energy expression {force.getEnergyFunction()!r} "
                         "(only harmonic impropers are imported)")
    names = _per_item_names(force, "Torsion")
    if sorted(names) != ["k", "theta0"]:
        raise InputError(f"{label}: expected per-torsion parameters k and theta0, got {names}")
    ik, it = names.index("k"), names.index("theta0")
    c = _prefactor(m_plain or m_wrap)
    idx, k, t0 = [], [], []
    for n in range(force.getNumTorsions()):
        a, b, cc, d, p = force.getTorsionParameters(n)
        idx.append((a, b, cc, d))
        k.append(float(p[ik]) * c)
        t0.append(float(p[it]))
    # E = c k (theta - theta0)^2 = 1/2 k' dtheta^2 with k' = 2 c k (kJ/mol/rad^2 -> eV/rad^2)
    return (np.asarray(idx, np.int64).reshape(-1, 4), 2.0 * np.asarray(k) * units.KJ_MOL,
            np.asarray(t0, np.float64), bool(m_wrap))


def _read_lj14(force, label):
    expr = _norm_expr(force.getEnergyFunction())
    _no_globals(force, label)
    m = _LJ14.match(expr)
    if not m:
        raise InputError(f"{label}: unrecognised energy expression {force.getEnergyFunction()!r} "
                         "(only the 1-4 Lennard-Jones form c*epsilon*((sigma/r)^12-(sigma/r)^6) is imported)")
    names = _per_item_names(force, "Bond")
    if sorted(names) != ["epsilon", "sigma"]:
        raise InputError(f"{label}: expected per-bond parameters sigma and epsilon, got {names}")
    isg, ie = names.index("sigma"), names.index("epsilon")
    scale = _prefactor(m) / 4.0          # c eps (...) = 4 (c/4 eps) (...)
    pairs, sig, eps = [], [], []
    for n in range(force.getNumBonds()):
        a, b, p = force.getBondParameters(n)
        pairs.append((a, b))
        sig.append(float(p[isg]) * units.NM)
        eps.append(float(p[ie]) * scale * units.KJ_MOL)
    return np.asarray(pairs, np.int64).reshape(-1, 2), np.asarray(sig), np.asarray(eps)


def _read_nbfix_force(force, label):
    mm = _openmm()
    if _norm_expr(force.getEnergyFunction()) != _NBFIX:
        raise InputError(f"{label}: unrecognised energy expression {force.getEnergyFunction()!r} "
                         "(only the acoef/bcoef Lennard-Jones table of OpenMM's LennardJonesForce is imported)")
    _no_globals(force, label)
    if force.getNumInteractionGroups():
        raise InputError(f"{label}: interaction groups are not supported")
    if hasattr(force, "getNumComputedValues") and force.getNumComputedValues():
        raise InputError(f"{label}: computed values are not supported")
    if _per_item_names(force, "Particle") != ["type"]:
        raise InputError(f"{label}: expected one per-particle parameter 'type'")
    funcs = {force.getTabulatedFunctionName(i): force.getTabulatedFunction(i)
             for i in range(force.getNumTabulatedFunctions())}
    if sorted(funcs) != ["acoef", "bcoef"]:
        raise InputError(f"{label}: expected tabulated functions acoef and bcoef, got {sorted(funcs)}")
    tables = {}
    for name, f in funcs.items():
        if not isinstance(f, mm.Discrete2DFunction):
            raise InputError(f"{label}: {name} must be a Discrete2DFunction")
        nx, ny, values = f.getFunctionParameters()
        if nx != ny:
            raise InputError(f"{label}: {name} table is not square ({nx} x {ny})")
        # OpenMM's flat index is x + nx*y; the table is symmetric for LJ
        tables[name] = np.asarray(values, np.float64).reshape(ny, nx).T
    nt = tables["acoef"].shape[0]
    types = np.asarray([int(round(force.getParticleParameters(i)[0])) for i in range(force.getNumParticles())])
    if np.any(types < 0) or np.any(types >= nt):
        raise InputError(f"{label}: particle types outside the {nt} x {nt} tables")
    # A kJ/mol nm^12 -> eV A^12, B kJ/mol nm^6 -> eV A^6
    a = tables["acoef"] * units.KJ_MOL * units.NM ** 12
    b = tables["bcoef"] * units.KJ_MOL * units.NM ** 6
    if not (np.allclose(a, a.T, rtol=1e-12, atol=0) and np.allclose(b, b.T, rtol=1e-12, atol=0)):
        raise InputError(f"{label}: acoef/bcoef tables are not symmetric")
    sigma, eps = cl.nbfix_from_ab(a, b)
    excl = np.asarray([force.getExclusionParticles(i) for i in range(force.getNumExclusions())],
                      np.int64).reshape(-1, 2)
    method = {mm.CustomNonbondedForce.NoCutoff: "NoCutoff",
              mm.CustomNonbondedForce.CutoffNonPeriodic: "CutoffNonPeriodic",
              mm.CustomNonbondedForce.CutoffPeriodic: "CutoffPeriodic"}[force.getNonbondedMethod()]
    return dict(types=types, sigma=sigma, eps=eps, exclusions=excl, method=method,
                cutoff=_num(force.getCutoffDistance()) * units.NM,
                switch=(_num(force.getSwitchingDistance()) * units.NM if force.getUseSwitchingFunction() else None),
                long_range=bool(force.getUseLongRangeCorrection()))


def _lj_type_tables(sigma, eps):
    """Per-type sigma/eps (the diagonal) and the NBFIX mask where a table entry
    differs from the Lorentz-Berthelot combination of the diagonal."""
    s_d, e_d = np.diag(sigma).copy(), np.diag(eps).copy()
    s_lb = 0.5 * (s_d[:, None] + s_d[None, :])
    e_lb = np.sqrt(e_d[:, None] * e_d[None, :])
    same = np.isclose(e_lb, eps, rtol=1e-9, atol=1e-300) & (np.isclose(s_lb, sigma, rtol=1e-9) | (eps == 0))
    return s_d, e_d, ~same


# ---------------------------------------------------------------------------
# NonbondedForce
# ---------------------------------------------------------------------------

def _read_nonbonded(force, label, system):
    mm = _openmm()
    method_id = force.getNonbondedMethod()
    names = {mm.NonbondedForce.NoCutoff: "NoCutoff", mm.NonbondedForce.CutoffNonPeriodic: "CutoffNonPeriodic",
             mm.NonbondedForce.CutoffPeriodic: "CutoffPeriodic", mm.NonbondedForce.Ewald: "Ewald",
             mm.NonbondedForce.PME: "PME", mm.NonbondedForce.LJPME: "LJPME"}
    method = names.get(method_id, str(method_id))
    if method not in NONBONDED_METHODS:
        raise InputError(f"{label}: nonbonded method {method} is not supported (use one of {', '.join(NONBONDED_METHODS)})")
    if force.getNumGlobalParameters() or force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        raise InputError(f"{label}: global parameters and parameter offsets are not supported")
    n = force.getNumParticles()
    q, sig, eps = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        qi, si, ei = force.getParticleParameters(i)
        q[i], sig[i], eps[i] = _num(qi), _num(si), _num(ei)
    exc = []
    for k in range(force.getNumExceptions()):
        a, b, qq, s, e = force.getExceptionParameters(k)
        exc.append((a, b, _num(qq), _num(s), _num(e)))
    cutoff = _num(force.getCutoffDistance()) * units.NM
    out = dict(method=method, charges=q, sigma=sig * units.NM, eps=eps * units.KJ_MOL,
               exceptions=exc, cutoff=cutoff,
               switch=(_num(force.getSwitchingDistance()) * units.NM if force.getUseSwitchingFunction()
                       and method != "NoCutoff" else None),
               dispersion=bool(force.getUseDispersionCorrection()) and method in ("CutoffPeriodic", "Ewald", "PME"),
               dielectric=float(force.getReactionFieldDielectric()),
               tolerance=float(force.getEwaldErrorTolerance()))
    if method in ("Ewald", "PME"):
        box = np.asarray([[_num(x) for x in v] for v in system.getDefaultPeriodicBoxVectors()])   # nm
        tol = out["tolerance"]
        rc_nm = cutoff / units.NM
        alpha_nm = math.sqrt(-math.log(2.0 * tol)) / rc_nm
        if method == "Ewald":
            # calcEwaldParameters: smallest k with the error estimate below tol, made odd;
            # OpenMM's reciprocal sum then runs over |m_a| <= kmax_a - 1 (a box, no sphere)
            kmax = []
            for w in np.diag(box):
                def err(k, w=w):
                    t = k * math.pi / (w * alpha_nm)
                    return tol - 0.05 * math.sqrt(w * alpha_nm) * k * math.exp(-t * t)
                k = 10
                if err(k) > 0:
                    while err(k) > 0 and k > 0:
                        k -= 1
                    k += 1
                else:
                    while err(k) < 0:
                        k += 1
                kmax.append(k + 1 if k % 2 == 0 else k)
            out["ewald"] = dict(alpha=alpha_nm / units.NM, kmax=[k - 1 for k in kmax])
        else:
            a0, nx, ny, nz = force.getPMEParameters()
            a0 = _num(a0)
            if a0 != 0.0:
                grid, alpha_nm = [nx, ny, nz], a0
            else:
                # calcPMEParameters; the CPU and Reference platforms use these sizes
                # as they are (no rounding to FFT-friendly sizes; checked with
                # getPMEParametersInContext in the tests)
                grid = [max(int(math.ceil(2 * alpha_nm * w / (3 * tol ** 0.2))), 6) for w in np.diag(box)]
            out["pme"] = dict(alpha=alpha_nm / units.NM, grid=[int(g) for g in grid])
    return out


# ---------------------------------------------------------------------------
# extra terms that ForceFieldParams has no slot for
# ---------------------------------------------------------------------------

def _extra_potential(lj_pairs, lj_sigma, lj_eps, imp_idx, imp_k, imp_t0, cell, dtype):
    """Bonded LJ pairs (CustomBondForce) that are not excluded nonbonded
    pairs, and unwrapped harmonic impropers E = 1/2 k (theta - theta0)^2 with
    theta in (-pi, pi] (charmm36.xml's expression). Params: a dict (eV, A, rad)."""
    periodic = cell is not None
    lj_pairs = np.asarray(lj_pairs, np.int32).reshape(-1, 2)
    imp_idx = np.asarray(imp_idx, np.int32).reshape(-1, 4)
    params = {}
    if len(lj_pairs):
        params.update(lj14_sigma=jnp.asarray(lj_sigma, dtype), lj14_epsilon=jnp.asarray(lj_eps, dtype))
    if len(imp_idx):
        params.update(improper_k=jnp.asarray(imp_k, dtype), improper_theta0=jnp.asarray(imp_t0, dtype))

    def energy(p, positions, context):
        c = context.cell.astype(positions.dtype)
        inv = jnp.linalg.inv(c) if periodic else None
        e = jnp.zeros((), jnp.float64)
        if len(lj_pairs):
            r = cl.bond_lengths(positions, lj_pairs, c, periodic, inv)
            e += esum(cl.lj_energy(r, p["lj14_sigma"].astype(positions.dtype), p["lj14_epsilon"].astype(positions.dtype)))
        if len(imp_idx):
            phi = cl.dihedral_values(positions, imp_idx, c, periodic, inv)
            d = phi - p["improper_theta0"].astype(positions.dtype)
            e += esum(0.5 * p["improper_k"].astype(positions.dtype) * d * d)
        return e

    def init(key, system):
        return params

    return Potential(energy=energy, init=init, cutoff=0.0, name="openmm_extra",
                     config={"kind": "openmm_extra"})


# ---------------------------------------------------------------------------
# the importer
# ---------------------------------------------------------------------------

def _pair_key(a, b):
    return (a, b) if a < b else (b, a)


def potential_from_openmm(source, *, dtype=jnp.float64, name: str = "openmm",
                          config: dict | None = None) -> Potential:
    """A :class:`Potential` (energies eV, positions A) reproducing an OpenMM
    System's potential energy; see the module docstring for the mapping.

    source: ``openmm.System``, a serialized System (XML path or text).
    dtype: dtype of the parameter pytree returned by ``init`` (the energy
    runs in the positions' dtype). The periodic cell used to set up
    Ewald/PME is the System's default box (nm -> A); the energy takes the
    context's cell at every call. ``Potential.config`` records the resolved
    settings (method, cutoffs, alpha, grid, counts of every term)."""
    mm = _openmm()
    system = load_openmm_system(source)
    n = system.getNumParticles()
    if n == 0:
        raise InputError("the OpenMM System has no particles")
    if system.getNumConstraints():
        raise InputError(f"the OpenMM System has {system.getNumConstraints()} constraints; jaxpot integrates "
                         "all degrees of freedom: build it with constraints=None, rigidWater=False")
    for i in range(n):
        if system.isVirtualSite(i):
            vs = system.getVirtualSite(i)
            raise InputError(f"particle {i} is a virtual site ({type(vs).__name__}), which the OpenMM import "
                             "does not handle")
    masses = openmm_masses(system)
    if np.any(masses <= 0):
        raise InputError("the OpenMM System has massless particles, which jaxpot cannot integrate")
    periodic = system.usesPeriodicBoundaryConditions()
    box = np.asarray([[_num(x) for x in v] for v in system.getDefaultPeriodicBoxVectors()]) * units.NM

    bonds, bond_k, bond_r0 = [], [], []
    angles, angle_k, angle_t0 = [], [], []
    tors, tor_n, tor_k, tor_ph = [], [], [], []
    imps, imp_k, imp_t0 = [], [], []
    x_imps, x_imp_k, x_imp_t0 = [], [], []
    cmaps, cmap_map, grids = [], [], []
    lj14 = []
    nb = cnb = None
    cm_remover = 0
    summary = {}
    for fi, force in enumerate(system.getForces()):
        kind = type(force).__name__
        label = f"force {fi} ({kind} {force.getName()!r})"
        summary[kind] = summary.get(kind, 0) + 1
        if isinstance(force, mm.HarmonicBondForce):
            for k in range(force.getNumBonds()):
                a, b, r0, kk = force.getBondParameters(k)
                bonds.append((a, b))
                bond_r0.append(_num(r0) * units.NM)
                bond_k.append(_num(kk) * _BOND_K)
        elif isinstance(force, mm.HarmonicAngleForce):
            for k in range(force.getNumAngles()):
                a, b, c, t0, kk = force.getAngleParameters(k)
                angles.append((a, b, c))
                angle_t0.append(_num(t0))
                angle_k.append(_num(kk) * units.KJ_MOL)
        elif isinstance(force, mm.PeriodicTorsionForce):
            for k in range(force.getNumTorsions()):
                a, b, c, d, per, ph, kk = force.getTorsionParameters(k)
                tors.append((a, b, c, d))
                tor_n.append(int(per))
                tor_ph.append(_num(ph))
                tor_k.append(_num(kk) * units.KJ_MOL)
        elif isinstance(force, mm.CMAPTorsionForce):
            offset = len(grids)
            for m in range(force.getNumMaps()):
                size, energy = force.getMapParameters(m)
                e = np.asarray([_num(x) for x in energy]) if not isinstance(energy, np.ndarray) else energy
                grids.append(cl.cmap_grid_from_openmm(int(size), np.asarray(e, np.float64)) * units.KJ_MOL)
            for k in range(force.getNumTorsions()):
                m, *atoms = force.getTorsionParameters(k)
                cmaps.append(tuple(atoms))
                cmap_map.append(offset + int(m))
        elif isinstance(force, mm.CustomTorsionForce):
            idx, k, t0, wrapped = _read_custom_torsion(force, label)
            # unwrapped with theta0 = 0 is the same function (|theta| <= pi)
            plain_ok = wrapped | (t0 == 0.0)
            imps += [tuple(r) for r in idx[plain_ok]]
            imp_k += list(k[plain_ok])
            imp_t0 += list(t0[plain_ok])
            x_imps += [tuple(r) for r in idx[~plain_ok]]
            x_imp_k += list(k[~plain_ok])
            x_imp_t0 += list(t0[~plain_ok])
        elif isinstance(force, mm.CustomBondForce):
            if force.usesPeriodicBoundaryConditions() and not periodic:
                raise InputError(f"{label} uses periodic boundary conditions in a non-periodic System")
            lj14.append(_read_lj14(force, label))
        elif isinstance(force, mm.NonbondedForce):
            if nb is not None:
                raise InputError(f"{label}: a second NonbondedForce is not supported")
            nb = _read_nonbonded(force, label, system)
            nb["label"] = label
        elif isinstance(force, mm.CustomNonbondedForce):
            if cnb is not None:
                raise InputError(f"{label}: a second CustomNonbondedForce is not supported")
            cnb = _read_nbfix_force(force, label)
            cnb["label"] = label
        elif isinstance(force, mm.CMMotionRemover):
            cm_remover = int(force.getFrequency())
        else:
            raise InputError(f"{label} is not supported by the OpenMM import (it would be dropped)")

    cell = box if periodic else None
    for what, arr in (("NonbondedForce", nb), ("CustomNonbondedForce", cnb)):
        if arr is not None and arr["method"] in ("CutoffPeriodic", "Ewald", "PME") and not periodic:
            raise InputError(f"{arr['label']}: a periodic method in a System without periodic boundaries")

    # --- nonbonded: NonbondedForce (charges, LJ, exceptions) possibly merged with the NBFIX table
    extras_lj = []       # (pairs, sigma, eps) not representable as 1-4 parameters
    lj14_pairs = np.zeros((0, 2), np.int64)
    lj14_sig = np.zeros(0)
    lj14_eps = np.zeros(0)
    if lj14:
        lj14_pairs = np.concatenate([p for p, _, _ in lj14])
        lj14_sig = np.concatenate([s for _, s, _ in lj14])
        lj14_eps = np.concatenate([e for _, _, e in lj14])
        if len({_pair_key(a, b) for a, b in lj14_pairs.tolist()}) != len(lj14_pairs):
            raise InputError("CustomBondForce 1-4 Lennard-Jones lists a pair twice")

    terms = []
    resolved = {"atoms": n, "periodic": bool(periodic),
                "forces": {k: v for k, v in sorted(summary.items())},
                "cm_motion_remover": cm_remover > 0}

    def has_lj(x):
        return x is not None and (np.any(x["eps"] > 0) or any(e != 0 for *_, e in x.get("exceptions", [])))

    merge = cnb is not None and (nb is None or (not has_lj(nb) and _compatible(nb, cnb)))
    lj_from = None
    if nb is not None:
        lj_from = "nonbonded" if has_lj(nb) else None
    if merge:
        lj_from = "custom"

    # exceptions -> exclusions and explicit 1-4 pairs
    excl, p14, p14_qq, p14_s, p14_e = [], [], [], [], []
    index14 = {}
    if nb is not None:
        for a, b, qq, s, e in nb["exceptions"]:
            key = _pair_key(a, b)
            if qq == 0.0 and e == 0.0:
                excl.append(key)
            else:
                index14[key] = len(p14)
                p14.append(key)
                p14_qq.append(qq)
                p14_s.append(s * units.NM)
                p14_e.append(e * units.KJ_MOL)
    elif merge:
        excl = [_pair_key(a, b) for a, b in cnb["exclusions"].tolist()]
    excluded = set(excl)
    # CustomBondForce LJ pairs: on an excluded pair (without own LJ) they become its explicit 1-4 LJ
    for (a, b), s, e in zip(lj14_pairs.tolist(), lj14_sig, lj14_eps):
        key = _pair_key(a, b)
        if (nb is not None or merge) and key in index14 and p14_e[index14[key]] == 0.0:
            k = index14[key]
            p14_s[k], p14_e[k] = s, e
        elif (nb is not None or merge) and key in excluded:
            excluded.discard(key)
            index14[key] = len(p14)
            p14.append(key)
            p14_qq.append(0.0)
            p14_s.append(s)
            p14_e.append(e)
        else:
            extras_lj.append((key, s, e))
    excl = [key for key in excl if key in excluded]

    # LJ types
    atom_types = None
    lj = {}
    nbfix = None
    if lj_from == "nonbonded":
        pairs_se = list(zip(nb["sigma"].tolist(), nb["eps"].tolist()))
        uniq = {}
        atom_types = np.asarray([uniq.setdefault(p, len(uniq)) for p in pairs_se], np.int32)
        ts = np.asarray(list(uniq.keys()))
        lj = dict(lj_sigma=ts[:, 0], lj_epsilon=ts[:, 1])
    elif lj_from == "custom":
        atom_types = cnb["types"].astype(np.int32)
        s_d, e_d, nbfix = _lj_type_tables(cnb["sigma"], cnb["eps"])
        lj = dict(lj_sigma=s_d, lj_epsilon=e_d)
        if nbfix.any():
            lj.update(nbfix_sigma=np.where(nbfix, cnb["sigma"], 1.0), nbfix_epsilon=np.where(nbfix, cnb["eps"], 0.0))

    if p14:
        q14 = dict(pair14_chargeprod=np.asarray(p14_qq), pair14_sigma=np.asarray(p14_s),
                   pair14_epsilon=np.asarray(p14_e))
    else:
        q14 = {}
    topo = cl.make_topology(
        n, atom_types=atom_types, n_types=None if atom_types is None else
        (len(lj["lj_sigma"]) if lj else None),
        bonds=bonds, angles=angles, torsions=tors, torsion_periodicity=tor_n, impropers=imps,
        cmap=cmaps, cmap_map=cmap_map, exclusions=excl, pairs14=p14, nbfix=nbfix)
    charges = None
    copts = {}
    if nb is not None and (np.any(nb["charges"] != 0) or any(qq != 0 for qq in p14_qq)):
        charges = nb["charges"]
    fields = dict(bond_k=bond_k, bond_r0=bond_r0, angle_k=angle_k, angle_theta0=angle_t0,
                  torsion_k=tor_k, torsion_phase=tor_ph, improper_k=imp_k, improper_phi0=imp_t0,
                  cmap_grids=tuple(grids) if grids else None, charges=charges, **lj, **q14)
    fields = {k: (None if v is None or (not isinstance(v, tuple) and len(v) == 0) else v) for k, v in fields.items()}
    params = cl.make_params(topo, dtype=dtype, **fields)

    nb_settings = nb if nb is not None else (cnb if merge else None)
    kw = dict(coulomb=None, cell=cell)
    if nb_settings is not None:
        method = nb_settings["method"]
        nb_cell = cell if method in ("CutoffPeriodic", "Ewald", "PME") else None
        kw["cell"] = nb_cell if (nb_cell is not None or not periodic) else cell
        if method == "NoCutoff":
            if periodic:
                # OpenMM ignores the box for NoCutoff; so does jaxpot's all-pairs sum
                kw["cell"] = None
            if charges is not None:
                kw["coulomb"] = "direct"
            elif lj:
                kw["coulomb"] = None
        else:
            kw["cutoff"] = nb_settings["cutoff"]
            if charges is not None:
                kw["coulomb"] = {"CutoffNonPeriodic": "cutoff", "CutoffPeriodic": "cutoff",
                                 "Ewald": "ewald", "PME": "pme"}[method]
            if method == "CutoffNonPeriodic" and periodic:
                kw["cell"] = None
        if kw["coulomb"] == "cutoff":
            copts = {"cutoff_scheme": "reaction_field", "dielectric": nb["dielectric"]}
        elif kw["coulomb"] == "ewald":
            copts = {"alpha": nb["ewald"]["alpha"], "kmax": nb["ewald"]["kmax"]}
            kw["accuracy"] = nb["tolerance"]
        elif kw["coulomb"] == "pme":
            copts = {"alpha": nb["pme"]["alpha"], "grid": nb["pme"]["grid"], "order": _PME_ORDER}
            kw["accuracy"] = nb["tolerance"]
        lj_src = cnb if lj_from == "custom" else nb
        if lj and method != "NoCutoff":
            if lj_src["switch"] is not None:
                kw["switch_distance"] = lj_src["switch"]
            disp = lj_src["dispersion"] if lj_from == "nonbonded" else lj_src["long_range"]
            kw["dispersion_correction"] = bool(disp) and method in ("CutoffPeriodic", "Ewald", "PME")
        resolved.update(nonbonded_method=method)
        if method != "NoCutoff":
            resolved["cutoff"] = nb_settings["cutoff"]
        if kw["coulomb"] == "cutoff":
            resolved["reaction_field_dielectric"] = nb["dielectric"]
        if kw["coulomb"] in ("ewald", "pme"):
            resolved["ewald_error_tolerance"] = nb["tolerance"]
            resolved["ewald_alpha"] = copts["alpha"]
            if kw["coulomb"] == "pme":
                resolved["pme_grid"] = list(copts["grid"])
            else:
                resolved["ewald_kmax"] = list(copts["kmax"])
        if "switch_distance" in kw:
            resolved["switch_distance"] = kw["switch_distance"]
        resolved["dispersion_correction"] = bool(kw.get("dispersion_correction", False))
    elif periodic:
        kw["cell"] = cell
    if copts:
        kw["coulomb_options"] = copts
    main = cl.classical_potential(topo, params, name=name, config={"kind": "classical"}, **kw)
    terms.append(main)

    if cnb is not None and not merge:
        terms.append(_separate_nbfix(cnb, cell if cnb["method"] == "CutoffPeriodic" else None, dtype))
        resolved["custom_nonbonded"] = "separate term"
    elif cnb is not None:
        resolved["custom_nonbonded"] = "merged (NBFIX types)"
    if extras_lj or x_imps:
        lp = [k for k, _, _ in extras_lj]
        terms.append(_extra_potential(lp, [s for _, s, _ in extras_lj], [e for _, _, e in extras_lj],
                                      x_imps, x_imp_k, x_imp_t0, cell, dtype))
    resolved["terms"] = {"bonds": len(bonds), "angles": len(angles), "torsions": len(tors),
                         "impropers": len(imps) + len(x_imps), "cmap": len(cmaps),
                         "exclusions": len(excl), "pairs14": len(p14), "lj_types": int(topo.n_types),
                         "nbfix_pairs": int(np.triu(topo.nbfix).sum()), "extra_lj_pairs": len(extras_lj)}
    resolved = {**(config or {"kind": "openmm"}), "imported": resolved}

    if len(terms) == 1:
        pot = main
        base_init = main.init
    else:
        pot = sum_potentials(terms, name=name)
        base_init = pot.init

    def init(key, jsystem):
        if int(jsystem.positions.shape[0]) != n:
            raise InputError(f"the OpenMM System has {n} particles but the structure has {jsystem.positions.shape[0]} atoms")
        return base_init(key, jsystem)

    from dataclasses import replace
    return replace(pot, init=init, name=name, config=resolved)


def _compatible(nb, cnb) -> bool:
    """The NBFIX table can share the NonbondedForce's pair loop: same cutoff
    and periodicity and the same excluded pairs."""
    periodic_nb = nb["method"] in ("CutoffPeriodic", "Ewald", "PME")
    periodic_cnb = cnb["method"] == "CutoffPeriodic"
    if periodic_nb != periodic_cnb or ((nb["method"] == "NoCutoff") != (cnb["method"] == "NoCutoff")):
        return False
    if nb["method"] != "NoCutoff" and abs(nb["cutoff"] - cnb["cutoff"]) > 1e-9:
        return False
    a = {_pair_key(x, y) for x, y, *_ in nb["exceptions"]}
    b = {_pair_key(x, y) for x, y in cnb["exclusions"].tolist()}
    return a == b


def _separate_nbfix(cnb, cell, dtype):
    n = len(cnb["types"])
    s_d, e_d, nbfix = _lj_type_tables(cnb["sigma"], cnb["eps"])
    topo = cl.make_topology(n, atom_types=cnb["types"], n_types=len(s_d), exclusions=cnb["exclusions"],
                            nbfix=nbfix)
    kw = dict(lj_sigma=s_d, lj_epsilon=e_d)
    if nbfix.any():
        kw.update(nbfix_sigma=np.where(nbfix, cnb["sigma"], 1.0), nbfix_epsilon=np.where(nbfix, cnb["eps"], 0.0))
    params = cl.make_params(topo, dtype=dtype, **kw)
    if cnb["method"] == "NoCutoff":
        return cl.classical_potential(topo, params, coulomb=None, cell=None, name="openmm_custom_lj")
    return cl.classical_potential(topo, params, coulomb=None, cutoff=cnb["cutoff"], cell=cell,
                                  switch_distance=cnb["switch"],
                                  dispersion_correction=cnb["long_range"] and cell is not None,
                                  name="openmm_custom_lj")


def openmm_masses(system) -> np.ndarray:
    """Particle masses (amu) of an OpenMM System."""
    return np.asarray([_num(system.getParticleMass(i)) for i in range(system.getNumParticles())])


def build_openmm_system(pdb, forcefield, *, nonbonded_method: str = "PME", cutoff: float = 10.0,
                        ewald_error_tolerance: float = 5e-4, switch_distance=None,
                        dispersion_correction=None):
    """An ``openmm.System`` built on the fly from a PDB file and force-field
    XML files (OpenMM's bundled names such as "amber14-all.xml" or paths):
    ``ForceField.createSystem`` with flexible water and no constraints
    (``rigidWater=False, constraints=None``), ``nonbonded_method`` (one of
    NONBONDED_METHODS), ``cutoff`` and ``switch_distance`` in A (converted
    to nm for OpenMM), the Ewald error tolerance, and the dispersion
    correction (None: the force field's default). Returns (System, PDBFile)."""
    _openmm()
    from openmm import app, unit

    path = Path(pdb)
    if not path.is_file():
        raise InputError(f"PDB file not found: {pdb}")
    if isinstance(forcefield, str):
        forcefield = [forcefield]
    if not isinstance(forcefield, (list, tuple)) or not forcefield or not all(isinstance(f, str) for f in forcefield):
        raise InputError("forcefield must be a list of force-field XML file names")
    if nonbonded_method not in NONBONDED_METHODS:
        raise InputError(f"unknown nonbonded_method {nonbonded_method!r} (use one of: {', '.join(NONBONDED_METHODS)})")
    try:
        pdbfile = app.PDBFile(str(path))
    except Exception as err:
        raise InputError(f"cannot read PDB file {pdb}: {err}") from None
    try:
        ff = app.ForceField(*forcefield)
    except Exception as err:
        raise InputError(f"cannot load force field {forcefield}: {err}") from None
    kw = dict(nonbondedMethod=getattr(app, nonbonded_method), constraints=None, rigidWater=False,
              ewaldErrorTolerance=float(ewald_error_tolerance))
    if nonbonded_method != "NoCutoff":
        kw["nonbondedCutoff"] = float(cutoff) / units.NM * unit.nanometer
    if switch_distance is not None:
        kw["switchDistance"] = float(switch_distance) / units.NM * unit.nanometer
    if dispersion_correction is not None:
        kw["useDispersionCorrection"] = bool(dispersion_correction)
    try:
        system = ff.createSystem(pdbfile.topology, **kw)
    except Exception as err:
        raise InputError(f"OpenMM createSystem failed for {pdb} with {forcefield}: {err}") from None
    return system, pdbfile


def openmm_from_config(config: dict, system: System) -> Potential:
    """Potential kind "openmm": an OpenMM System's force field in jaxpot.

    Keys: either ``system`` (path of a System serialized by
    ``openmm.XmlSerializer``) or ``pdb`` + ``forcefield`` (list of OpenMM
    force-field XML files) with ``nonbonded_method`` (NoCutoff |
    CutoffNonPeriodic | CutoffPeriodic | Ewald | PME; default PME for a
    periodic structure, else NoCutoff), ``cutoff`` (A, default 10),
    ``ewald_error_tolerance`` (5e-4), ``switch_distance`` (A, optional),
    ``dispersion_correction`` (default: the force field's). ``check_masses``
    (default true): the structure's masses (amu) must match the System's
    within 0.01 amu, because the MD driver integrates with the structure's
    masses. The resolved config records the mapping (see
    :func:`potential_from_openmm`)."""
    config = dict(config)
    config.pop("kind", None)
    unknown = set(config) - set(CONFIG_KEYS)
    if unknown:
        raise InputError(f"unknown key(s) for potential kind 'openmm': {', '.join(sorted(unknown))}")
    has_xml, has_pdb = "system" in config, ("pdb" in config or "forcefield" in config)
    if has_xml == has_pdb:
        raise InputError("potential kind 'openmm' needs either system = 'system.xml' or pdb + forcefield")
    resolved = {"kind": "openmm"}
    if has_xml:
        extra = set(config) - {"system", "check_masses", "imported"}
        if extra:
            raise InputError(f"potential kind 'openmm' with system = ... takes no {', '.join(sorted(extra))} "
                             "(the serialized System already fixes them)")
        omm = load_openmm_system(str(config["system"]))
        resolved["system"] = str(config["system"])
    else:
        for k in ("pdb", "forcefield"):
            if k not in config:
                raise InputError(f"potential kind 'openmm' with pdb needs {k!r} as well")
        method = config.get("nonbonded_method", "PME" if system.periodic else "NoCutoff")
        cutoff = config.get("cutoff", CONFIG_DEFAULTS["cutoff"])
        tol = config.get("ewald_error_tolerance", CONFIG_DEFAULTS["ewald_error_tolerance"])
        for k, v in (("cutoff", cutoff), ("ewald_error_tolerance", tol)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise InputError(f"openmm {k} must be a positive number, got {v!r}")
        sw = config.get("switch_distance")
        if sw is not None and (isinstance(sw, bool) or not isinstance(sw, (int, float)) or not 0 <= sw < cutoff):
            raise InputError(f"openmm switch_distance must be a number in [0, cutoff), got {sw!r}")
        disp = config.get("dispersion_correction")
        if disp is not None and not isinstance(disp, bool):
            raise InputError(f"openmm dispersion_correction must be true or false, got {disp!r}")
        omm, pdbfile = build_openmm_system(config["pdb"], config["forcefield"], nonbonded_method=method,
                                           cutoff=float(cutoff), ewald_error_tolerance=float(tol),
                                           switch_distance=sw, dispersion_correction=disp)
        z = [a.element.atomic_number if a.element is not None else 0 for a in pdbfile.topology.atoms()]
        if len(z) == system.n_atoms and not np.array_equal(np.asarray(z), np.asarray(system.species)):
            i = int(np.nonzero(np.asarray(z) != np.asarray(system.species))[0][0])
            raise InputError(f"atom {i} is element {int(system.species[i])} in the structure but "
                             f"{z[i]} in {config['pdb']}: the structure must list the PDB's atoms in order")
        ff = config["forcefield"]
        resolved.update(pdb=str(config["pdb"]), forcefield=[ff] if isinstance(ff, str) else list(ff),
                        nonbonded_method=method, cutoff=float(cutoff), ewald_error_tolerance=float(tol))
        if sw is not None:
            resolved["switch_distance"] = float(sw)
        if disp is not None:
            resolved["dispersion_correction"] = disp
    check = config.get("check_masses", CONFIG_DEFAULTS["check_masses"])
    if not isinstance(check, bool):
        raise InputError(f"openmm check_masses must be true or false, got {check!r}")
    resolved["check_masses"] = check
    if omm.getNumParticles() != system.n_atoms:
        raise InputError(f"the OpenMM System has {omm.getNumParticles()} particles but the structure "
                         f"has {system.n_atoms} atoms")
    if check:
        m = openmm_masses(omm)
        diff = np.abs(m - np.asarray(system.masses, np.float64))
        if diff.max() > 1e-2:
            i = int(np.argmax(diff))
            raise InputError(f"atom {i} has mass {float(system.masses[i]):.4f} amu in the structure but "
                             f"{m[i]:.4f} amu in the OpenMM System (the MD driver uses the structure's "
                             "masses; set check_masses = false to accept)")
    pot = potential_from_openmm(omm, dtype=system.positions.dtype)
    if pot.config["imported"]["periodic"] and not system.periodic:
        raise InputError("the OpenMM System is periodic but the structure has no periodic cell")
    return _with_config(pot, {**resolved, "imported": pot.config["imported"]})


def _with_config(pot, cfg):
    from dataclasses import replace
    return replace(pot, config=cfg)
