"""jaxpot: differentiable molecular dynamics and path-integral MD in JAX.

A potential is a pure function ``energy(params, positions, context) -> eV``;
forces, stress, bead vectorisation and fitting all follow from JAX
transformations of that one function. Units are metal units throughout
(eV, Angstrom, fs, amu, K, e); see :mod:`jaxpot.units`.

Public API (loaded on first use, so ``import jaxpot`` stays cheap and this
file cannot take part in an import cycle; docs/python.md describes each):
``run_md``, ``train``, ``build_potential``, ``JaxpotCalculator``, ``System``,
``from_ase``, ``to_ase``, ``energy_and_forces``, ``energy_forces_stress``,
``Context``, ``Potential``, ``InputError``, ``units``, ``__version__``.

Process-wide JAX settings made at import (docs/architecture.md, "Process-wide
JAX settings", gives the full reasoning):

- ``jax_enable_x64 = True``: float64 must be available to every module (MD
  runs, Ewald sums, kernel regression and energy accumulation use it by
  default); each model still chooses its own dtype, and ``[md] dtype =
  "float32"`` runs in float32.
- ``jax_default_matmul_precision = "highest"``: on GPUs XLA otherwise
  multiplies float32 matrices in TF32 (10-bit mantissa), which turned
  ``r @ inv(cell)`` and ``shift @ cell`` into 1e-3 relative position errors
  (2% force errors on villin, measured on an H200). Code that wants TF32
  (network training) can ask for it inside a
  ``jax.default_matmul_precision("tensorfloat32")`` context.

Both change the behaviour of other JAX code in the same process.
"""
import importlib as _importlib

import jax as _jax

_jax.config.update("jax_enable_x64", True)
_jax.config.update("jax_default_matmul_precision", "highest")

__version__ = "0.1.0"

# public name -> module that defines it (current paths; the issue-18
# consolidation pass updates this table when modules move)
_API = {
    "run_md": "jaxpot.simulate",
    "train": "jaxpot.training.fit",
    "build_potential": "jaxpot.potentials",
    "JaxpotCalculator": "jaxpot.interop.ase",
    "System": "jaxpot.system",
    "from_ase": "jaxpot.system",
    "to_ase": "jaxpot.system",
    "energy_and_forces": "jaxpot.potentials.base",
    "energy_forces_stress": "jaxpot.potentials.base",
    "Context": "jaxpot.potentials.base",
    "Potential": "jaxpot.potentials.base",
    "InputError": "jaxpot.errors",
    "SimulationError": "jaxpot.errors",
    "prepare": "jaxpot.assembly",
    "Prepared": "jaxpot.assembly",
    "KindSpec": "jaxpot.potentials.registry",
}
_MODULES = {"units": "jaxpot.units"}

__all__ = sorted([*_API, *_MODULES, "__version__"])


def __getattr__(name):
    if name in _API:
        value = getattr(_importlib.import_module(_API[name]), name)
    elif name in _MODULES:
        value = _importlib.import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'jaxpot' has no attribute {name!r}")
    globals()[name] = value   # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
