"""The model that ``jaxpot train`` fits, set up from [model] and the data:
the [potential] table (per-element reference energies added, data-dependent
defaults of each kind), the data-dependent initialisation of parameters,
the refit of per-element offsets and the optimiser's parameter scales.

Each kind's data hooks come from its KindSpec (:func:`jaxpot.potentials.registry.spec`); nothing
here names a kind except ``atomic_energies``, the baseline term that
training itself adds.

Per-element reference energies (eV) by least squares (an
``atomic_energies`` term, trainable); for ML models without an explicit
``energy_scale`` the RMS of the reference force components (eV/A) as scale
(as in MACE); both are stored in the model directory's configuration.
"""
from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import InputError
from ..potentials import build_potential, registry
from .data import Batcher, Labelled, dataset_species, element_counts, fit_atomic_energies, make_batch, pad_size
from .predict import make_predict


def _terms(model: dict) -> list[dict]:
    return model["terms"] if model["kind"] == "sum" else [model]


def potential_config(model: dict, train: list[Labelled], forces_available: bool) -> tuple[dict, list[bool]]:
    """The [potential] table to train (atomic energies added, scales set from
    data) and which of its terms are trainable."""
    model = copy.deepcopy(model)
    e0_spec = model.pop("atomic_energies", "fit")
    species = dataset_species(train)
    terms, trainable = [], []
    for t in _terms(model):
        t = dict(t)
        trainable.append(bool(t.pop("trainable", True)))
        spec = registry.spec(t["kind"]) if "kind" in t else None
        if spec is not None and spec.from_data is not None:
            t = spec.from_data(t, train)
        terms.append(t)
    if e0_spec == "none" or e0_spec is None:
        pass
    else:
        if e0_spec == "fit":
            e0 = fit_atomic_energies(train, species)
        elif isinstance(e0_spec, dict):
            missing = set(species) - set(e0_spec)
            if missing:
                raise InputError(f"[model] atomic_energies lacks element(s) {', '.join(sorted(missing))}")
            e0 = {s: float(e0_spec[s]) for s in species}
        else:
            raise InputError("[model] atomic_energies must be 'fit', 'none' or a table element -> eV")
        # a learned baseline (other terms) shifts the offsets: refit them to the residual later
        terms.insert(0, {"kind": "atomic_energies", "energies": e0})
        trainable.insert(0, True)
    if len(terms) == 1:
        return terms[0], trainable
    return {"kind": "sum", "terms": terms}, trainable


def _dtype(name):
    return jnp.float32 if name == "float32" else jnp.float64


def cast(tree, dtype):
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _pads(pot_config: dict) -> bool:
    """Every term takes padded batches of structures of any size."""
    return all("kind" in t and registry.spec(t["kind"]).padded_batches for t in _terms(pot_config))


def refit_offsets(pot, params, batcher: Batcher, use_stress: bool):
    """Per-element offsets fitted to E_ref - E_rest (the other terms at their
    initial parameters), so training starts from zero mean energy error."""
    zero = (jax.tree_util.tree_map(jnp.zeros_like, params[0]),) + tuple(params[1:])
    predict = jax.jit(make_predict(pot, False))
    resid, structs = [], []
    symbols = list(pot.config["terms"][0]["energies"])
    for members, batch in zip(batcher.plan(None), batcher.batches(None)):
        e, _, _ = predict(zero, batch)
        resid.append(np.asarray(batch.energy - e)[:len(members)])
        structs += [batcher.structures[k] for k in members]
    counts = element_counts(structs, symbols)
    sol, *_ = np.linalg.lstsq(counts, np.concatenate(resid), rcond=None)
    e0 = params[0]["energies"]
    return (dict(params[0], energies=jnp.asarray(sol, e0.dtype)),) + tuple(params[1:])


def parameter_scales(pcfg: dict, params, mode):
    """Per-parameter scales for the optimiser (see ``relative_parameters``):
    |initial value| (1 where it is 0) for physics terms, 1 for learned kinds
    (ML networks, atomic energies); all ones with ``false``, all relative with
    ``true``."""
    if mode not in ("auto", True, False):
        raise InputError(f"[fit] relative_parameters must be 'auto', true or false, got {mode!r}")

    def rel(tree):
        return jax.tree_util.tree_map(lambda p: jnp.where(jnp.abs(p) > 0, jnp.abs(p), 1.0).astype(p.dtype), tree)

    def ones(tree):
        return jax.tree_util.tree_map(jnp.ones_like, tree)

    if mode is True:
        return rel(params)
    if mode is False:
        return ones(params)
    terms = _terms(pcfg)
    single = pcfg["kind"] != "sum"
    parts = [params] if single else list(params)
    out = [ones(p) if registry.spec(t["kind"]).learned else rel(p) for t, p in zip(terms, parts)]
    return out[0] if single else tuple(out)


def statistics_batch(batcher: Batcher, size: int = 64):
    """One padded batch of up to ``size`` training structures (a seeded
    sample) for data-dependent initialisation."""
    structs = batcher.structures
    pick = np.sort(np.random.default_rng([batcher.seed, 2]).permutation(len(structs))[:size])
    sample = [structs[k] for k in pick]
    n_pad = max(pad_size(s.n_atoms) for s in sample)
    k_pad = max([64] + [int(batcher._npairs[k]) for k in pick])       # pair lists the batcher holds
    return make_batch(sample, batcher.cutoff, n_pad, k_pad, len(sample), batcher.dtype, batcher._pairs)


def data_dependent_init(pot, pcfg, params, batcher: Batcher):
    """The ``fit_params`` hooks of the model's kinds (statistics set from
    data, e.g. feature standardisation) before training."""
    terms = _terms(pcfg)
    single = pcfg["kind"] != "sum"
    out = list(params) if not single else [params]
    batch = None
    for k, t in enumerate(terms):
        hook = registry.spec(t["kind"]).fit_params
        if hook is not None:
            batch = batch or statistics_batch(batcher)
            out[k] = hook(build_potential(t, None), out[k], batch)
    return out[0] if single else tuple(out)
