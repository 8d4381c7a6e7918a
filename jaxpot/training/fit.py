"""Fitting any jaxpot potential to energies, forces and stress with optax.

``jaxpot train CONFIG.toml`` (../shared/API.md) runs :func:`train`:

    [data]   train, validation (file) or validation_fraction, test, seed,
             energy_key / forces_key / stress_key, max_train (learning curves)
    [model]  kind + that kind's keys (any [potential] kind; "sum" with
             ``terms`` for Delta-learning; a term with ``trainable = false``
             is frozen), ``atomic_energies = "fit" | "none" | {H = .., O = ..}``
    [fit]    see FIT_DEFAULTS
    [output] directory (becomes the model directory)

Loss (per batch of B structures, weights w_b = 1 for real structures):
    L = w_E <rho((E - E_ref) / N_atoms)> + w_F <rho(F - F_ref)>_components
        + w_S <rho(sigma - sigma_ref)>_components
with rho the square (``loss = "mse"``) or the Huber function. Units: eV/atom,
eV/A, eV/A^3; the default weights (1, 100) follow MACE.

Before training: per-element reference energies by least squares (an
``atomic_energies`` term, trainable), and for ML models without an explicit
``energy_scale`` the RMS of the reference force components (eV/A) as scale
(as in MACE); both are stored in the model directory's configuration.

The step is one jitted function of (state, batch, learning rate, loss
weights); the learning rate is computed on the host per step (warm-up, then
cosine or constant, or reduced on a validation plateau) and injected with
``optax.inject_hyperparams``, so schedules never recompile. Parameters keep
an exponential moving average (EMA) used for validation and for the saved
model. Early stopping on the validation force RMSE; the best EMA parameters
are written to the model directory whenever they improve, so an interrupted
run still leaves a usable model. Checkpoints hold everything needed for an
exact resume (``jaxpot train --restart DIR``).
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import io
from ..potentials import build_potential
from ..potentials.base import energy_and_forces, energy_forces_stress
from ..potentials.saved import save_model
from ..system import InputError, check_choice, positive_number
from .data import (Batcher, Labelled, PackedBatch, PackedBatcher, dataset_species, fit_atomic_energies,
                   read_labelled, split_indices)

ML_KINDS = ("behler_parrinello", "nequip", "mace")
PADDING_KINDS = ML_KINDS + ("atomic_energies", "gaussian_electrostatics", "kernel")

DATA_DEFAULTS = {"train": None, "validation": None, "validation_fraction": 0.1, "test": None,
                 "seed": 0, "energy_key": None, "forces_key": None, "stress_key": None,
                 "max_train": None}

FIT_DEFAULTS = {
    "epochs": 500,                 # passes over the training set
    "max_time_minutes": 30.0,      # wall-clock budget; the best model so far is kept
    "batch_size": 8,               # structures per step
    "learning_rate": 1e-3,
    "optimizer": "adam",           # adam | adamw
    "weight_decay": 0.0,           # adamw only
    "schedule": "cosine",          # cosine | constant | plateau
    "warmup_epochs": 5.0,          # linear warm-up of the learning rate
    "min_lr_ratio": 0.01,          # final / initial learning rate (cosine)
    "plateau_patience": 20,        # epochs without improvement before lr *= plateau_factor
    "plateau_factor": 0.5,
    "clip_norm": 10.0,             # global gradient norm clip (0: off)
    "ema_decay": 0.99,             # EMA of parameters for evaluation (0: off)
    "energy_weight": 1.0,          # (eV/atom)^-2
    "forces_weight": 100.0,        # (eV/A)^-2
    "stress_weight": 0.0,          # (eV/A^3)^-2
    "energy_weight_final": None,   # weights ramped linearly to these by the last epoch
    "forces_weight_final": None,
    "loss": "mse",                 # mse | huber
    "huber_delta": 0.01,           # eV/atom, eV/A, eV/A^3
    "patience": 100,               # early stopping: epochs without validation improvement
    "eval_every": 1,               # epochs between validations
    "checkpoint_every": 10,        # epochs between checkpoints
    "dtype": "float64",            # float32 | float64
    "seed": 0,
    "devices": 1,                  # data-parallel over this many devices (batch axis sharded)
    "max_shapes": 3,               # distinct padded atom counts (one compilation each; padded)
    "batching": "auto",            # packed | padded | auto (packed where the model allows it)
    "pack_slack": 1.05,            # packed: slots per batch = slack x batch_size x mean atoms/pairs
    "structure_batch": 0,          # structures vmapped together inside a step (0: the whole
                                   # batch; 1: one at a time, in a sequential map)
    "relative_parameters": "auto", # optimise p / |p_initial| (physics terms; "auto": all but ML
                                   # networks and atomic energies), so the learning rate is a
                                   # relative step whatever the units of each parameter
}


def resolve_train_config(config: dict) -> dict:
    """The training configuration with all defaults filled in (or InputError)."""
    if not isinstance(config, dict):
        raise InputError("the training configuration must be a TOML table")
    unknown = set(config) - {"data", "model", "fit", "output"}
    if unknown:
        raise InputError(f"unknown section(s) in training configuration: {', '.join(sorted(unknown))}")
    cfg = {"data": dict(DATA_DEFAULTS), "fit": dict(FIT_DEFAULTS), "output": {"directory": "runs/fit"}}
    for sec in ("data", "fit", "output"):
        user = config.get(sec, {})
        allowed = set(cfg[sec])
        bad = set(user) - allowed
        if bad:
            raise InputError(f"unknown key(s) in [{sec}]: {', '.join(sorted(bad))}")
        cfg[sec].update(user)
    if not cfg["data"]["train"]:
        raise InputError("[data] needs 'train' (a labelled extxyz file or a list of files)")
    model = config.get("model")
    if not isinstance(model, dict) or "kind" not in model:
        raise InputError("[model] needs a 'kind' (behler_parrinello | nequip | mace | kernel | sum | ...)")
    cfg["model"] = copy.deepcopy(model)
    f = cfg["fit"]
    for key in ("epochs", "batch_size", "patience", "eval_every", "checkpoint_every", "devices", "max_shapes"):
        if not isinstance(f[key], int) or f[key] < 1:
            raise InputError(f"[fit] {key} must be a positive integer, got {f[key]!r}")
    positive_number("[fit] learning_rate", f["learning_rate"], "")
    positive_number("[fit] max_time_minutes", f["max_time_minutes"], "min")
    check_choice("[fit] optimizer", f["optimizer"], ("adam", "adamw"))
    check_choice("[fit] schedule", f["schedule"], ("cosine", "constant", "plateau"))
    check_choice("[fit] loss", f["loss"], ("mse", "huber"))
    check_choice("[fit] dtype", f["dtype"], ("float32", "float64"))
    check_choice("[fit] batching", f["batching"], ("auto", "packed", "padded"))
    if not isinstance(f["pack_slack"], (int, float)) or not 1.0 <= f["pack_slack"] <= 10.0:
        raise InputError(f"[fit] pack_slack must be a number in [1, 10], got {f['pack_slack']!r}")
    if not 0.0 <= f["ema_decay"] < 1.0:
        raise InputError(f"[fit] ema_decay must be in [0, 1), got {f['ema_decay']}")
    for key in ("energy_weight", "forces_weight", "stress_weight"):
        if f[key] < 0:
            raise InputError(f"[fit] {key} must be >= 0")
    from ..mapping import check_batch
    check_batch("[fit] structure_batch", f["structure_batch"])
    if f["batch_size"] % f["devices"]:
        raise InputError(f"[fit] batch_size {f['batch_size']} must be a multiple of devices {f['devices']}")
    return cfg


# --------------------------------------------------------------------------- model setup

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
        if t.get("kind") == "behler_parrinello" and "max_neighbors" not in t:
            # triplet-list capacity from the data (the dense-liquid default is far
            # too large for clusters); MD on denser systems raises it at build time
            from ..potentials.behler_parrinello import DEFAULTS as BP_DEFAULTS
            from .data import half_pairs

            rc = float(t.get("cutoff", BP_DEFAULTS["cutoff"]))
            most = max(int(np.bincount(np.concatenate(half_pairs(s, rc)[:2]), minlength=s.n_atoms).max())
                       if s.n_atoms > 1 else 0 for s in train)
            t["max_neighbors"] = int(8 * math.ceil((1.25 * most + 4) / 8))
        if t.get("kind") in ("nequip", "mace") and "avg_num_neighbors" not in t:
            # messages are divided by the mean neighbor count of the training data (as MACE does)
            from .data import half_pairs

            rc = float(t.get("cutoff", 5.0))
            pairs_total = sum(2 * len(half_pairs(s, rc)[0]) for s in train)
            t["avg_num_neighbors"] = float(max(pairs_total / sum(s.n_atoms for s in train), 1.0))
        if t.get("kind") in ML_KINDS:
            t.setdefault("species", species)
            if "energy_scale" not in t and forces_available:
                f = np.concatenate([s.forces.ravel() for s in train if s.forces is not None])
                t["energy_scale"] = float(max(np.sqrt(np.mean(f * f)), 1e-3))
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


def _system_for(structure: Labelled):
    from ..system import from_ase

    return from_ase(_atoms(structure))


def _pads(pot_config: dict) -> bool:
    return all(t.get("kind") in PADDING_KINDS for t in _terms(pot_config))


# --------------------------------------------------------------------------- loss and metrics

def _rho(x, loss: str, delta: float):
    if loss == "huber":
        return optax.huber_loss(x, delta=delta) * 2.0   # = x^2 for |x| < delta
    return x * x


def packed_predict(pot, use_stress: bool):
    """``(params, PackedBatch) -> (E (B,) eV, F (Na, 3) eV/A, stress (B, 3, 3)
    eV/A^3 or None)`` from the potential's per-atom energies: one call on the
    packed graph, structure energies by segment sums, forces by one gradient
    (the structures are disjoint) and each structure's stress from its own
    homogeneous strain, applied to its atoms and pair shifts."""
    if pot.atom_energies is None:
        raise InputError(f"potential {pot.name!r} has no per-atom energies; it needs [fit] batching = 'padded'")

    def total(params, positions, strain, batch):
        b = batch.energy.shape[0]
        ctx = batch.context
        if strain is not None:
            sym = 0.5 * (strain + jnp.swapaxes(strain, 1, 2))
            eye = jnp.eye(3, dtype=positions.dtype)
            deform = jnp.concatenate([eye + sym.astype(positions.dtype), eye[None]])   # padding: identity
            positions = jnp.einsum("nij,nj->ni", deform[batch.atom_structure], positions)
            nbr = ctx.neighbors
            shifts = jnp.einsum("kij,kj->ki", deform[batch.pair_structure], nbr.shifts.astype(positions.dtype))
            ctx = ctx.replace(neighbors=nbr.replace(shifts=shifts))
        ea = pot.atom_energies(params, positions, ctx).astype(jnp.float64)
        e = jax.ops.segment_sum(ea, batch.atom_structure, num_segments=b + 1)[:b]
        return jnp.sum(e), e

    def predict(params, batch):
        x = batch.positions
        if use_stress:
            zero = jnp.zeros(batch.stress.shape, x.dtype)
            (_, e), (gx, gs) = jax.value_and_grad(total, argnums=(1, 2), has_aux=True)(params, x, zero, batch)
            return e, -gx, gs / batch.volume[:, None, None]
        (_, e), gx = jax.value_and_grad(total, argnums=1, has_aux=True)(params, x, None, batch)
        return e, -gx, None

    return predict


def make_predict(pot, use_stress: bool, structure_batch: int = 0, groups: int = 1):
    """``(params, batch) -> (E (B,), F (B, Np, 3), stress (B, 3, 3) or None)``.

    The structures of a batch are mapped with :func:`jaxpot.mapping.map_leading`
    (``structure_batch`` vmapped together per sequential step, 0 = the whole
    batch; ``groups`` = devices the batch axis is sharded over). Packed
    batches (:class:`PackedBatch`) go through :func:`packed_predict` instead
    (F is then (Na, 3))."""
    from ..mapping import map_leading

    fn = energy_forces_stress(pot) if use_stress else energy_and_forces(pot)
    packed = packed_predict(pot, use_stress) if pot.atom_energies is not None else None

    def predict(params, batch):
        if isinstance(batch, PackedBatch):
            return packed(params, batch)
        # automatic: the whole batch vmapped on every backend. On CPU, mapping
        # structures one by one (structure_batch = 1) made MACE epochs ~12% faster
        # but compiled ~15 s longer (experiments/README.md, training): worth it
        # for long fits, not for short ones
        out = map_leading(lambda x, c: fn(params, x, c), batch.positions, batch.context,
                          batch=structure_batch, groups=groups, gathers=False)
        return out[0], out[1], (out[2] if use_stress else None)

    return predict


def force_mask(batch):
    """Atoms whose reference forces enter the loss: real atoms of structures
    with forces ((B, Np) for padded batches, (Na,) for packed ones)."""
    if isinstance(batch, PackedBatch):
        has = jnp.concatenate([batch.has_forces, jnp.zeros(1, bool)])[batch.atom_structure]
        return (batch.context.species > 0) & has
    return (batch.context.species > 0) & batch.has_forces[:, None]


def error_sums(batch, e, f, s):
    """Sums for MAE/RMSE of energy per atom, force and stress components."""
    w = batch.weight
    de = (e - batch.energy) / batch.n_atoms
    atom = force_mask(batch)
    df = jnp.where(atom[..., None], f - batch.forces, 0.0)
    out = {
        "n_e": jnp.sum(w), "e_abs": jnp.sum(w * jnp.abs(de)), "e_sq": jnp.sum(w * de * de),
        "n_f": 3.0 * jnp.sum(atom), "f_abs": jnp.sum(jnp.abs(df)), "f_sq": jnp.sum(df * df),
    }
    if s is not None:
        ws = (w * batch.has_stress)[:, None, None]
        ds = (s - batch.stress) * ws
        out.update(n_s=9.0 * jnp.sum(ws), s_abs=jnp.sum(jnp.abs(ds)), s_sq=jnp.sum(ds * ds))
    return out


def errors_from_sums(t: dict) -> dict:
    """The API's error keys (eV/atom, eV/A; stress eV/A^3 when labelled)."""
    def safe(a, n):
        return float(a / n) if n > 0 else float("nan")

    out = {
        "energy_mae_eV_per_atom": safe(t["e_abs"], t["n_e"]),
        "energy_rmse_eV_per_atom": math.sqrt(safe(t["e_sq"], t["n_e"])) if t["n_e"] else float("nan"),
        "forces_mae_eV_per_A": safe(t["f_abs"], t["n_f"]),
        "forces_rmse_eV_per_A": math.sqrt(safe(t["f_sq"], t["n_f"])) if t["n_f"] else float("nan"),
    }
    if t.get("n_s", 0) > 0:
        out["stress_mae_eV_per_A3"] = safe(t["s_abs"], t["n_s"])
        out["stress_rmse_eV_per_A3"] = math.sqrt(safe(t["s_sq"], t["n_s"]))
    return out


