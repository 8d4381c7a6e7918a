# SHIM (issue 18 consolidation): old path, re-exports from jaxpot.kernels
"""Old path of the kernel potential kind; the code lives in :mod:`jaxpot.kernels`."""
from ..kernels import InputError  # noqa: F401
from ..kernels.descriptors import (BOHR, bag_of_bonds, bag_sizes, coulomb_eigen, coulomb_matrix,  # noqa: F401
                                   coulomb_sorted, eigvalsh, overlap_eigen, overlap_matrix)
from ..kernels.featurize import compute_descriptors, descriptor_fn, descriptor_size, pad_structures  # noqa: F401
from ..kernels.fit import fit_kernel, potential_energies  # noqa: F401
from ..kernels.potential import (DEFAULTS, DESCRIPTORS, FIT_DEFAULTS, KERNELS, OFFSETS,  # noqa: F401
                                 kernel_from_config, kernel_predict)
from ..kernels.regression import (_distance_matrix, gp_log_marginal_likelihood, gp_predict,  # noqa: F401
                                  kernel_matrix, krr_fit, median_distance, optimize_gp_hyperparameters,
                                  ridge_fit)
from ..kernels.soap import soap_power_spectrum  # noqa: F401
