"""The tables of a ``jaxpot train`` configuration, declared once with
:class:`jaxpot.config.Key` / :class:`jaxpot.config.Table` (type, default,
unit, one-line meaning), and :func:`resolve_train_config`, which fills the
defaults and rejects unknown keys and wrong types (docs/config.md shows
these tables).

    [data]   the labelled structures and their split
    [model]  kind + that kind's keys (any [potential] kind; "sum" with
             ``terms`` for Delta-learning; a term with ``trainable = false``
             is frozen), ``atomic_energies``
    [fit]    the optimisation (FIT_DEFAULTS)
    [output] directory (becomes the model directory)

Units: energies eV, forces eV/A, stress eV/A^3; loss weights are the
inverse squares of those per atom / per component.
"""
from __future__ import annotations

import copy
from typing import Any

from ..config import Key, Table, at_least, non_negative, positive
from ..errors import InputError
from ..mapping import check_batch

SECTIONS = ("data", "model", "fit", "output")


def _fraction(v):
    return None if 0.0 <= v < 1.0 else "must be in [0, 1)"


def _slack(v):
    return None if 1.0 <= v <= 10.0 else "must be a number in [1, 10]"


def _relative(v):
    return None if v in ("auto", True, False) else "must be 'auto', true or false"


def _structure_batch(v):
    check_batch("[fit] structure_batch", v)
    return None


DATA_TABLE = Table("[data]", (
    Key("train", (str, list), doc="labelled extxyz file(s) to train on"),
    Key("validation", (str, list), None, doc="labelled file(s) for validation (else a random fraction of train)"),
    Key("validation_fraction", float, 0.1, check=_fraction,
        doc="fraction of train held out for validation when no validation file is given"),
    Key("test", (str, list), None, doc="labelled file(s) evaluated once at the end"),
    Key("seed", int, 0, doc="seed of the split, of max_train's subset and of the batch shuffling"),
    Key("energy_key", str, None, doc="info key of the reference energy (default: the calculator's)"),
    Key("forces_key", str, None, doc="arrays key of the reference forces (default: the calculator's)"),
    Key("stress_key", str, None, doc="info key of the reference stress (default: the calculator's)"),
    Key("max_train", int, None, check=non_negative, doc="use a seeded subset of this many training structures "
                                                     "(learning curves; 0: all)"),
), doc="the labelled structures and their split")

MODEL_TABLE = Table("[model]", (
    Key("kind", str, doc="any [potential] kind, or \"sum\" with terms"),
    Key("atomic_energies", (str, dict), "fit",
        doc="per-element reference energies: \"fit\" (least squares), \"none\" or a table element -> eV", unit="eV"),
    Key("terms", list, None, doc="the terms of kind = \"sum\"; a term with trainable = false is frozen"),
), doc="the potential to fit: these keys plus the kind's own keys")

