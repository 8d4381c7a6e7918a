# SHIM (issue 18 consolidation): old path, re-exports from jaxpot.ml.behler_parrinello
"""Old path of the Behler-Parrinello kind; the code lives in :mod:`jaxpot.ml.behler_parrinello`."""
from ..ml.behler_parrinello import (ACTIVATIONS, ANGULAR_TYPES, AUTO_ATOM_BLOCK, DEFAULTS,  # noqa: F401
                                    DENSITY_FOR_MAX_NEIGHBORS, GRIDS, KIND, ElementMLP,
                                    behler_parrinello_from_config, cosine_cutoff, max_neighbor_count,
                                    radial_grid, resolve_config, standardize_from_data,
                                    symmetry_function_parameters, symmetry_functions)
