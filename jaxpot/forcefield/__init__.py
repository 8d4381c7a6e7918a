"""Classical force fields (metal units: eV, A, rad, e): a static topology
and a float parameter pytree (:mod:`.topology`), bonded terms and CMAP
(:mod:`.bonded`), Lennard-Jones pieces (:mod:`.nonbonded`), the engine that
joins them into one Potential (:mod:`.engine`), the registry kinds "lj" and
"harmonic" (:mod:`.kinds`) and the flexible water models (:mod:`.water`)."""
from .topology import (COMBINATION_RULES, ForceFieldParams, Topology,  # noqa: F401
                       exclusions_from_bonds, make_params, make_topology)
from .bonded import (angle_values, bond_lengths, cmap_energy, cmap_grid_from_openmm,  # noqa: F401
                     dihedral_values, harmonic_angle_energy, harmonic_bond_energy,
                     harmonic_improper_energy, periodic_torsion_energy, quartic_morse_bond_energy,
                     wrap_angle)
from .nonbonded import (DISPERSION_COUNTINGS, combine_lj, dispersion_correction_energy, lj_energy,  # noqa: F401
                        nbfix_from_ab, switch_function)
from ..partition.exclusions import exclusion_bitmask, excluded_pairs_lookup, exclusion_lookup  # noqa: F401
from .engine import COULOMB_METHODS, classical_potential  # noqa: F401
from .kinds import (HARMONIC_KIND, HARMONIC_TABLE, LJ_DEFAULTS, LJ_KIND, LJ_TABLE,  # noqa: F401
                    harmonic_from_config, lj_from_config)
from .water import (QTIP4PF, QTIP4PF_KIND, QTIP4PF_TABLE, SPCFW, SPCFW_KIND, SPCFW_TABLE,  # noqa: F401
                    find_water_molecules, qtip4pf_from_config, spcfw_from_config, water_force_field_params,
                    water_potential, water_topology)
