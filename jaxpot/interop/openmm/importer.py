"""The OpenMM System importer, :func:`potential_from_openmm`: every force of
the System read term by term (bonds, angles, torsions, CMAP, impropers,
nonbonded with exceptions and NBFIX) into one classical jaxpot potential
(plus extra terms where ForceFieldParams has no slot). The mapping of each
force is in the package docstring (:mod:`jaxpot.interop.openmm`).

Units: everything converted once to metal units (A, eV, e, rad); bond
constants kJ/mol/nm^2 -> eV/A^2, angle constants kJ/mol/rad^2 -> eV/rad^2.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ... import units
from ... import forcefield as cl
from ...potentials.base import Potential, sum_potentials
from ...system import InputError
from .custom_forces import _extra_potential, _read_custom_torsion, _read_lj14
from .nbfix import _compatible, _lj_type_tables, _pair_key, _read_nbfix_force, _separate_nbfix
from .nonbonded import _read_nonbonded
from .system_io import _num, _openmm, load_openmm_system, openmm_masses

_BOND_K = units.KJ_MOL / units.NM ** 2       # kJ/mol/nm^2 -> eV/A^2
_PME_ORDER = 5                               # OpenMM's PME B-spline order


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
