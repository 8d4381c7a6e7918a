"""Pieces shared by the equivariant message-passing networks (NequIP and
MACE, :mod:`jaxpot.ml.nequip`, :mod:`jaxpot.ml.mace`) on e3nn-jax: radial
basis, spherical harmonics of the edges, the convolution and per-species
weights. Lengths A; features are dimensionless.

Shared pieces (x = r / cutoff):
- radial basis: Bessel functions sqrt(2/c) sin(n pi r / c) / r, n = 1..n_basis
  (Klicpera et al., DimeNet, ICLR 2020, eq. 7) times the polynomial envelope
  u_p(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2) for x < 1,
  0 beyond (DimeNet eq. 8; u, u', u'' vanish at x = 1, so energy, forces and
  their first derivatives are continuous when a pair crosses the cutoff);
- spherical harmonics Y^l(r_ij / r), l = 0..l_max, 'component' normalisation
  (|Y^l|^2 = 2l + 1), parity (-1)^l;
- a radial MLP (silu, no biases, so zero basis -> zero weights) maps the basis
  of each edge to one weight per (channel, tensor-product path): the "uvu"
  convolution of NequIP eq. 4 / MACE eq. 8;
- species embedding: one-hot over ``species`` -> Linear(channels x 0e), no
  bias, so padding atoms (all-zero one-hot) have zero features; their atomic
  energies are also masked out of the sum;
- hidden features have natural parity: channels x (0e + 1o + 2e + ...) up to
  l_max; aggregated messages are divided by ``avg_num_neighbors``.
"""
from __future__ import annotations

from typing import Any

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

from ..potentials.base import safe_norm


# ---------------------------------------------------------------------------
# radial and angular edge features
# ---------------------------------------------------------------------------

def polynomial_envelope(x, p: int = 6):
    """DimeNet envelope u_p(x) (dimensionless, x = r / cutoff): 1 at x = 0,
    and u, du/dx, d2u/dx2 all 0 at x = 1; 0 for x >= 1."""
    inside = x < 1.0
    xs = jnp.where(inside, x, 0.0)
    u = (1.0 - 0.5 * (p + 1) * (p + 2) * xs ** p + p * (p + 2) * xs ** (p + 1)
         - 0.5 * p * (p + 1) * xs ** (p + 2))
    return jnp.where(inside, u, 0.0)


def radial_basis(r, cutoff: float, n_basis: int, p: int = 6):
    """(..., n_basis) Bessel basis sqrt(2/c) sin(n pi r/c)/r (r, c in A; the
    values are used as numbers in A^-1/2) times u_p(r/c). Needs r > 0."""
    return e3nn.bessel(r, n_basis, cutoff) * polynomial_envelope(r / cutoff, p)[..., None]


def hidden_irreps(channels: int, l_max: int) -> e3nn.Irreps:
    """channels x (0e + 1o + 2e + ...): natural parity (-1)^l up to l_max."""
    return e3nn.Irreps([(channels, (l, (-1) ** l)) for l in range(l_max + 1)])


def edge_features(dr, edge_weight, *, cutoff, n_basis, l_max, p):
    """Spherical harmonics Y (E, (l_max+1)^2) of the directions of ``dr`` (A)
    and the radial basis (E, n_basis), zero on edges of weight 0."""
    r = safe_norm(dr)
    Y = e3nn.spherical_harmonics(e3nn.Irreps.spherical_harmonics(l_max), dr,
                                 normalize=True, normalization="component")
    basis = radial_basis(r, cutoff, n_basis, p) * edge_weight[:, None]
    return Y, basis


# ---------------------------------------------------------------------------
# flax modules
# ---------------------------------------------------------------------------

class Convolution(nn.Module):
    """sum_j w_kp(r_ij) [h_j (x) Y(r_ij)]_kp / avg_num_neighbors: one learned
    radial weight per channel k and tensor-product path p (NequIP eq. 4, the
    R Y (W h) of MACE eq. 8). Output irreps keep the paths apart (a Linear
    after it mixes them)."""

    irreps_out: Any
    avg_num_neighbors: float
    radial_hidden: int
    radial_layers: int

    @nn.compact
    def __call__(self, h, Y, basis, edge_weight, senders, receivers):
        n_nodes = h.shape[0]
        msg = e3nn.tensor_product(h[senders], Y, filter_ir_out=e3nn.Irreps(self.irreps_out),
                                  regroup_output=False)
        w = e3nn.flax.MultiLayerPerceptron(
            (self.radial_hidden,) * self.radial_layers + (msg.irreps.num_irreps,),
            act=jax.nn.silu, output_activation=False, name="radial_mlp")(basis)
        msg = msg * (w * edge_weight[:, None])
        agg = jax.ops.segment_sum(msg.array, receivers, num_segments=n_nodes)
        return e3nn.IrrepsArray(msg.irreps, agg / self.avg_num_neighbors)


def _species_channel_weights(module, name, idx, n_species, channels, size, dtype):
    """(N, channels, size) learnable weights of each atom's species."""
    w = module.param(name, nn.initializers.normal(1.0), (n_species, channels, size), dtype)
    return w[jnp.maximum(idx, 0)]
