"""Model directories and per-element reference energies.

A model directory (written by ``jaxpot train``; docs/outputs.md) holds
- ``model.toml``: ``[potential]``, the full configuration of the potential
  (any kind, sums included: a Delta-learning baseline + ML model is one
  table), plus ``[model]`` metadata (species, cutoff, units, jaxpot version);
- ``params.msgpack``: the parameters as a flax state dict in msgpack, a
  portable format readable without jaxpot (``flax.serialization``).

Both files are written atomically (:mod:`jaxpot.files`); a truncated or
foreign ``params.msgpack`` is an InputError that names it.
Loading rebuilds the potential from its configuration, initialises a
template of its parameters and fills it from the file, so a file whose
structure does not match the configuration is an error, not a silent mix.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from ..config import Key, Table
from ..files import atomic_write_bytes
from ..system import InputError
from ..tomlio import read_toml, write_toml
from .base import Potential, check_species, esum, species_index_table
from .registry import KindSpec, check_keys

MODEL_FILE = "model.toml"
PARAMS_FILE = "params.msgpack"

MODEL_TABLE = Table("[potential] kind = 'model'", (
    Key("path", str, doc="a model directory written by jaxpot train (model.toml, params.msgpack)"),
), doc="a trained model directory")
ATOMIC_ENERGIES_TABLE = Table("[potential] kind = 'atomic_energies'", (
    Key("energies", dict, unit="eV", doc="reference energy per element, e.g. {H = -13.6, O = -432.0}; "
                                         "E = sum over atoms (trainable)"),
), doc="per-element reference energies")


def save_model(directory, potential_config: dict, params, metadata: dict | None = None) -> Path:
    """Write a model directory (created if needed; existing files replaced).

    ``potential_config`` must rebuild the same potential with
    :func:`jaxpot.potentials.build_potential`; ``params`` its parameters."""
    from .. import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"jaxpot_version": __version__, "units": "metal (eV, A, fs, amu, K, e)"}
    meta.update(metadata or {})
    write_toml(directory / MODEL_FILE, {"model": meta, "potential": potential_config})
    state = serialization.to_state_dict(jax.tree_util.tree_map(np.asarray, params))
    atomic_write_bytes(directory / PARAMS_FILE, serialization.msgpack_serialize(state))
    return directory


def read_model_config(directory) -> dict:
    """The parsed ``model.toml`` of a model directory."""
    directory = Path(directory)
    f = directory / MODEL_FILE
    if not f.is_file():
        raise InputError(f"{directory} is not a jaxpot model directory (no {MODEL_FILE})")
    data = read_toml(f)
    if "potential" not in data:
        raise InputError(f"{f} has no [potential] table")
    return data


def load_params(directory, template):
    """Parameters from ``params.msgpack``, checked against ``template``."""
    f = Path(directory) / PARAMS_FILE
    if not f.is_file():
        raise InputError(f"model directory {directory} has no {PARAMS_FILE}")
    try:
        state = serialization.msgpack_restore(f.read_bytes())
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not a table of parameters")
    except Exception as err:   # msgpack raises many kinds on truncated or foreign bytes
        reason = (str(err).splitlines() or [""])[0] or type(err).__name__
        raise InputError(f"{f} is not a readable parameter file (truncated or damaged: {reason})") from None
    try:
        params = serialization.from_state_dict(template, state)
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{f} does not match the potential in {MODEL_FILE}: {err}") from err
    bad = [(jax.tree_util.keystr(k), np.shape(a), np.shape(b)) for (k, a), b in zip(
        jax.tree_util.tree_flatten_with_path(template)[0], jax.tree_util.tree_leaves(params))
        if np.shape(a) != np.shape(b)]
    if bad:
        raise InputError(f"{f} does not match the potential in {MODEL_FILE}: "
                         f"parameter {bad[0][0]} has shape {bad[0][2]}, expected {bad[0][1]}")
    return jax.tree_util.tree_map(jnp.asarray, params)


def model_from_config(config: dict, system) -> Potential:
    """``kind = "model", path = "runs/fit/model"``: a trained model directory."""
    from . import build_potential

    check_keys("model", MODEL_TABLE, config)
    if "path" not in config:
        raise InputError("potential kind 'model' needs 'path' (a model directory)")
    path = Path(config["path"]).expanduser()
    data = read_model_config(path)
    inner = build_potential(data["potential"], system)
    params = load_params(path, inner.init(jax.random.PRNGKey(0), system))
    return Potential(
        energy=inner.energy, init=lambda key, system: params, cutoff=inner.cutoff,
        name=f"model({inner.name})", translation_invariant=inner.translation_invariant,
        charges=inner.charges, config={"kind": "model", "path": str(path.resolve())},
        neighbor_images=inner.neighbor_images, terms=inner.terms, atom_energies=inner.atom_energies,
    )


def atomic_energies_from_config(config: dict, system) -> Potential:
    """``kind = "atomic_energies", energies = {H = -13.6, O = -432.0}`` (eV):
    E = sum_i E0[element_i], the per-element reference energies of ML
    models (trainable; fitted by least squares before training)."""
    check_keys("atomic_energies", ATOMIC_ENERGIES_TABLE, config)
    energies = config.get("energies")
    if not isinstance(energies, dict) or not energies:
        raise InputError("potential kind 'atomic_energies' needs a table 'energies' (element -> eV)")
    symbols = list(energies)
    if system is not None:
        check_species(system, symbols, "atomic_energies")
    table = species_index_table(symbols)
    e0 = np.asarray([float(energies[s]) for s in symbols])

    def init(key, system):
        return {"energies": jnp.asarray(e0)}

    def atom_energies(params, positions, context):
        idx = table[context.species]
        return jnp.where(idx >= 0, params["energies"][jnp.maximum(idx, 0)], 0.0)

    def energy(params, positions, context):
        return esum(atom_energies(params, positions, context))

    return Potential(energy=energy, init=init, cutoff=0.0, name="atomic_energies", atom_energies=atom_energies,
                     config={"kind": "atomic_energies", "energies": {s: float(v) for s, v in zip(symbols, e0)}})


MODEL_KIND = KindSpec(name="model", factory=model_from_config, table=MODEL_TABLE, doc="a trained model directory")
ATOMIC_ENERGIES_KIND = KindSpec(name="atomic_energies", factory=atomic_energies_from_config,
                                table=ATOMIC_ENERGIES_TABLE, learned=True, padded_batches=True,
                                doc="per-element reference energies")
