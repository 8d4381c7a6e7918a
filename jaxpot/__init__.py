"""jaxpot: differentiable molecular dynamics and path-integral MD in JAX.

A potential is a pure function ``energy(params, positions, context) -> eV``;
forces, stress, bead vectorisation and fitting all follow from JAX
transformations of that one function. Units are metal units throughout
(eV, Angstrom, fs, amu, K, e); see :mod:`jaxpot.units`.
"""
import jax as _jax

# float64 must be *available* everywhere; models choose their own dtype.
_jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