def make_loss(predict, loss: str, delta: float):
    def loss_fn(params, batch, weights):
        e, f, s = predict(params, batch)
        w = batch.weight
        de = (e - batch.energy) / batch.n_atoms
        le = jnp.sum(w * _rho(de, loss, delta)) / jnp.maximum(jnp.sum(w), 1.0)
        atom = force_mask(batch)
        rf = jnp.where(atom[..., None], _rho(f - batch.forces, loss, delta), 0.0)
        lf = jnp.sum(rf) / jnp.maximum(3.0 * jnp.sum(atom), 1.0)
        total = weights[0] * le + weights[1] * lf
        if s is not None:
            ws = (w * batch.has_stress)[:, None, None]
            ls = jnp.sum(ws * _rho(s - batch.stress, loss, delta)) / jnp.maximum(9.0 * jnp.sum(ws), 1.0)
            total = total + weights[2] * ls
        return total.astype(jnp.float64), error_sums(batch, e, f, s)
    return loss_fn


def evaluate(predict_jit, params, batcher: Batcher) -> dict:
    """Errors of ``params`` on every structure of ``batcher`` (API keys)."""
    tot = None
    for batch in batcher.batches(None):
        e, f, s = predict_jit(params, batch)
        sums = {k: float(v) for k, v in error_sums(batch, e, f, s).items()}
        tot = sums if tot is None else {k: tot[k] + sums[k] for k in tot}
    out = errors_from_sums(tot)
    out["structures"] = len(batcher.structures)
    return out