FIT_TABLE = Table("[fit]", (
    Key("epochs", int, 500, check=at_least(1), doc="passes over the training set"),
    Key("max_time_minutes", float, 30.0, "min", "wall-clock budget; the best model so far is kept", check=positive),
    Key("batch_size", int, 8, check=at_least(1), doc="structures per step"),
    Key("learning_rate", float, 1e-3, check=positive, doc="peak learning rate (relative step with relative_parameters)"),
    Key("optimizer", str, "adam", choices=("adam", "adamw"), doc="optax optimiser"),
    Key("weight_decay", float, 0.0, check=non_negative, doc="decoupled weight decay (adamw only)"),
    Key("schedule", str, "cosine", choices=("cosine", "constant", "plateau"),
        doc="learning rate after the warm-up"),
    Key("warmup_epochs", float, 5.0, check=non_negative, doc="linear warm-up of the learning rate"),
    Key("min_lr_ratio", float, 0.01, check=non_negative, doc="final / initial learning rate (cosine)"),
    Key("plateau_patience", int, 20, check=at_least(1),
        doc="epochs without improvement before lr *= plateau_factor (plateau)"),
    Key("plateau_factor", float, 0.5, check=positive, doc="learning-rate factor on a plateau"),
    Key("clip_norm", float, 10.0, check=non_negative, doc="global gradient norm clip (0: off)"),
    Key("ema_decay", float, 0.99, check=_fraction, doc="EMA of parameters for evaluation (0: off)"),
    Key("energy_weight", float, 1.0, "(eV/atom)^-2", "loss weight of energies per atom", check=non_negative),
    Key("forces_weight", float, 100.0, "(eV/A)^-2", "loss weight of force components", check=non_negative),
    Key("stress_weight", float, 0.0, "(eV/A^3)^-2", "loss weight of stress components", check=non_negative),
    Key("energy_weight_final", float, None, "(eV/atom)^-2", "energy_weight ramped linearly to this by the last epoch"),
    Key("forces_weight_final", float, None, "(eV/A)^-2", "forces_weight ramped linearly to this by the last epoch"),
    Key("loss", str, "mse", choices=("mse", "huber"), doc="the penalty rho of each error"),
    Key("huber_delta", float, 0.01, "eV/atom, eV/A, eV/A^3", "Huber threshold", check=positive),
    Key("patience", int, 100, check=at_least(1), doc="early stopping: epochs without validation improvement"),
    Key("eval_every", int, 1, check=at_least(1), doc="epochs between validations"),
    Key("checkpoint_every", int, 10, check=at_least(1), doc="epochs between checkpoints"),
    Key("dtype", str, "float64", choices=("float32", "float64"), doc="parameter and batch dtype"),
    Key("seed", int, 0, doc="seed of the parameter initialisation"),
    Key("devices", int, 1, check=at_least(1), doc="data-parallel over this many devices (batch axis sharded)"),
    Key("max_shapes", int, 3, check=at_least(1), doc="distinct padded atom counts (one compilation each; padded)"),
    Key("batching", str, "auto", choices=("auto", "packed", "padded"),
        doc="packed where the model allows it (auto), or padded"),
    Key("pack_slack", float, 1.05, check=_slack,
        doc="packed: slots per batch = slack x batch_size x mean atoms/pairs"),
    Key("structure_batch", int, 0, check=_structure_batch,
        doc="structures vmapped together inside a step (0: the whole batch; 1: one at a time)"),
    Key("relative_parameters", (str, bool), "auto", check=_relative,
        doc="optimise p / |p_initial| (\"auto\": all but ML networks and atomic energies), so the learning "
            "rate is a relative step whatever the units of each parameter"),
), doc="the optimisation")

OUTPUT_TABLE = Table("[output]", (
    Key("directory", str, "runs/fit", doc="the run and model directory"),
), doc="where the model goes")

FIT_DEFAULTS: dict[str, Any] = FIT_TABLE.defaults()
"""``[fit]`` key -> default (the declaration is :data:`FIT_TABLE`)."""
DATA_DEFAULTS: dict[str, Any] = {"train": None, **DATA_TABLE.defaults()}
"""``[data]`` key -> default (``train`` is required)."""


def resolve_train_config(config: dict) -> dict:
    """The training configuration with all defaults filled in (or InputError)."""
    if not isinstance(config, dict):
        raise InputError("the training configuration must be a TOML table")
    unknown = set(config) - set(SECTIONS)
    if unknown:
        raise InputError(f"unknown section(s) in training configuration: {', '.join(sorted(unknown))}")
    data = config.get("data", {})
    if isinstance(data, dict) and not data.get("train"):
        raise InputError("[data] needs 'train' (a labelled extxyz file or a list of files)")
    cfg = {"data": DATA_TABLE.resolve(data),
           "fit": FIT_TABLE.resolve(config.get("fit", {})),
           "output": OUTPUT_TABLE.resolve(config.get("output", {}))}
    model = config.get("model")
    if not isinstance(model, dict) or "kind" not in model:
        raise InputError("[model] needs a 'kind' (behler_parrinello | nequip | mace | kernel | sum | ...)")
    for key in ("kind", "atomic_energies"):     # the kind's own keys are checked by the kind
        if key in model:
            MODEL_TABLE[key].validate(model[key], MODEL_TABLE.name)
    cfg["model"] = copy.deepcopy(model)
    f = cfg["fit"]
    if f["batch_size"] % f["devices"]:
        raise InputError(f"[fit] batch_size {f['batch_size']} must be a multiple of devices {f['devices']}")
    return cfg
