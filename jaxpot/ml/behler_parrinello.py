"""Behler-Parrinello neural-network potential: atom-centred symmetry
functions and one feed-forward network per element.

J. Behler and M. Parrinello, PRL 98, 146401 (2007); J. Behler, JCP 134,
074106 (2011). Units: lengths A, eta 1/A^2, energies eV.

    E = sum_i  energy_scale * NN_{el(i)}( (G_i - mean_{el(i)}) / std_{el(i)} )

Symmetry functions of atom i (neighbors j, k within the cutoff r_c):
  cutoff   f_c(r)  = 0.5 (cos(pi r / r_c) + 1) for r < r_c, else 0
           (f_c and f_c' vanish at r_c: energy and forces are continuous
           as an atom crosses the cutoff; f_c'' jumps)
  radial   G2_i[e]    = sum_{j of element e} exp(-eta (r_ij - r_s)^2) f_c(r_ij)
  angular  G4_i[e,e'] = 2^(1-zeta) sum_{j<k} (1 + lambda cos theta_ijk)^zeta
                        exp(-eta [(r_ij-r_s)^2 + (r_ik-r_s)^2 + (r_jk-r_s)^2])
                        f_c(r_ij) f_c(r_ik) f_c(r_jk)           ("narrow", n2p2 type 3)
           G5_i[e,e'] = the same without the r_jk factors        ("wide", n2p2 type 9)
  The angular sum runs over unordered neighbor pairs j < k (each triplet
  once, as n2p2 does; Behler 2011 writes sum_{j,k != i}, which is twice
  this), one channel per unordered element pair {e, e'} of (j, k) in the
  order (0,0), (0,1), ..., (1,1), ... of ``species``. Feature vector of an
  atom: [G2 (element-major, then parameter), G4/G5 (pair-major, then
  parameter)], length E * n_radial + E (E + 1) / 2 * n_angular.

Parameter sets (n2p2's ``sfparamgen`` rules; Gastegger et al., JCP 148,
241709 (2018)): a grid r_k = linspace(grid_r_min, grid_r_max, n),
dr = (grid_r_max - grid_r_min) / (n - 1);
  "shifted": r_s = r_k, eta = 1 / (2 dr^2)  (equal-width Gaussians on the grid)
  "centred": r_s = 0,   eta = 1 / (2 r_k^2) (Gaussians at the centre, widths r_k)
Angular sets take each (eta, r_s) of their grid times every zeta in
``zetas`` times lambda in (-1, +1).

Config keys of ``kind = "behler_parrinello"`` (defaults in brackets):
  species        required, list of element symbols, e.g. ["H", "O"]
  cutoff         [6.0] A
  radial         [8] number of radial functions per element, or an explicit
                 list of tables {eta (1/A^2), r_s (A, default 0)}
  radial_grid    ["shifted"] | "centred" (for a count)
  angular        [4] number of angular grid points (0: radial only), or an
                 explicit list of tables {eta, zeta (>= 1), lambda (+1/-1),
                 r_s (default 0), type ("g4"/"g5", default angular_type)}
  angular_grid   ["centred"] | "shifted" (for a count)
  angular_type   ["g4"] | "g5"
  zetas          [[1.0, 4.0]] (for a count; each >= 1)
  grid_r_min     [1.0] A, first grid point;  grid_r_max  [cutoff - 0.5] A
  max_neighbors  neighbors within the cutoff per atom that the angular
                 triplet list holds (a capacity: the features and params do
                 not depend on it). Default: 4/3 pi r_c^3 x 0.12 A^-3 (a
                 dense liquid or solid) rounded up to a multiple of 8. With a
                 system, the default or given value is raised to 1.25 x the
                 neighbors of its most crowded atom + 4 (rounded up to 8)
                 when smaller, so a model fitted on clusters runs on a bulk.
  atom_block     ["auto"] atoms per block of the angular sum (0: all at
                 once); each block is recomputed in the backward pass, so
                 memory goes as block x max_neighbors^2. "auto": 4 on CPU
                 (cache-sized, fastest measured), 512 on GPUs. Results do
                 not depend on it beyond rounding.
  hidden         [[32, 32]] hidden layer widths of each element's network
  activation     ["tanh"] | "silu" | "softplus"
  energy_scale   [1.0] eV, multiplies the network output
  seed           [0] folded into the key given to ``init``

Parameters (a pytree, trainable with optax): ``{"networks": {symbol: flax
Dense params}, "feature_mean": (E, F), "feature_std": (E, F)}``. The
standardisation is identity at ``init``; :func:`standardize_from_data` sets
it from a batch of structures. It enters the energy through
``stop_gradient``, so optimisers leave it alone (exclude it from weight
decay). Per-element reference energies are not part of this model (add a
``kind = "atomic_energies"`` term).

Triplets (static shapes, no O(N^3) tensors): the full pair list
(``pairs(full=True)``) is restricted to pairs within the cutoff, sorted by
the central atom and cut into per-atom rows of ``max_neighbors`` slots; the
triplets are the M (M - 1) / 2 slot pairs j < k of each row, so the cost is
N M^2 / 2 whatever the list capacity. Per triplet only cos theta_ijk and
r_jk are new: the Gaussians and f_c of r_ij, r_ik are per neighbor, each
distinct (eta, r_s) and (zeta, lambda) factor is evaluated once, and the
sum over triplets with the element-pair channels is one batched matmul.
Overflow is never silent: when some atom has more than ``max_neighbors``
neighbors within the cutoff, the energy
(and with it every force and gradient) is NaN, and
:func:`max_neighbor_count` tells how many are needed; given a system, the
factory sizes the capacity for it with a 25% margin for density fluctuations. The
radial functions use the whole pair list and are never truncated.

Helpers for training code: :func:`symmetry_functions` (features),
:func:`max_neighbor_count` (vmap it over a batch to size ``max_neighbors``
before building the model), :func:`standardize_from_data`.

Padding (batched training data): atoms with atomic number 0 (and elements
not in ``species`` when no system was checked) have no energy and are
nobody's neighbor; masked neighbor slots contribute nothing.
"""
from __future__ import annotations