# --------------------------------------------------------------------------- optimiser

def _decay_mask(params):
    """Weight decay applies to network weights, not to statistics (feature
    standardisation) or physical parameters stored beside them."""
    def keep(path, _):
        names = {str(getattr(k, "key", getattr(k, "name", k))) for k in path}
        return not names & {"feature_mean", "feature_std"}
    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(f: dict, trainable_mask):
    def build(learning_rate):
        if f["optimizer"] == "adamw":
            base = optax.adamw(learning_rate, weight_decay=f["weight_decay"], mask=_decay_mask)
        else:
            base = optax.adam(learning_rate)
        parts = []
        if f["clip_norm"] and f["clip_norm"] > 0:
            parts.append(optax.clip_by_global_norm(f["clip_norm"]))
        parts.append(base)
        tx = optax.chain(*parts)
        if trainable_mask is not None:
            labels = jax.tree_util.tree_map(lambda t: "train" if t else "frozen", trainable_mask)
            tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
        return tx
    return optax.inject_hyperparams(build)(learning_rate=f["learning_rate"])


def learning_rate(f: dict, step: int, total_steps: int, warmup_steps: int, plateau_scale: float) -> float:
    lr = f["learning_rate"]
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if f["schedule"] == "cosine":
        span = max(total_steps - warmup_steps, 1)
        x = min(max(step - warmup_steps, 0) / span, 1.0)
        r = f["min_lr_ratio"]
        return lr * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * x)))
    if f["schedule"] == "plateau":
        return lr * plateau_scale
    return lr


