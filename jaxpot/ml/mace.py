"""MACE higher-order message passing (Batatia et al., NeurIPS 2022,
arXiv:2206.07697) as flax.linen modules: per-atom energies (units of
``energy_scale``) from species indices and the edges of the neighbor graph
(A). The shared layers are in :mod:`jaxpot.ml.equivariant_layers`; the
potential kind wrapping it in :mod:`jaxpot.ml.equivariant`.

MACE (Batatia et al., NeurIPS 2022, arXiv:2206.07697), per layer t:
A_i = Linear( sum_j R(r_ij) Y(r_ij) (x) (W h_j) ) / avg  (atomic basis, eq. 8-9),
B_i = channel-wise products of A_i up to ``correlation`` factors (eq. 10-11;
see :class:`ProductBasis` for how this relates to MACE's symmetric
contraction), h_i <- Linear(B_i) + W_{z_i} h_i (eq. 12-13); the last layer
keeps scalars only. Atomic energy = sum over layers of readouts (eq. 14):
Linear(0e) for every layer but the last, an MLP (readout_hidden, silu) on
the last. Per-element reference energies are not part of these models (the
``atomic_energies`` kind adds them).
"""
from __future__ import annotations

import math
from typing import Any

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

from .equivariant_layers import Convolution, _species_channel_weights, edge_features, hidden_irreps


class ProductBasis(nn.Module):
    """Channel-wise many-body basis B_i from the atomic basis A_i (MACE eq. 10-11).

    A: IrrepsArray (N, C, irreps) with one copy of each irrep per channel.
    T_1 = A; T_{nu+1} = sum_paths w^{nu+1}_{z_i,k,path} [T_nu (x) A]_path (per
    channel k, coupled to each irrep with l <= l_max, both parities, except
    the last order, coupled to ``irreps_out`` only); B = sum_nu
    sum_paths v^nu_{z_i,k,path} T_nu (projected onto ``irreps_out``).

    Relation to MACE's symmetric contraction: MACE forms
    B^nu_{i,kLM} = sum_eta W^nu_{z_i,k,eta} sum_lm C^{LM}_{eta,lm} prod_xi A_{i,k l_xi m_xi},
    with an independent weight for every element eta of a basis of the
    symmetric, coupled nu-fold products (generalised Clebsch-Gordan
    coefficients C). Our T_nu is the same kind of object - an element-
    and channel-dependent, rotation-equivariant polynomial of degree nu in the
    A_{i,k} of one channel (no channel mixing inside the product, as in MACE)
    - built along a coupling tree ((A (x) A) (x) A) ... with learnable sums at
    each node. The differences: the weights factor across orders (the
    order-nu coefficients are products of the per-step weights), intermediate
    couplings are truncated at l <= l_max, and the coupling-tree basis is not
    symmetrised, so some paths are linearly dependent (harmless redundancy).
    The cost grows linearly with correlation instead of via the dense U
    tensors of the reference implementation."""

    irreps_out: Any            # per channel, e.g. "0e + 1o + 2e"
    l_max: int
    correlation: int
    n_species: int

    def _path_sum(self, name, x, keep, idx):
        """sum_paths w_{z,k,path} x_path into one copy of each irrep in keep,
        paths of one irrep averaged in variance (1/sqrt(count))."""
        n, c = x.shape[0], x.shape[1]
        w = _species_channel_weights(self, name, idx, self.n_species, c, x.irreps.num_irreps, x.dtype)
        acc, count = {}, {}
        k = 0
        for (mul, ir), chunk in zip(x.irreps, x.chunks):
            if chunk is not None and ir in keep:
                term = jnp.einsum("ncm,ncmd->ncd", w[..., k:k + mul], chunk)
                acc[ir] = acc.get(ir, 0.0) + term
                count[ir] = count.get(ir, 0) + mul
            k += mul
        # every irrep of keep, as a zero chunk where no path reaches it
        chunks = [(acc[ir] / math.sqrt(count[ir]))[..., None, :] if ir in acc else None for ir in keep]
        return e3nn.from_chunks(e3nn.Irreps([(1, ir) for ir in keep]), chunks, (n, c), x.dtype)

    @nn.compact
    def __call__(self, A, idx):
        out_irs = [ir for _, ir in e3nn.Irreps(self.irreps_out)]
        mid_irs = [e3nn.Irrep(l, p) for l in range(self.l_max + 1) for p in (1, -1)]
        T = A
        B = self._path_sum("readout_1", T, out_irs, idx)
        for nu in range(2, self.correlation + 1):
            last = nu == self.correlation
            keep = out_irs if last else mid_irs
            prod = e3nn.tensor_product(T, A, filter_ir_out=keep, regroup_output=False)
            T = self._path_sum(f"couple_{nu}", prod, keep, idx)
            Bnu = T if last else self._path_sum(f"readout_{nu}", T, out_irs, idx)
            B = B + Bnu
        return B