import functools
import json
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from ..config import Key, Table
from ..potentials.base import Context, Potential, check_species, esum
from ..potentials.registry import KindSpec, check_keys
from ..potentials.saved import read_model_config
from ..system import InputError, check_choice, positive_number, species_from_symbols, to_ase
from .acsf import (AUTO_ATOM_BLOCK, GRIDS, _Descriptor, cosine_cutoff, radial_grid,  # noqa: F401
                   symmetry_function_parameters)
from .data_defaults import half_pairs, species_and_scale

NAME = "behler_parrinello"
ACTIVATIONS = {"tanh": jnp.tanh, "silu": jax.nn.silu, "softplus": jax.nn.softplus}
ANGULAR_TYPES = ("g4", "g5")
DENSITY_FOR_MAX_NEIGHBORS = 0.12   # atoms / A^3, for the default max_neighbors

TABLE = Table(f"[potential] kind = '{NAME}'", (
    Key("species", list, doc="elements, one network each (training: the data's)"),
    Key("cutoff", float, 6.0, "A", "symmetry-function cutoff"),
    Key("radial", (int, list), 8, doc="radial functions per element, or explicit tables {eta (1/A^2), r_s (A)}"),
    Key("radial_grid", str, "shifted", choices=GRIDS, doc="grid of a radial count."),
    Key("angular", (int, list), 4, doc="angular grid points (0: none), or explicit tables "
                                       "{eta, zeta, lambda, r_s, type}"),
    Key("angular_grid", str, "centred", choices=GRIDS, doc="grid of an angular count."),
    Key("angular_type", str, "g4", choices=ANGULAR_TYPES, doc="narrow (g4) or wide (g5) angular functions."),
    Key("zetas", list, [1.0, 4.0], doc="angular exponents of an angular count, each >= 1"),
    Key("grid_r_min", float, 1.0, "A", "first grid point"),
    Key("grid_r_max", float, None, "A", "last grid point (auto: cutoff - 0.5)"),
    Key("max_neighbors", int, None, doc="capacity of the angular triplet rows (auto: from a dense-liquid "
                                        "density; training: from the data); raised for a more crowded system"),
    Key("atom_block", (int, str), "auto", doc="atoms per block of the angular sum (0: all; \"auto\": 4 on CPU, "
                                              "512 on GPUs)"),
    Key("hidden", list, [32, 32], doc="hidden layer widths of each element's network"),
    Key("activation", str, "tanh", choices=tuple(ACTIVATIONS), doc="activation of the hidden layers."),
    Key("energy_scale", float, 1.0, "eV", "multiplies the network output (training: the RMS force)"),
    Key("seed", int, 0, doc="folded into the init key"),
), doc="Behler-Parrinello symmetry functions and element networks")
DEFAULTS = TABLE.defaults()
"""key -> default of every key but the required ``species`` (the declaration is :data:`TABLE`)."""