def loss_weights(f: dict, epoch: int) -> np.ndarray:
    x = epoch / max(f["epochs"] - 1, 1)
    out = []
    for key in ("energy_weight", "forces_weight", "stress_weight"):
        final = f.get(key + "_final")
        out.append(f[key] if final is None else f[key] + (final - f[key]) * x)
    return np.asarray(out, np.float64)


# --------------------------------------------------------------------------- the training run

def _mesh(n: int):
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devs = jax.devices()
    if n > len(devs):
        raise InputError(f"[fit] devices = {n} but only {len(devs)} device(s) are available")
    mesh = Mesh(np.asarray(devs[:n]), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())


def _kernel_train(cfg, train):
    from ..potentials import kernels

    model = dict(cfg["model"])
    model.pop("atomic_energies", None)
    t0 = time.perf_counter()
    atoms = [_atoms(s) for s in train]
    pcfg, params = kernels.fit_kernel(model, atoms, np.asarray([s.energy for s in train]),
                                      [s.forces for s in train])
    return pcfg, params, time.perf_counter() - t0


def _atoms(s: Labelled):
    from ase import Atoms

    return Atoms(numbers=s.numbers, positions=s.positions, cell=s.cell, pbc=s.pbc)


def batching_mode(pot, mode: str, pads: bool, devices: int = 1) -> str:
    """``"packed"`` or ``"padded"`` for ``[fit] batching`` (``"auto"``: packed
    where the potential has per-atom energies, is not built for one system
    and the batch is not sharded over devices)."""
    why = None
    if pot.atom_energies is None:
        why = f"potential {pot.config.get('kind', pot.name)!r} has no per-atom energies (only local models do)"
    elif not pads:
        why = "the potential is built for one system"
    elif devices > 1:
        why = "batches sharded over devices are padded"
    if mode == "packed" and why:
        raise InputError(f"[fit] batching = 'packed' is not possible: {why}")
    if mode == "auto":
        return "padded" if why else "packed"
    return mode


