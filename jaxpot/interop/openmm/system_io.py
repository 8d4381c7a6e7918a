"""Getting an OpenMM ``System``: the optional OpenMM import, unit stripping,
reading a serialized System, building one from a PDB file and force-field XML
files (``ForceField.createSystem``), and the particle masses.

Units: OpenMM's MD unit system (nm, kJ/mol, ps, e, rad) is stripped by
:func:`_num`; lengths given to :func:`build_openmm_system` are in A and
converted to nm here (``units.NM``); masses are amu.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import units
from ...system import InputError

NONBONDED_METHODS = ("NoCutoff", "CutoffNonPeriodic", "CutoffPeriodic", "Ewald", "PME")


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
