"""CHARMM NBFIX from OpenMM: the ``CustomNonbondedForce`` with tabulated
``acoef(type1, type2)/r^12 - bcoef(type1, type2)/r^6`` that OpenMM's
LennardJonesForce generator writes, read into per-type sigma/epsilon with an
NBFIX table, and either merged with the NonbondedForce (same cutoff,
periodicity and exclusions) or built as a separate LJ term.

Units: A kJ/mol nm^12 -> eV A^12, B kJ/mol nm^6 -> eV A^6; sigma A, epsilon eV.
"""
from __future__ import annotations

import numpy as np

from ... import units
from ... import forcefield as cl
from ...system import InputError
from .custom_forces import _NBFIX, _no_globals, _norm_expr, _per_item_names
from .system_io import _num, _openmm


def _pair_key(a, b):
    return (a, b) if a < b else (b, a)


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