def make_batcher(mode: str, structures, *, cutoff, batch_size, dtype=np.float64, seed=0, pad=True,
                 max_shapes=3, slack=1.05, budget=None):
    """A :class:`PackedBatcher` (mode "packed") or a padded :class:`Batcher`."""
    if mode == "packed":
        return PackedBatcher(structures, cutoff, batch_size, dtype=dtype, seed=seed, slack=slack, budget=budget)
    return Batcher(structures, cutoff=cutoff, batch_size=batch_size, dtype=dtype, seed=seed, pad=pad,
                   max_shapes=max_shapes)


def load_splits(cfg: dict, base_dir: Path | None = None):
    d = cfg["data"]
    keys = dict(energy_key=d["energy_key"], forces_key=d["forces_key"], stress_key=d["stress_key"],
                base_dir=base_dir)
    data = read_labelled(d["train"], **keys)
    if d["validation"]:
        train, val = data, read_labelled(d["validation"], **keys)
    else:
        it, iv = split_indices(len(data), d["validation_fraction"], d["seed"])
        train, val = [data[k] for k in it], [data[k] for k in iv]
    if d["max_train"]:
        sub = np.random.default_rng([d["seed"], 1]).permutation(len(train))[: int(d["max_train"])]
        train = [train[k] for k in np.sort(sub)]
    test = read_labelled(d["test"], **keys) if d["test"] else []
    return train, val, test


