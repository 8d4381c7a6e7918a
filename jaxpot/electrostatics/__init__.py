"""Electrostatics (metal units: A, e, eV; ke = :data:`jaxpot.units.KE` eV A / e^2).

Layer L3 (a potential kind); imports only :mod:`jaxpot.potentials.base` and
the core modules. Modules, bottom to top:

``pair``      pair kernels (erf/r, Gaussian, Ewald real space), self energies,
              the dense half list and the blocked all-pairs cluster sum
``ewald``     Ewald parameters (OpenMM recipe), k-vector set, reciprocal sum
``pme``       smooth PME (Essmann et al. 1995): grid, B-splines, spreading,
              moduli, reciprocal sum
``coulomb``   :class:`Coulomb` (direct / cutoff / Ewald / PME),
              :func:`make_coulomb`, :func:`coulomb_potential`
``yukawa``    screened core-core repulsion with a C2 switch
``qeq``       charge equilibration: matrix, dense and CG solvers
``gaussian``  the potential kind "gaussian_electrostatics"
"""
from .coulomb import CUTOFF_SCHEMES, METHODS, NEUTRAL_MODES, Coulomb, coulomb_potential, make_coulomb
from .ewald import ewald_alpha, ewald_kspace, ewald_parameters, ewald_reciprocal
from .gaussian import (CHARGE_MODELS, GE_COULOMB_METHODS, QEQ_SOLVERS,
                       gaussian_electrostatics_from_config)
from .pair import all_pairs, erf_over_r, ewald_real_kernel, gaussian_kernel, gaussian_self_energy
from .pme import bspline_moduli, bspline_weights, pme_grid, pme_reciprocal, pme_setup, pme_spread
from .qeq import cluster_coulomb_matrix, qeq_diagonal, solve_qeq, solve_qeq_cg
from .yukawa import YUKAWA_COMBINATIONS, combine_beta, smooth_switch, yukawa_pair_energy

__all__ = [
    "CHARGE_MODELS", "CUTOFF_SCHEMES", "Coulomb", "GE_COULOMB_METHODS", "METHODS", "NEUTRAL_MODES",
    "QEQ_SOLVERS", "YUKAWA_COMBINATIONS", "all_pairs", "bspline_moduli", "bspline_weights",
    "cluster_coulomb_matrix", "combine_beta", "coulomb_potential", "erf_over_r", "ewald_alpha",
    "ewald_kspace", "ewald_parameters", "ewald_real_kernel", "ewald_reciprocal",
    "gaussian_electrostatics_from_config", "gaussian_kernel", "gaussian_self_energy", "make_coulomb",
    "pme_grid", "pme_reciprocal", "pme_setup", "pme_spread", "qeq_diagonal", "smooth_switch",
    "solve_qeq", "solve_qeq_cg", "yukawa_pair_energy",
]
