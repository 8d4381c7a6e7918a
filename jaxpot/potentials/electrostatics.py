# SHIM (issue 18 consolidation): old path, re-exports from jaxpot.electrostatics
"""Old path of the electrostatics code, now the package :mod:`jaxpot.electrostatics`
(``pair``, ``ewald``, ``pme``, ``coulomb``, ``yukawa``, ``qeq``, ``gaussian``).
Every name the old module defined is re-exported here; the registry entry
``"jaxpot.potentials.electrostatics:gaussian_electrostatics_from_config"``
still resolves through it."""
from ..electrostatics.coulomb import (  # noqa: F401
    CUTOFF_SCHEMES, METHODS, NEUTRAL_MODES, Coulomb, coulomb_potential, make_coulomb,
)
from ..electrostatics.ewald import (  # noqa: F401
    _check_accuracy, _check_cell, _ewald_kmax, _half_space, ewald_alpha, ewald_parameters,
)
from ..electrostatics.gaussian import (  # noqa: F401
    _AUTO_PME_ATOMS, _GE_KEYS, _GE_TABLES, _QEQ_ONLY, CHARGE_MODELS, GE_COULOMB_METHODS, QEQ_SOLVERS,
    _ge_number, _ge_table, gaussian_electrostatics_from_config,
)
from ..electrostatics.pair import (  # noqa: F401
    _DENSE_BLOCK, _TWO_OVER_SQRT_PI, _cluster_pair_sum, _gamma, _inv, _safe_sqrt, all_pairs, erf_over_r,
    ewald_real_kernel, gaussian_kernel, gaussian_self_energy,
)
from ..electrostatics.pme import (  # noqa: F401
    _bspline_at_integers, _fft_size, bspline_moduli, bspline_weights, pme_grid, pme_spread,
)
from ..electrostatics.qeq import (  # noqa: F401
    _SQRT_2_OVER_PI, cluster_coulomb_matrix, qeq_diagonal, solve_qeq, solve_qeq_cg,
)
from ..electrostatics.yukawa import YUKAWA_COMBINATIONS, combine_beta, smooth_switch, yukawa_pair_energy  # noqa: F401
