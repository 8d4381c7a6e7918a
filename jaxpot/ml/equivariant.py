"""E(3)-equivariant message-passing potentials on e3nn-jax: NequIP and MACE.

Both are flax.linen modules wrapped into the pure contract of :mod:`.base`,
``energy(params, positions A, context) -> eV`` with ``params`` the flax
variables pytree. The model computes in the dtype of ``positions`` (params
are cast to it, so a float32 run is float32 throughout); the sum over atoms
is float64 (:func:`.base.esum`). Forces and stress come from autodiff.

Graph. Directed edges j -> i from the neighbor list, both directions
(``pairs(..., full=True)``), every periodic image within ``cutoff`` (shifts
handle triclinic and small cells); r_ij = r_j - r_i + s @ cell (A). An edge
carries weight 0 (contributes nothing, also to gradients) if its slot is
masked, either end is a padding atom (atomic number 0, or an element not in
``species``), r >= cutoff, or r < 1e-6 A. Messages are summed into the
receiver i with ``jax.ops.segment_sum`` (num_segments = N, static).

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

NequIP (Batzner et al., Nat. Commun. 13, 2453 (2022)), per interaction block:
self-interaction Linear -> convolution sum_j R(r_ij) (h_j (x) Y(r_ij)) / avg
-> Linear to [scalars, gates, non-scalars] -> gate nonlinearity (silu on
scalars, sigmoid gates on l > 0) -> plus a species-dependent self-connection
(Linear indexed by the species of i, NequIP's one-hot tensor product);
readout Linear(0e) of the last features is the atomic energy.

MACE (Batatia et al., NeurIPS 2022, arXiv:2206.07697), per layer t:
A_i = Linear( sum_j R(r_ij) Y(r_ij) (x) (W h_j) ) / avg  (atomic basis, eq. 8-9),
B_i = channel-wise products of A_i up to ``correlation`` factors (eq. 10-11;
see :class:`ProductBasis` for how this relates to MACE's symmetric
contraction), h_i <- Linear(B_i) + W_{z_i} h_i (eq. 12-13); the last layer
keeps scalars only. Atomic energy = sum over layers of readouts (eq. 14):
Linear(0e) for every layer but the last, an MLP (readout_hidden, silu) on
the last. Per-element reference energies are not part of these models (the
``atomic_energies`` kind adds them).

Configuration keys (defaults):
  species            list of element symbols (required), e.g. ["H", "O"]
  cutoff             5.0 A
  channels           32 (multiplicity of every l in the hidden features)
  l_max              2 (spherical harmonics and hidden features), 1..4
  layers             3 (nequip), 2 (mace)
  n_basis            8 Bessel functions
  envelope_exponent  6 (p of u_p)
  radial_hidden      64 neurons per radial-MLP hidden layer
  radial_layers      2 (nequip), 3 (mace) hidden layers
  avg_num_neighbors  10.0 (messages are divided by it)
  energy_scale       1.0 eV (multiplies every atomic energy)
  seed               0 (folded into the key given to ``init``)
  correlation        3 (mace only; body order = correlation + 1), 1..4
  readout_hidden     16 (mace only; neurons of the last readout MLP)
"""
from __future__ import annotations

import json
import math
from typing import Any

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..system import InputError
from .base import Potential, check_species, esum, pairs, safe_norm, species_index_table

COMMON_DEFAULTS = dict(cutoff=5.0, channels=32, l_max=2, n_basis=8, envelope_exponent=6,
                       radial_hidden=64, avg_num_neighbors=10.0, energy_scale=1.0, seed=0)
NEQUIP_DEFAULTS = dict(COMMON_DEFAULTS, layers=3, radial_layers=2)
MACE_DEFAULTS = dict(COMMON_DEFAULTS, layers=2, radial_layers=3, correlation=3, readout_hidden=16)

MIN_EDGE_LENGTH = 1e-6   # A; coincident atoms are not neighbours (direction undefined)


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


# ---------------------------------------------------------------------------
# configuration and the Potential wrapper
# ---------------------------------------------------------------------------

def _int(kind, cfg, key, lo, hi=None):
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"from {lo} to {hi}"
        raise InputError(f"{kind}: {key} must be an integer {rng}, got {v!r}")
    return int(v)


def _float(kind, cfg, key, positive=True):
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v) \
            or (positive and v <= 0):
        raise InputError(f"{kind}: {key} must be a {'positive ' if positive else ''}finite number, got {v!r}")
    return float(v)


def resolve_config(kind: str, config: dict) -> dict:
    """The configuration with every default filled in (InputError on unknown
    keys, missing species, bad values)."""
    defaults = NEQUIP_DEFAULTS if kind == "nequip" else MACE_DEFAULTS
    cfg = dict(config)
    cfg.pop("kind", None)
    unknown = set(cfg) - set(defaults) - {"species"}
    if unknown:
        raise InputError(f"unknown key(s) for potential kind {kind!r}: {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(set(defaults) | {'species'}))})")
    species = cfg.get("species")
    if not isinstance(species, (list, tuple)) or not species or not all(isinstance(s, str) for s in species):
        raise InputError(f"{kind} needs 'species', a non-empty list of element symbols, e.g. [\"H\", \"O\"]")
    if len(set(species)) != len(species):
        raise InputError(f"{kind}: species lists an element twice: {species}")
    from ..system import species_from_symbols
    species_from_symbols(species)   # InputError naming an unknown symbol
    out = {"kind": kind, "species": list(species)}
    for key, value in defaults.items():
        out[key] = cfg.get(key, value)
    for key in ("channels", "layers", "n_basis", "radial_hidden", "radial_layers"):
        out[key] = _int(kind, out, key, 1)
    out["l_max"] = _int(kind, out, "l_max", 1, 4)
    out["envelope_exponent"] = _int(kind, out, "envelope_exponent", 2)
    out["seed"] = _int(kind, out, "seed", 0)
    for key in ("cutoff", "avg_num_neighbors"):
        out[key] = _float(kind, out, key)
    out["energy_scale"] = _float(kind, out, "energy_scale", positive=False)
    if kind == "mace":
        out["correlation"] = _int(kind, out, "correlation", 1, 4)
        out["readout_hidden"] = _int(kind, out, "readout_hidden", 1)
    return out


