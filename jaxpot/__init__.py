"""jaxpot: differentiable molecular dynamics and path-integral MD in JAX.

A potential is a pure function ``energy(params, positions, context) -> eV``;
forces, stress, bead vectorisation and fitting all follow from JAX
transformations of that one function. Units are metal units throughout
(eV, Angstrom, fs, amu, K, e); see :mod:`jaxpot.units`.
"""
import jax as _jax

# float64 must be *available* everywhere; models choose their own dtype.
_jax.config.update("jax_enable_x64", True)
# float32 matrix products at full float32 precision on GPUs too: XLA's default
# there is TF32 (10-bit mantissa), which turned r @ inv(cell) and shift @ cell
# into 1e-3 relative position errors (2% force errors on villin, measured on
# an H200). ML training that wants TF32 can lower it within a
# ``jax.default_matmul_precision`` context.
_jax.config.update("jax_default_matmul_precision", "highest")

__version__ = "0.1.0"