def train(config: dict, *, overwrite: bool = False, restart: str | None = None, progress: bool = True,
          base_dir: Path | None = None, log=print) -> dict:
    """Fit a model (see the module docstring); returns summary.json's content."""
    if restart is not None:
        out_dir = Path(restart)
        if not (out_dir / "train_config.toml").is_file():
            raise InputError(f"{out_dir} is not a training directory (no train_config.toml)")
        cfg = resolve_train_config(io.read_toml(out_dir / "train_config.toml"))
        state_meta = io.load_checkpoint(out_dir / "checkpoint")
    else:
        cfg = resolve_train_config(config)
        out_dir = io.prepare_directory(cfg["output"]["directory"], overwrite=overwrite)
        state_meta = None
    f = cfg["fit"]
    train_set, val_set, test_set = load_splits(cfg, base_dir)
    if not val_set:
        log("note: no validation set; early stopping and best-model selection use the training set")
    t_start = time.perf_counter()

    if cfg["model"]["kind"] == "kernel":
        io.write_toml(out_dir / "train_config.toml", cfg)
        pcfg, params, seconds = _kernel_train(cfg, train_set)
        pot = build_potential(pcfg, None)
        save_model(out_dir, pcfg, params, {"cutoff": pot.cutoff, "species": dataset_species(train_set)})
        return _finish(cfg, out_dir, pot, params, train_set, val_set, test_set, history=[],
                       seconds=seconds, extra={"epochs": 0})

    forces_available = any(s.forces is not None for s in train_set)
    pcfg, trainable = potential_config(cfg["model"], train_set, forces_available)
    pads = _pads(pcfg)
    system0 = _system_for(train_set[0])
    pot = build_potential(pcfg, None if pads else system0)
    pcfg = pot.config
    dtype = _dtype(f["dtype"])
    if not pads:
        sizes = {s.n_atoms for s in train_set + val_set + test_set}
        if len(sizes) > 1:
            raise InputError("this potential kind is built for one system: every structure must have the "
                             f"same atoms (found sizes {sorted(sizes)})")
    use_stress = f["stress_weight"] > 0 and any(s.stress is not None for s in train_set)
    cutoff = pot.cutoff
    np_dtype = np.float32 if f["dtype"] == "float32" else np.float64
    mode = batching_mode(pot, f["batching"], pads, f["devices"])
    mk = dict(cutoff=cutoff, batch_size=f["batch_size"], dtype=np_dtype, seed=cfg["data"]["seed"], pad=pads,
              max_shapes=f["max_shapes"], slack=f["pack_slack"])
    train_b = make_batcher(mode, train_set, **mk)
    if mode == "packed":     # validation and test batches share the training shape (one compilation)
        mk["budget"] = train_b.budget
    val_b = make_batcher(mode, val_set or train_set, **mk)

    key = jax.random.PRNGKey(f["seed"])
    params = cast(pot.init(key, None if pads else system0), dtype)
    params = data_dependent_init(pot, pcfg, params, train_b)
    if len(_terms(pcfg)) > 1 and _terms(pcfg)[0]["kind"] == "atomic_energies" and not isinstance(
            cfg["model"].get("atomic_energies", "fit"), dict):
        params = refit_offsets(pot, params, train_b, use_stress)
    mask = None
    if not all(trainable):
        if pcfg["kind"] != "sum":
            raise InputError("trainable = false freezes a term of a sum; a single model must stay trainable")
        mask = tuple(jax.tree_util.tree_map(lambda _: t, p) for t, p in zip(trainable, params))
    tx = make_optimizer(f, mask)
    scale = parameter_scales(pcfg, params, f["relative_parameters"])
    predict = make_predict(pot, use_stress, f.get("structure_batch", 0), f["devices"])
    loss_fn = make_loss(predict, f["loss"], f["huber_delta"])
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    decay = f["ema_decay"]

    def step_fn(state, batch, lr, weights):
        params, opt_state, ema, count = state
        (loss, sums), grads = grad_fn(params, batch, weights)
        opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, opt_state.hyperparams["learning_rate"].dtype)
        # the optimiser works on u = p / scale: dL/du = scale dL/dp, dp = scale du
        grads = jax.tree_util.tree_map(jnp.multiply, grads, scale)
        updates, opt_state = tx.update(grads, opt_state, jax.tree_util.tree_map(jnp.divide, params, scale))
        params = optax.apply_updates(params, jax.tree_util.tree_map(jnp.multiply, updates, scale))
        d = jnp.minimum(decay, (1.0 + count) / (10.0 + count)) if decay > 0 else 0.0
        ema = jax.tree_util.tree_map(lambda a, p: (d * a + (1 - d) * p).astype(p.dtype), ema, params)
        return (params, opt_state, ema, count + 1), loss, sums

    if f["devices"] > 1:
        batch_sh, repl = _mesh(f["devices"])
        step = jax.jit(step_fn)

        def put(batch):
            return jax.tree_util.tree_map(lambda x: jax.device_put(x, batch_sh), batch)
    else:
        step = jax.jit(step_fn)

        def put(batch):
            return batch

    predict_jit = jax.jit(predict)
    state = (params, tx.init(params), params, jnp.asarray(0, jnp.int32))
    if f["devices"] > 1:
        state = jax.device_put(state, repl)
    steps_per_epoch = len(train_b)
    total_steps = steps_per_epoch * f["epochs"]
    warmup = int(round(f["warmup_epochs"] * steps_per_epoch))
    history: list[dict] = []
    meta = {"epoch": 0, "step": 0, "best": float("inf"), "best_epoch": -1, "bad_epochs": 0,
            "plateau_scale": 1.0, "plateau_bad": 0, "train_seconds": 0.0}
    best_params = params
    if state_meta is not None:
        leaves, meta_saved = state_meta
        state, best_params = io.restore_like((state, best_params), leaves)
        if f["devices"] > 1:
            state = jax.device_put(state, repl)
        meta.update(meta_saved["meta"])
        history = meta_saved["history"]
        io.truncate_thermo(out_dir / "metrics.csv", meta["epoch"])
    else:
        io.write_toml(out_dir / "train_config.toml", cfg)

    cols = ["epoch", "time_s", "learning_rate", "train_loss", "train_energy_rmse_eV_per_atom",
            "train_forces_rmse_eV_per_A", "val_energy_mae_eV_per_atom", "val_energy_rmse_eV_per_atom",
            "val_forces_mae_eV_per_A", "val_forces_rmse_eV_per_A"]
    writer = io.ThermoLog(out_dir / "metrics.csv", cols, append=state_meta is not None)
    bar = _progress(progress, f["epochs"], meta["epoch"])
    deadline = f["max_time_minutes"] * 60.0
    t_run = time.perf_counter() - meta["train_seconds"]
    stop_reason = "epochs"
    epoch = meta["epoch"]
    while epoch < f["epochs"]:
        weights = jnp.asarray(loss_weights(f, epoch))
        losses, tot = [], None
        for batch in train_b.batches(epoch):
            lr = learning_rate(f, meta["step"], total_steps, warmup, meta["plateau_scale"])
            state, loss, sums = step(state, put(batch), lr, weights)
            meta["step"] += 1
            losses.append(loss)
            tot = sums if tot is None else jax.tree_util.tree_map(jnp.add, tot, sums)
        train_loss = float(np.mean(np.asarray(losses)))
        if not np.isfinite(train_loss):
            raise InputError(f"training diverged at epoch {epoch + 1} (loss is NaN/inf); "
                             "lower [fit] learning_rate or check the data")
        tr = errors_from_sums({k: float(v) for k, v in tot.items()})
        epoch += 1
        row = {"epoch": epoch, "learning_rate": lr, "train_loss": train_loss,
               "train_energy_rmse_eV_per_atom": tr["energy_rmse_eV_per_atom"],
               "train_forces_rmse_eV_per_A": tr["forces_rmse_eV_per_A"]}
        if epoch % f["eval_every"] == 0 or epoch == f["epochs"]:
            ev = evaluate(predict_jit, state[2], val_b)
            row.update({"val_" + k: ev[k] for k in ("energy_mae_eV_per_atom", "energy_rmse_eV_per_atom",
                                                   "forces_mae_eV_per_A", "forces_rmse_eV_per_A")})
            metric = ev["forces_rmse_eV_per_A"] if forces_available else ev["energy_rmse_eV_per_atom"]
            if metric < meta["best"]:
                meta.update(best=metric, best_epoch=epoch, bad_epochs=0, plateau_bad=0)
                best_params = state[2]
                save_model(out_dir, pcfg, best_params, {"cutoff": pot.cutoff, "species": dataset_species(train_set),
                                                        "epoch": epoch, "dtype": f["dtype"]})
            else:
                meta["bad_epochs"] += f["eval_every"]
                meta["plateau_bad"] += f["eval_every"]
                if f["schedule"] == "plateau" and meta["plateau_bad"] >= f["plateau_patience"]:
                    meta["plateau_scale"] *= f["plateau_factor"]
                    meta["plateau_bad"] = 0
        row["time_s"] = time.perf_counter() - t_run
        meta["epoch"] = epoch
        meta["train_seconds"] = row["time_s"]
        writer.write({c: [row.get(c, float("nan"))] for c in cols})
        history.append(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3g}",
                            val_F=f"{1000 * row.get('val_forces_rmse_eV_per_A', float('nan')):.1f} meV/A")
        if epoch % f["checkpoint_every"] == 0 or epoch == f["epochs"]:
            io.save_checkpoint(out_dir / "checkpoint", (state, best_params), {"meta": meta, "history": history})
        if meta["bad_epochs"] >= f["patience"]:
            stop_reason = "early stopping"
            break
        if row["time_s"] > deadline:
            stop_reason = "time budget"
            break
    if bar is not None:
        bar.close()
    io.save_checkpoint(out_dir / "checkpoint", (state, best_params), {"meta": meta, "history": history})
    if meta["best_epoch"] < 0:       # no validation ever ran
        best_params = state[2]
    save_model(out_dir, pcfg, best_params, {"cutoff": pot.cutoff, "species": dataset_species(train_set),
                                            "epoch": meta["best_epoch"], "dtype": f["dtype"]})
    n_structs = meta["epoch"] * len(train_set)
    extra = {"epochs": meta["epoch"], "best_epoch": meta["best_epoch"], "stopped_by": stop_reason,
             "train_seconds": meta["train_seconds"],
             "structures_per_second": n_structs / max(meta["train_seconds"], 1e-9),
             "total_seconds": time.perf_counter() - t_start}
    extra["batching"] = mode
    return _finish(cfg, out_dir, pot, best_params, train_set, val_set, test_set, history, meta["train_seconds"],
                   extra, predict_jit=predict_jit, batcher_for=lambda data: make_batcher(mode, data, **mk))