def _number(name, value, *, minimum=None, integer=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"behler_parrinello {name} must be a number, got {value!r}")
    if integer and int(value) != value:
        raise InputError(f"behler_parrinello {name} must be an integer, got {value!r}")
    v = int(value) if integer else float(value)
    if not np.isfinite(v) or (minimum is not None and v < minimum):
        raise InputError(f"behler_parrinello {name} must be >= {minimum}, got {value!r}")
    return v


def _explicit_list(name, entries, keys, required, defaults):
    if not entries:
        raise InputError(f"behler_parrinello {name} list is empty")
    out = []
    for k, e in enumerate(entries):
        if not isinstance(e, dict):
            raise InputError(f"behler_parrinello {name}[{k}] must be a table with keys {', '.join(keys)}")
        unknown = set(e) - set(keys)
        if unknown:
            raise InputError(f"unknown key(s) in behler_parrinello {name}[{k}]: {', '.join(sorted(unknown))}")
        missing = [r for r in required if r not in e]
        if missing:
            raise InputError(f"behler_parrinello {name}[{k}] needs {', '.join(missing)}")
        out.append({**defaults, **e})
    return out


def resolve_config(config: dict, system=None) -> dict:
    """The full configuration of a Behler-Parrinello potential, every default
    filled in and every value checked (InputError naming the problem)."""
    check_keys(NAME, TABLE, config)
    config = dict(config)
    config.pop("kind", None)
    species = config.get("species")
    if not isinstance(species, (list, tuple)) or not species or not all(isinstance(s, str) for s in species):
        raise InputError(f"potential kind '{NAME}' needs 'species', a list of element symbols such as [\"H\", \"O\"]")
    species_from_symbols(species)
    if len(set(species)) != len(species):
        raise InputError(f"behler_parrinello species has duplicates: {', '.join(species)}")
    c = {"species": list(species), **{k: config.get(k, v) for k, v in DEFAULTS.items()}}
    rc = positive_number("behler_parrinello cutoff", c["cutoff"], "A")
    c["cutoff"] = rc
    if c["grid_r_max"] is None:
        c["grid_r_max"] = rc - 0.5
    c["grid_r_min"] = positive_number("behler_parrinello grid_r_min", c["grid_r_min"], "A")
    c["grid_r_max"] = positive_number("behler_parrinello grid_r_max", c["grid_r_max"], "A")
    if not c["grid_r_min"] < c["grid_r_max"] <= rc:
        raise InputError(f"behler_parrinello needs 0 < grid_r_min < grid_r_max <= cutoff, got "
                         f"{c['grid_r_min']}, {c['grid_r_max']}, {rc}")
    check_choice("behler_parrinello radial_grid", c["radial_grid"], GRIDS)
    check_choice("behler_parrinello angular_grid", c["angular_grid"], GRIDS)
    check_choice("behler_parrinello angular_type", c["angular_type"], ANGULAR_TYPES)
    check_choice("behler_parrinello activation", c["activation"], tuple(ACTIVATIONS))
    if not isinstance(c["zetas"], (list, tuple)) or not c["zetas"]:
        raise InputError("behler_parrinello zetas must be a non-empty list of numbers >= 1")
    c["zetas"] = [_number("zeta", z, minimum=1.0) for z in c["zetas"]]

    if isinstance(c["radial"], (list, tuple)):
        rad = _explicit_list("radial", c["radial"], ("eta", "r_s"), ("eta",), {"r_s": 0.0})
        c["radial"] = [{"eta": _number("radial eta", e["eta"], minimum=0.0),
                        "r_s": _number("radial r_s", e["r_s"], minimum=0.0)} for e in rad]
    else:
        c["radial"] = _number("radial (count)", c["radial"], minimum=1, integer=True)
        radial_grid(c["radial"], c["grid_r_min"], c["grid_r_max"], c["radial_grid"])
    if isinstance(c["angular"], (list, tuple)):
        ang = _explicit_list("angular", c["angular"], ("eta", "zeta", "lambda", "r_s", "type"),
                             ("eta", "zeta", "lambda"), {"r_s": 0.0, "type": c["angular_type"]})
        out = []
        for e in ang:
            lam = _number("angular lambda", e["lambda"])
            if lam not in (-1.0, 1.0):
                raise InputError(f"behler_parrinello angular lambda must be +1 or -1, got {e['lambda']!r}")
            check_choice("behler_parrinello angular type", e["type"], ANGULAR_TYPES)
            out.append({"eta": _number("angular eta", e["eta"], minimum=0.0),
                        "zeta": _number("angular zeta", e["zeta"], minimum=1.0), "lambda": lam,
                        "r_s": _number("angular r_s", e["r_s"], minimum=0.0), "type": e["type"]})
        c["angular"] = out
    else:
        c["angular"] = _number("angular (count)", c["angular"], minimum=0, integer=True)
        if c["angular"]:
            radial_grid(c["angular"], c["grid_r_min"], c["grid_r_max"], c["angular_grid"])

    if not isinstance(c["hidden"], (list, tuple)):
        raise InputError("behler_parrinello hidden must be a list of layer widths, e.g. [32, 32]")
    c["hidden"] = [_number("hidden width", h, minimum=1, integer=True) for h in c["hidden"]]
    c["energy_scale"] = positive_number("behler_parrinello energy_scale", c["energy_scale"], "eV")
    c["seed"] = _number("seed", c["seed"], minimum=0, integer=True)
    if c["atom_block"] != "auto":
        c["atom_block"] = _number("atom_block", c["atom_block"], minimum=0, integer=True)

    if system is not None:
        check_species(system, c["species"], NAME)
    need = _most_neighbors(system, rc) if system is not None else 0
    if c["max_neighbors"] is None:
        guess = 4.0 / 3.0 * math.pi * rc ** 3 * DENSITY_FOR_MAX_NEIGHBORS
        c["max_neighbors"] = max(_round8(guess), _round8(1.25 * need + 4))
    else:
        # a capacity, not a model parameter (the features do not depend on it):
        # a system more crowded than the given value raises it
        c["max_neighbors"] = _number("max_neighbors", c["max_neighbors"], minimum=1, integer=True)
        if need > c["max_neighbors"]:
            c["max_neighbors"] = _round8(1.25 * need + 4)
    return {"kind": NAME, **c}