class MACELayer(nn.Module):
    irreps_out: Any
    l_max: int
    correlation: int
    n_species: int
    channels: int
    avg_num_neighbors: float
    radial_hidden: int
    radial_layers: int

    @nn.compact
    def __call__(self, h, idx, Y, basis, edge_weight, senders, receivers):
        c = self.channels
        a_irreps = hidden_irreps(c, self.l_max)
        x = e3nn.flax.Linear(h.irreps, name="linear_up")(h)
        A = Convolution(a_irreps, self.avg_num_neighbors, self.radial_hidden, self.radial_layers,
                        name="convolution")(x, Y, basis, edge_weight, senders, receivers)
        A = e3nn.flax.Linear(a_irreps, force_irreps_out=True, name="linear_A")(A)
        per_channel = e3nn.Irreps([(1, ir) for _, ir in e3nn.Irreps(self.irreps_out)])
        B = ProductBasis(per_channel, self.l_max, self.correlation, self.n_species,
                         name="product")(A.mul_to_axis(c), idx)
        m = e3nn.flax.Linear(self.irreps_out, force_irreps_out=True, name="linear_B")(B.axis_to_mul())
        sc = e3nn.flax.Linear(self.irreps_out, num_indexed_weights=self.n_species, force_irreps_out=True,
                              name="self_connection")(jnp.maximum(idx, 0), h)
        return m + sc


class MACE(nn.Module):
    """Per-atom energies (N,) (units of energy_scale) of a MACE network."""

    n_species: int
    channels: int
    l_max: int
    layers: int
    correlation: int
    n_basis: int
    cutoff: float
    envelope_exponent: int
    radial_hidden: int
    radial_layers: int
    avg_num_neighbors: float
    readout_hidden: int

    @nn.compact
    def __call__(self, idx, senders, receivers, dr, edge_weight):
        Y, basis = edge_features(dr, edge_weight, cutoff=self.cutoff, n_basis=self.n_basis,
                                 l_max=self.l_max, p=self.envelope_exponent)
        onehot = jax.nn.one_hot(idx, self.n_species, dtype=dr.dtype)
        h = e3nn.flax.Linear(f"{self.channels}x0e", name="embedding")(
            e3nn.IrrepsArray(f"{self.n_species}x0e", onehot))
        energy = jnp.zeros(idx.shape, dr.dtype)
        for t in range(self.layers):
            last = t == self.layers - 1
            irreps = e3nn.Irreps(f"{self.channels}x0e") if last else hidden_irreps(self.channels, self.l_max)
            h = MACELayer(irreps, self.l_max, self.correlation, self.n_species, self.channels,
                          self.avg_num_neighbors, self.radial_hidden, self.radial_layers,
                          name=f"layer_{t}")(h, idx, Y, basis, edge_weight, senders, receivers)
            self.sow("intermediates", f"features_{t}", h)
            if last:
                y = e3nn.flax.Linear(f"{self.readout_hidden}x0e", name=f"readout_{t}_hidden")(h)
                y = e3nn.scalar_activation(y, [jax.nn.silu])
                y = e3nn.flax.Linear("0e", name=f"readout_{t}")(y)
            else:
                y = e3nn.flax.Linear("0e", name=f"readout_{t}")(h)
            energy = energy + y.array[:, 0]
        return energy
