"""Kernel methods on global descriptors: the potential kind ``kind = "kernel"``.

- :mod:`.descriptors`: Coulomb matrix (eigenvalues, sorted), bag of bonds,
  overlap-matrix fingerprint (positions A, descriptors in Hartree or
  dimensionless);
- :mod:`.soap`: SOAP-like local power spectra and GAP-style sparse GPR;
- :mod:`.featurize`: the descriptor of a kernel configuration (dispatch,
  padding, batching);
- :mod:`.regression`: kernel functions, distance matrices, KRR, GPR and the
  log-marginal-likelihood hyperparameter search (optax Adam);
- :mod:`.potential`: configuration keys (:data:`TABLE`), parameters and energy of the kind,
  :func:`kernel_from_config`, :func:`kernel_predict`;
- :mod:`.fit`: :func:`fit_kernel` (energies, gradient domain, SOAP,
  Delta-learning) and :func:`potential_energies`;
- :mod:`.kind`: the kind's KindSpec (factory, key table, closed-form fit of
  ``jaxpot train``), which the registry of kinds points at.

Units: energies eV, positions A, forces eV/A, kernel variances eV^2.
"""
from __future__ import annotations

from ..system import InputError  # noqa: F401  (re-exported: old importers take it from the kernels module)
from .descriptors import (BOHR, bag_of_bonds, bag_sizes, coulomb_eigen, coulomb_matrix, coulomb_sorted,
                          eigvalsh, overlap_eigen, overlap_matrix)
from .featurize import compute_descriptors, descriptor_fn, descriptor_size, pad_structures
from .fit import fit_kernel, potential_energies
from .potential import (DEFAULTS, DESCRIPTORS, FIT_DEFAULTS, KERNELS, OFFSETS, kernel_from_config,
                        kernel_predict)
from .regression import (_distance_matrix, gp_log_marginal_likelihood, gp_predict, kernel_matrix, krr_fit,
                         median_distance, optimize_gp_hyperparameters, ridge_fit)
from .soap import soap_power_spectrum

__all__ = [
    "BOHR", "DEFAULTS", "DESCRIPTORS", "FIT_DEFAULTS", "KERNELS", "OFFSETS",
    "bag_of_bonds", "bag_sizes", "compute_descriptors", "coulomb_eigen", "coulomb_matrix", "coulomb_sorted",
    "descriptor_fn", "descriptor_size", "eigvalsh", "fit_kernel", "gp_log_marginal_likelihood", "gp_predict",
    "kernel_from_config", "kernel_matrix", "kernel_predict", "krr_fit", "median_distance",
    "optimize_gp_hyperparameters", "overlap_eigen", "overlap_matrix", "pad_structures", "potential_energies",
    "ridge_fit", "soap_power_spectrum",
]