def _round8(x) -> int:
    return int(8 * math.ceil(max(float(x), 1.0) / 8))


def _most_neighbors(system, cutoff: float) -> int:
    """Most neighbors (periodic images included) of one atom within ``cutoff``
    (ASE's neighbor list on the host: no compilation, O(N) with binning)."""
    from ase.neighborlist import neighbor_list as ase_neighbor_list

    i = ase_neighbor_list("i", to_ase(system), cutoff)
    return int(np.bincount(i, minlength=system.n_atoms).max()) if len(i) else 0



# ---------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------

class ElementMLP(nn.Module):
    """Feed-forward network of one element: standardised features (F,) ->
    one atomic energy in units of ``energy_scale``."""

    hidden: tuple
    activation: str = "tanh"
    param_dtype: object = jnp.float64

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for h in self.hidden:
            x = act(nn.Dense(h, param_dtype=self.param_dtype)(x))
        return nn.Dense(1, param_dtype=self.param_dtype)(x)[..., 0]


def _descriptor_of(potential_or_config) -> _Descriptor:
    """The (cached) descriptor of a potential, a model-directory potential
    wrapping one, or a config."""
    cfg = potential_or_config.config if isinstance(potential_or_config, Potential) else potential_or_config
    if cfg.get("kind") == "model":
        cfg = read_model_config(cfg["path"])["potential"]
    if cfg.get("kind") != NAME:
        raise InputError(f"expected a '{NAME}' potential, got kind {cfg.get('kind')!r}")
    return _cached_descriptor(json.dumps(resolve_config(cfg), sort_keys=True))


@functools.lru_cache(maxsize=32)
def _cached_descriptor(config_json: str) -> _Descriptor:
    return _Descriptor(json.loads(config_json))


def symmetry_functions(potential, positions, context: Context):
    """The symmetry-function features (N, F) of a Behler-Parrinello potential
    (or its resolved config) for one structure: lengths A, G dimensionless
    (sums of Gaussians times cutoff functions). Jit-able; NaN rows never
    appear, but features beyond ``max_neighbors`` are truncated (check
    :func:`max_neighbor_count`)."""
    return _descriptor_of(potential).jit(positions, context)[0]


def max_neighbor_count(potential, positions, context: Context):
    """Most neighbors within the cutoff of one real atom (int32 scalar);
    the energy is NaN when this exceeds the config's ``max_neighbors``."""
    return jnp.max(_descriptor_of(potential).jit(positions, context)[1])


