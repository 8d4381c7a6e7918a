# SHIM (issue 18 consolidation): old path, re-exports from jaxpot.forcefield
"""Old path of the classical force field; it lives in :mod:`jaxpot.forcefield`
(topology, bonded, nonbonded, engine, kinds) and, for the exclusion lookups,
:mod:`jaxpot.partition.exclusions`."""
from ..forcefield.topology import (COMBINATION_RULES, ForceFieldParams, Topology,  # noqa: F401
                                   exclusions_from_bonds, make_params, make_topology)
from ..forcefield.bonded import (angle_values, bond_lengths, cmap_energy, cmap_grid_from_openmm,  # noqa: F401
                                 dihedral_values, harmonic_angle_energy, harmonic_bond_energy,
                                 harmonic_improper_energy, periodic_torsion_energy, wrap_angle)
from ..forcefield.nonbonded import (combine_lj, dispersion_correction_energy, lj_energy,  # noqa: F401
                                    nbfix_from_ab, switch_function)
from ..partition.exclusions import (_EXCLUSION_BITS_MAX, exclusion_bitmask,  # noqa: F401
                                    excluded_pairs_lookup, exclusion_lookup)
from ..forcefield.engine import COULOMB_METHODS, classical_potential  # noqa: F401
from ..forcefield.kinds import harmonic_from_config, lj_from_config  # noqa: F401
