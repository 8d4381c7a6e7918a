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

Parameters: a :class:`~jaxpot.forcefield.ForceFieldParams` pytree
(trainable with optax, savable, shared by all PIMD beads); when an extra
term is needed the params are the tuple ``(ForceFieldParams, extra dict)``
of :func:`jaxpot.potentials.base.sum_potentials`.

Differences from OpenMM by construction: bonded terms and exceptions use
minimum-image distances in periodic cells (OpenMM uses raw distances unless
the force uses periodic boundary conditions); they agree whenever molecules
are whole, as in every System built from a PDB file.
"""
# The package, by concept: system_io (the optional import, reading/building a
# System, masses), custom_forces (recognised custom expressions: impropers,
# 1-4 LJ, the extra term), nbfix (CHARMM NBFIX tables), nonbonded
# (NonbondedForce, Ewald/PME parameters), importer (potential_from_openmm),
# kind (the "openmm" potential kind and its keys).
from .custom_forces import _extra_potential, _read_custom_torsion, _read_lj14  # noqa: F401
from .importer import _BOND_K, _PME_ORDER, potential_from_openmm  # noqa: F401
from .kind import CONFIG_DEFAULTS, CONFIG_KEYS, _with_config, openmm_from_config  # noqa: F401
from .nbfix import _compatible, _lj_type_tables, _pair_key, _read_nbfix_force, _separate_nbfix  # noqa: F401
from .nonbonded import _read_nonbonded  # noqa: F401
from .system_io import (NONBONDED_METHODS, _num, _openmm, build_openmm_system, load_openmm_system,  # noqa: F401
                        openmm_masses)

__all__ = ["potential_from_openmm", "load_openmm_system", "build_openmm_system", "openmm_masses",
           "openmm_from_config", "NONBONDED_METHODS", "CONFIG_KEYS", "CONFIG_DEFAULTS"]