def standardize_from_data(potential, params, positions_batch, context_batch: Context):
    """Params with ``feature_mean`` and ``feature_std`` set, per element, from
    a batch of padded structures: positions (B, N, 3) A and a Context whose
    leaves carry the same leading batch axis. Padding atoms (atomic number 0)
    and atoms of other elements are ignored; an element absent from the data
    keeps mean 0 and std 1, and features with (near) zero spread get std 1."""
    desc = _descriptor_of(potential)
    g, _ = desc.batched(jnp.asarray(positions_batch), context_batch)      # (B, N, F)
    g = np.asarray(g, np.float64).reshape(-1, desc.n_features)
    idx = np.asarray(desc.table)[np.asarray(context_batch.species).reshape(-1)]
    mean = np.zeros((desc.n_el, desc.n_features))
    std = np.ones((desc.n_el, desc.n_features))
    for k in range(desc.n_el):
        x = g[idx == k]
        if len(x):
            mean[k] = x.mean(axis=0)
            s = x.std(axis=0)
            std[k] = np.where(s > 1e-8 * (1.0 + np.abs(mean[k])), s, 1.0)
    out = dict(params)
    out["feature_mean"] = jnp.asarray(mean, jnp.asarray(params["feature_mean"]).dtype)
    out["feature_std"] = jnp.asarray(std, jnp.asarray(params["feature_std"]).dtype)
    return out


def behler_parrinello_from_config(config: dict, system) -> Potential:
    """Potential kind "behler_parrinello" (module docstring: keys, defaults,
    units). ``system`` may be None (models built before any structure is
    seen): then its elements and crowding are not checked."""
    cfg = resolve_config(config, system)
    desc = _Descriptor(cfg)
    mlp = ElementMLP(hidden=tuple(cfg["hidden"]), activation=cfg["activation"])
    species = cfg["species"]
    scale = cfg["energy_scale"]

    def init(key, system):
        dtype = jnp.float64 if system is None else system.positions.dtype
        net_init = jax.jit(mlp.clone(param_dtype=dtype).init)   # one compilation for all elements
        keys = jax.random.split(jax.random.fold_in(key, cfg["seed"]), len(species))
        x = jnp.zeros((1, desc.n_features), dtype)
        return {
            "networks": {s: net_init(k, x)["params"] for s, k in zip(species, keys)},
            "feature_mean": jnp.zeros((len(species), desc.n_features), dtype),
            "feature_std": jnp.ones((len(species), desc.n_features), dtype),
        }

    def atom_energies(params, positions, context):
        g, counts = desc(positions, context)
        idx = desc.table[context.species]
        mean = jax.lax.stop_gradient(params["feature_mean"])
        std = jax.lax.stop_gradient(params["feature_std"])
        e_atom = jnp.zeros(positions.shape[0], jnp.result_type(positions.dtype, mean.dtype))
        for k, s in enumerate(species):
            y = mlp.apply({"params": params["networks"][s]}, (g - mean[k]) / std[k])
            e_atom = e_atom + jnp.where(idx == k, y, 0.0)
        # overflow of the static triplet rows: NaN energies and NaN forces, never a silent truncation
        return scale * e_atom * jnp.where(jnp.max(counts) > desc.max_neighbors, jnp.nan, 1.0)

    def energy(params, positions, context):
        return esum(atom_energies(params, positions, context))

    return Potential(energy=energy, init=init, cutoff=cfg["cutoff"], name=NAME, config=cfg,
                     atom_energies=atom_energies)


# ---------------------------------------------------------------------------
# the kind: training hooks and KindSpec
# ---------------------------------------------------------------------------

def _from_data(t: dict, train) -> dict:
    """Defaults from the training structures (``jaxpot.training.data.Labelled``):
    the triplet capacity ``max_neighbors``, ``species`` and ``energy_scale``."""
    t = dict(t)
    if "max_neighbors" not in t:
        # triplet-list capacity from the data (the dense-liquid default is far
        # too large for clusters); MD on denser systems raises it at build time
        rc = float(t.get("cutoff", DEFAULTS["cutoff"]))
        most = max(int(np.bincount(np.concatenate(half_pairs(s, rc)[:2]), minlength=s.n_atoms).max())
                   if s.n_atoms > 1 else 0 for s in train)
        t["max_neighbors"] = int(8 * math.ceil((1.25 * most + 4) / 8))
    return species_and_scale(t, train)


def _fit_params(potential, params, batch):
    """Feature standardisation of the networks from a padded batch of
    training structures (positions A)."""
    return standardize_from_data(potential, params, batch.positions, batch.context)


KIND = KindSpec(name=NAME, factory=behler_parrinello_from_config, table=TABLE, learned=True,
                padded_batches=True, from_data=_from_data, fit_params=_fit_params,
                doc="Behler-Parrinello neural-network potential")
