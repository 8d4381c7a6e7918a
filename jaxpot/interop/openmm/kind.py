"""The ``[potential] kind = "openmm"`` potential kind: its keys, defaults and
checks (:func:`openmm_from_config`), from a serialized System or from a PDB
file with force-field XML files.

Units: cutoff and switch_distance A, masses amu (checked against the
structure's within 0.01 amu).
"""
from __future__ import annotations

import numpy as np

from ...config import Key, Table
from ...potentials.base import Potential
from ...potentials.registry import KindSpec, check_keys
from ...system import InputError, System
from .importer import potential_from_openmm
from .system_io import NONBONDED_METHODS, build_openmm_system, load_openmm_system, openmm_masses

TABLE = Table("[potential] kind = 'openmm'", (
    Key("system", str, None, doc="a System serialized by openmm.XmlSerializer (or pdb + forcefield)"),
    Key("pdb", str, None, doc="a PDB file; the structure must list its atoms in the same order"),
    Key("forcefield", (str, list), None, doc="OpenMM force-field XML files, e.g. [\"amber14-all.xml\", "
                                             "\"amber14/tip3p.xml\"] (with pdb)"),
    Key("nonbonded_method", str, None, choices=NONBONDED_METHODS,
        doc="with pdb; auto: PME for a periodic structure, NoCutoff otherwise."),
    Key("cutoff", float, 10.0, "A", "nonbonded cutoff (with pdb)"),
    Key("ewald_error_tolerance", float, 5e-4, doc="OpenMM's Ewald/PME tolerance (with pdb)"),
    Key("switch_distance", float, None, "A", "LJ switch, in [0, cutoff) (with pdb)"),
    Key("dispersion_correction", bool, None, doc="(with pdb) auto: the force field's"),
    Key("check_masses", bool, True, doc="the structure's masses must match the System's within 0.01 amu"),
    # what the import found (terms, alpha, grid, ...): written into the resolved
    # configuration for the record, accepted and recomputed on re-reading
    Key("imported", dict, None, doc="written by jaxpot into the resolved configuration (a record of the import); "
                                    "recomputed on reading"),
), doc="an OpenMM System's force field")
CONFIG_KEYS = TABLE.names
CONFIG_DEFAULTS = {k: v for k, v in TABLE.defaults().items() if v is not None}


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
    check_keys("openmm", TABLE, config)
    config = dict(config)
    config.pop("kind", None)
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


KIND = KindSpec(name="openmm", factory=openmm_from_config, table=TABLE,
                doc="an OpenMM System's force field (needs the openmm package)")