def build_module(cfg: dict) -> nn.Module:
    """The flax module of a resolved nequip/mace configuration."""
    common = dict(n_species=len(cfg["species"]), channels=cfg["channels"], l_max=cfg["l_max"],
                  layers=cfg["layers"], n_basis=cfg["n_basis"], cutoff=cfg["cutoff"],
                  envelope_exponent=cfg["envelope_exponent"], radial_hidden=cfg["radial_hidden"],
                  radial_layers=cfg["radial_layers"], avg_num_neighbors=cfg["avg_num_neighbors"])
    if cfg["kind"] == "nequip":
        return NequIP(**common)
    return MACE(**common, correlation=cfg["correlation"], readout_hidden=cfg["readout_hidden"])


def graph_inputs(positions, context, table, cutoff: float):
    """(idx (N,), senders (E,), receivers (E,), dr (E,3) A, edge_weight (E,))
    from the neighbor list; invalid edges get weight 0 and a harmless vector
    of length 2 x cutoff (finite gradients)."""
    idx = table[context.species]
    valid = idx >= 0
    i, j, dr, mask = pairs(positions, context, full=True)
    dr = dr.astype(positions.dtype)     # a float64 cell must not promote a float32 model
    r2 = jnp.sum(dr * dr, axis=-1)
    ok = mask & valid[i] & valid[j] & (r2 < cutoff ** 2) & (r2 > MIN_EDGE_LENGTH ** 2)
    far = jnp.asarray([2.0 * cutoff, 0.0, 0.0], dtype=dr.dtype)
    dr = jnp.where(ok[:, None], dr, far)
    return idx, j, i, dr, ok.astype(dr.dtype)


def _cast_floats(tree, dtype):
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


_INIT_CACHE: dict = {}


def _jitted_init(cfg: dict):
    """``key -> flax variables`` for a resolved configuration, jitted once per
    configuration (compiling the initialisers costs seconds; models are
    rebuilt from the same configuration by the driver, the ASE calculator
    and model directories)."""
    tag = json.dumps(cfg, sort_keys=True)
    if tag not in _INIT_CACHE:
        module = build_module(cfg)

        @jax.jit
        def init(key):
            # parameter shapes do not depend on the graph: a two-atom dummy suffices
            dr = jnp.asarray([[1.0, 0.3, -0.2], [-1.0, -0.3, 0.2]], jnp.float64)
            return module.init(jax.random.fold_in(key, cfg["seed"]), jnp.zeros(2, jnp.int32),
                               jnp.asarray([1, 0]), jnp.asarray([0, 1]), dr, jnp.ones(2, jnp.float64))

        _INIT_CACHE[tag] = init
    return _INIT_CACHE[tag]


def _equivariant_potential(kind: str, config: dict, system) -> Potential:
    cfg = resolve_config(kind, config)
    if system is not None:
        check_species(system, cfg["species"], kind)
    module = build_module(cfg)
    table = species_index_table(cfg["species"])
    cutoff, scale = cfg["cutoff"], cfg["energy_scale"]

    _init = _jitted_init(cfg)

    def init(key, system=None):
        """flax variables (float64) from ``key`` folded with the config seed."""
        return _init(key)

    def atom_energies(params, positions, context):
        idx, senders, receivers, dr, w = graph_inputs(positions, context, table, cutoff)
        e_atom = module.apply(_cast_floats(params, positions.dtype), idx, senders, receivers, dr, w)
        return jnp.where(idx >= 0, scale * e_atom, 0.0)

    def energy(params, positions, context):
        return esum(atom_energies(params, positions, context))

    return Potential(energy=energy, init=init, cutoff=cutoff, name=kind, config=cfg,
                     atom_energies=atom_energies)


def intermediate_features(potential: Potential, params, positions, context) -> dict:
    """The hidden node features after each layer ({"features_t": IrrepsArray
    (N, irreps)}) of a nequip/mace potential (for equivariance checks)."""
    cfg = potential.config
    module = build_module(cfg)
    table = species_index_table(cfg["species"])
    args = graph_inputs(positions, context, table, cfg["cutoff"])
    _, state = module.apply(_cast_floats(params, positions.dtype), *args, mutable=["intermediates"])
    return {k: v[0] for k, v in state["intermediates"].items()}


def nequip_from_config(config: dict, system) -> Potential:
    """Potential kind "nequip": NequIP message passing (see the module
    docstring for keys and defaults; energies eV, lengths A)."""
    return _equivariant_potential("nequip", config, system)


def mace_from_config(config: dict, system) -> Potential:
    """Potential kind "mace": MACE higher-order message passing (see the
    module docstring for keys and defaults; energies eV, lengths A)."""
    return _equivariant_potential("mace", config, system)