def _finish(cfg, out_dir, pot, params, train_set, val_set, test_set, history, seconds, extra,
            predict_jit=None, batcher_for=None):
    f = cfg["fit"]
    if predict_jit is None:
        predict_jit = jax.jit(make_predict(pot, False))
    if batcher_for is None:
        def batcher_for(data):
            return make_batcher("padded", data, cutoff=pot.cutoff, batch_size=f["batch_size"],
                                pad=_pads(pot.config))
    summary = {"model": pot.config.get("kind"), "train_structures": len(train_set),
               "validation_structures": len(val_set), "test_structures": len(test_set)}
    summary.update(extra)
    for name, data in (("train", train_set), ("validation", val_set), ("test", test_set)):
        if data:
            summary[name] = evaluate(predict_jit, params, batcher_for(data))
    io.write_json(out_dir / "summary.json", summary)
    if history:
        plot_learning_curve(history, out_dir / "learning_curve.png")
    return summary


def refit_offsets(pot, params, batcher: Batcher, use_stress: bool):
    """Per-element offsets fitted to E_ref - E_rest (the other terms at their
    initial parameters), so training starts from zero mean energy error."""
    from .data import element_counts

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
    |initial value| (1 where it is 0) for physics terms, 1 for ML networks
    and atomic energies; all ones with ``false``, all relative with ``true``."""
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
    out = [ones(p) if t.get("kind") in ML_KINDS + ("atomic_energies", "kernel") else rel(p)
           for t, p in zip(terms, parts)]
    return out[0] if single else tuple(out)


def statistics_batch(batcher: Batcher, size: int = 64):
    """One padded batch of up to ``size`` training structures (a seeded
    sample) for data-dependent initialisation."""
    from .data import make_batch, pad_size

    structs = batcher.structures
    pick = np.sort(np.random.default_rng([batcher.seed, 2]).permutation(len(structs))[:size])
    sample = [structs[k] for k in pick]
    n_pad = max(pad_size(s.n_atoms) for s in sample)
    k_pad = max([64] + [int(batcher._npairs[k]) for k in pick])       # pair lists the batcher holds
    return make_batch(sample, batcher.cutoff, n_pad, k_pad, len(sample), batcher.dtype, batcher._pairs)


def data_dependent_init(pot, pcfg, params, batcher: Batcher):
    """Hooks of model kinds that set statistics from data (feature
    standardisation of Behler-Parrinello networks) before training."""
    import importlib

    terms = _terms(pcfg)
    single = pcfg["kind"] != "sum"
    out = list(params) if not single else [params]
    batch = None
    for k, t in enumerate(terms):
        if t.get("kind") == "behler_parrinello":
            mod = importlib.import_module("jaxpot.potentials.behler_parrinello")
            batch = batch or statistics_batch(batcher)
            out[k] = mod.standardize_from_data(build_potential(t, None), out[k], batch.positions, batch.context)
    return out[0] if single else tuple(out)


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc="train", unit="epoch")


def plot_learning_curve(history: list[dict], path) -> None:
    """Training loss and validation force RMSE per epoch (PNG; needs matplotlib)."""
    try:
        from matplotlib.figure import Figure   # no pyplot: the caller's backend is left alone
    except ImportError:
        return
    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.5))
    ax = fig.subplots(1, 2)
    ax[0].semilogy(ep, [h["train_loss"] for h in history])
    ax[0].set(xlabel="epoch", ylabel="training loss")
    val = [(h["epoch"], h.get("val_forces_rmse_eV_per_A")) for h in history if h.get("val_forces_rmse_eV_per_A") is not None]
    ax[1].semilogy(ep, [1000 * h["train_forces_rmse_eV_per_A"] for h in history], label="train")
    if val:
        ax[1].semilogy([v[0] for v in val], [1000 * v[1] for v in val], label="validation (EMA)")
    ax[1].set(xlabel="epoch", ylabel="force RMSE (meV/A)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def eval_model(model_dir, data_path, *, batch_size: int = 8, energy_key=None, forces_key=None,
               stress_key=None) -> dict:
    """Errors of a model directory on a labelled file (API keys; eV/atom, eV/A)."""
    from ..potentials.saved import load_params, read_model_config

    data = read_labelled(data_path, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key)
    pcfg = read_model_config(model_dir)["potential"]
    pads = _pads(pcfg)
    sysm = None if pads else _system_for(data[0])
    pot = build_potential(pcfg, sysm)
    params = load_params(model_dir, pot.init(jax.random.PRNGKey(0), sysm))
    b = make_batcher(batching_mode(pot, "auto", pads), data, cutoff=pot.cutoff, batch_size=batch_size, pad=pads)
    return evaluate(jax.jit(make_predict(pot, False)), params, b)
