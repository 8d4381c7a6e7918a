"""E(3)-equivariant message-passing potentials on e3nn-jax: NequIP and MACE.

Both are flax.linen modules wrapped into the pure contract of :mod:`jaxpot.potentials.base`,
``energy(params, positions A, context) -> eV`` with ``params`` the flax
variables pytree. The model computes in the dtype of ``positions`` (params
are cast to it, so a float32 run is float32 throughout); the sum over atoms
is float64 (:func:`jaxpot.potentials.base.esum`). Forces and stress come from autodiff.

Graph. Directed edges j -> i from the neighbor list, both directions
(``pairs(..., full=True)``), every periodic image within ``cutoff`` (shifts
handle triclinic and small cells); r_ij = r_j - r_i + s @ cell (A). An edge
carries weight 0 (contributes nothing, also to gradients) if its slot is
masked, either end is a padding atom (atomic number 0, or an element not in
``species``), r >= cutoff, or r < 1e-6 A. Messages are summed into the
receiver i with ``jax.ops.segment_sum`` (num_segments = N, static).

The networks: :mod:`jaxpot.ml.nequip` (NequIP, Batzner et al., Nat.
Commun. 13, 2453 (2022)) and :mod:`jaxpot.ml.mace` (MACE, Batatia et al.,
NeurIPS 2022, arXiv:2206.07697), on the shared pieces of
:mod:`jaxpot.ml.equivariant_layers` (Bessel radial basis with a polynomial
envelope, spherical harmonics, the "uvu" convolution, species embedding).
Per-element reference energies are not part of these models (the
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

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..config import Key, Table
from ..potentials.base import Potential, check_species, esum, pairs, species_index_table
from ..potentials.registry import KindSpec, check_keys
from ..system import InputError, species_from_symbols
from .data_defaults import half_pairs, species_and_scale
from .mace import MACE
from .nequip import NequIP

# the keys of both kinds, in the order of the resolved configuration ("layers"
# and "radial_layers" differ: declared per kind below)
_COMMON_KEYS = (
    Key("species", list, doc="elements (training: the data's)"),
    Key("cutoff", float, 5.0, "A", "graph cutoff"),
    Key("channels", int, 32, doc="multiplicity of every l in the hidden features"),
    Key("l_max", int, 2, doc="largest l of the spherical harmonics and hidden features, 1..4"),
    Key("n_basis", int, 8, doc="Bessel radial functions"),
    Key("envelope_exponent", int, 6, doc="p of the polynomial envelope, >= 2"),
    Key("radial_hidden", int, 64, doc="neurons per hidden layer of the radial MLP"),
    Key("avg_num_neighbors", float, 10.0, doc="messages are divided by it (training: the data's mean)"),
    Key("energy_scale", float, 1.0, "eV", "multiplies every atomic energy (training: the RMS force)"),
    Key("seed", int, 0, doc="folded into the init key"),
)
NEQUIP_TABLE = Table("[potential] kind = 'nequip'", _COMMON_KEYS + (
    Key("layers", int, 3, doc="interaction blocks"),
    Key("radial_layers", int, 2, doc="hidden layers of the radial MLP"),
), doc="NequIP message passing")
MACE_TABLE = Table("[potential] kind = 'mace'", _COMMON_KEYS + (
    Key("layers", int, 2, doc="interaction blocks"),
    Key("radial_layers", int, 3, doc="hidden layers of the radial MLP"),
    Key("correlation", int, 3, doc="body order minus one, 1..4"),
    Key("readout_hidden", int, 16, doc="neurons of the last readout MLP"),
), doc="MACE higher-order message passing")
TABLES = {"nequip": NEQUIP_TABLE, "mace": MACE_TABLE}

COMMON_DEFAULTS = Table("common", _COMMON_KEYS).defaults()
NEQUIP_DEFAULTS = NEQUIP_TABLE.defaults()
MACE_DEFAULTS = MACE_TABLE.defaults()
"""key -> default of every key but the required ``species`` (declared in :data:`MACE_TABLE`)."""

MIN_EDGE_LENGTH = 1e-6   # A; coincident atoms are not neighbours (direction undefined)

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
    check_keys(kind, TABLES[kind], config)
    cfg = dict(config)
    cfg.pop("kind", None)
    species = cfg.get("species")
    if not isinstance(species, (list, tuple)) or not species or not all(isinstance(s, str) for s in species):
        raise InputError(f"{kind} needs 'species', a non-empty list of element symbols, e.g. [\"H\", \"O\"]")
    if len(set(species)) != len(species):
        raise InputError(f"{kind}: species lists an element twice: {species}")
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


# ---------------------------------------------------------------------------
# the kinds: training hooks and KindSpecs
# ---------------------------------------------------------------------------

def _from_data(defaults: dict):
    def from_data(t: dict, train) -> dict:
        """Defaults from the training structures (``jaxpot.training.data.Labelled``):
        ``avg_num_neighbors`` within the cutoff, ``species``, ``energy_scale``."""
        t = dict(t)
        if "avg_num_neighbors" not in t:
            # messages are divided by the mean neighbor count of the training data (as MACE does)
            rc = float(t.get("cutoff", defaults["cutoff"]))
            pairs_total = sum(2 * len(half_pairs(s, rc)[0]) for s in train)
            t["avg_num_neighbors"] = float(max(pairs_total / sum(s.n_atoms for s in train), 1.0))
        return species_and_scale(t, train)
    return from_data


NEQUIP_KIND = KindSpec(name="nequip", factory=nequip_from_config, table=NEQUIP_TABLE, learned=True,
                       padded_batches=True, from_data=_from_data(NEQUIP_DEFAULTS), doc="NequIP message passing")
MACE_KIND = KindSpec(name="mace", factory=mace_from_config, table=MACE_TABLE, learned=True,
                     padded_batches=True, from_data=_from_data(MACE_DEFAULTS),
                     doc="MACE higher-order message passing")
