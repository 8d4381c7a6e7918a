"""NequIP message passing (Batzner et al., Nat. Commun. 13, 2453 (2022)) as
flax.linen modules: per-atom energies (units of ``energy_scale``) from
species indices and the edges of the neighbor graph (A). The shared layers
are in :mod:`jaxpot.ml.equivariant_layers`; the potential kind wrapping it
in :mod:`jaxpot.ml.equivariant`.

NequIP (Batzner et al., Nat. Commun. 13, 2453 (2022)), per interaction block:
self-interaction Linear -> convolution sum_j R(r_ij) (h_j (x) Y(r_ij)) / avg
-> Linear to [scalars, gates, non-scalars] -> gate nonlinearity (silu on
scalars, sigmoid gates on l > 0) -> plus a species-dependent self-connection
(Linear indexed by the species of i, NequIP's one-hot tensor product);
readout Linear(0e) of the last features is the atomic energy.
"""
from __future__ import annotations

from typing import Any

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

from .equivariant_layers import Convolution, edge_features, hidden_irreps


class NequIPBlock(nn.Module):
    irreps: Any
    n_species: int
    avg_num_neighbors: float
    radial_hidden: int
    radial_layers: int

    @nn.compact
    def __call__(self, h, idx, Y, basis, edge_weight, senders, receivers):
        irreps = e3nn.Irreps(self.irreps)
        scalars = irreps.filter(keep=["0e"])
        nonscalars = irreps.filter(drop=["0e"])
        gate_in = (scalars + e3nn.Irreps(f"{nonscalars.num_irreps}x0e") + nonscalars).simplify()
        x = e3nn.flax.Linear(h.irreps, name="self_interaction")(h)
        m = Convolution(irreps, self.avg_num_neighbors, self.radial_hidden, self.radial_layers,
                        name="convolution")(x, Y, basis, edge_weight, senders, receivers)
        m = e3nn.flax.Linear(gate_in, force_irreps_out=True, name="linear")(m)
        m = e3nn.gate(m, even_act=jax.nn.silu, even_gate_act=jax.nn.sigmoid)
        sc = e3nn.flax.Linear(irreps, num_indexed_weights=self.n_species, force_irreps_out=True,
                              name="self_connection")(jnp.maximum(idx, 0), h)
        return m + sc


class NequIP(nn.Module):
    """Per-atom energies (N,) (units of energy_scale) of a NequIP network."""

    n_species: int
    channels: int
    l_max: int
    layers: int
    n_basis: int
    cutoff: float
    envelope_exponent: int
    radial_hidden: int
    radial_layers: int
    avg_num_neighbors: float

    @nn.compact
    def __call__(self, idx, senders, receivers, dr, edge_weight):
        Y, basis = edge_features(dr, edge_weight, cutoff=self.cutoff, n_basis=self.n_basis,
                                 l_max=self.l_max, p=self.envelope_exponent)
        onehot = jax.nn.one_hot(idx, self.n_species, dtype=dr.dtype)   # all zero for padding
        h = e3nn.flax.Linear(f"{self.channels}x0e", name="embedding")(
            e3nn.IrrepsArray(f"{self.n_species}x0e", onehot))
        irreps = hidden_irreps(self.channels, self.l_max)
        for t in range(self.layers):
            h = NequIPBlock(irreps, self.n_species, self.avg_num_neighbors, self.radial_hidden,
                            self.radial_layers, name=f"block_{t}")(
                h, idx, Y, basis, edge_weight, senders, receivers)
            self.sow("intermediates", f"features_{t}", h)
        return e3nn.flax.Linear("0e", name="readout")(h).array[:, 0]
