"""The KindSpec of ``[potential] kind = "kernel"``: its factory
(:func:`jaxpot.kernels.potential.kernel_from_config`), its key table
(:data:`jaxpot.kernels.potential.TABLE`) and its closed-form fit, which
``jaxpot train`` runs instead of gradient steps
(:func:`jaxpot.kernels.fit.fit_kernel`).

Units: energies eV, forces eV/A, positions A.
"""
from __future__ import annotations

import numpy as np

from ..potentials.registry import KindSpec
from .fit import fit_kernel
from .potential import TABLE, kernel_from_config


def kernel_fit(config: dict, structures, energies, fit_table: dict):
    """Closed-form kernel regression on the training structures
    (``jaxpot.training.data.Labelled``; energies eV, forces eV/A);
    ``fit_table`` is not used (the kernel's fit options are [model] keys)."""
    from ase import Atoms

    atoms = [Atoms(numbers=s.numbers, positions=s.positions, cell=s.cell, pbc=s.pbc) for s in structures]
    return fit_kernel(dict(config), atoms, np.asarray(energies), [s.forces for s in structures])


KIND = KindSpec(name="kernel", factory=kernel_from_config, table=TABLE, learned=True, padded_batches=True,
                fit=kernel_fit, doc="kernel regression (KRR/GPR) on global descriptors")
