"""Fitting any jaxpot potential to energies, forces and stress with optax:
the training loop of ``jaxpot train CONFIG.toml`` (:func:`train`; keys in
docs/config.md, outputs in docs/outputs.md).

The configuration tables are in :mod:`.config`, the model set-up from data
in :mod:`.model` (each kind's data hooks come from its KindSpec), the loss in
:mod:`.losses`, the optimiser and learning-rate schedule in
:mod:`.optimizer`, predictions on batches in :mod:`.predict` and the
reports (metrics.csv, summary.json, eval errors) in :mod:`.report`.

The step is one jitted function of (state, batch, learning rate, loss
weights); the learning rate comes from optax schedules evaluated on the host
per step (warm-up, then cosine or constant, or reduced on a validation
plateau) and is injected with ``optax.inject_hyperparams``, so schedules
never recompile. Parameters keep an exponential moving average (EMA) used
for validation and for the saved model. Early stopping on the validation
force RMSE; the best EMA parameters are written to the model directory
whenever they improve, so an interrupted run still leaves a usable model.
Checkpoints hold everything needed for an exact resume (``jaxpot train
--restart DIR``). Kinds with a closed-form fit (KindSpec ``fit``: kernel
regression) are fitted by that instead of gradient steps.

Units: energies eV, forces eV/A, stress eV/A^3, times s.
"""
from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import io
from ..errors import InputError
from ..potentials import build_potential, registry
from ..potentials.saved import save_model
from .config import DATA_DEFAULTS, FIT_DEFAULTS, resolve_train_config  # noqa: F401
from .data import dataset_species, read_labelled, split_indices
from .losses import (_rho, error_sums, errors_from_sums, force_mask, loss_weights,  # noqa: F401
                     make_loss)
from .model import (_dtype, _pads, _terms, cast, data_dependent_init, parameter_scales,  # noqa: F401
                    potential_config, refit_offsets, statistics_batch)
from .optimizer import LearningRates, _decay_mask, learning_rate, lr_schedule, make_optimizer  # noqa: F401
from .predict import (_atoms, _system_for, batching_mode, make_batcher, make_predict,  # noqa: F401
                      packed_predict)
from .report import (METRICS_COLUMNS, _finish, _progress, eval_model, evaluate,  # noqa: F401
                     plot_learning_curve)

CLOSED_FORM_FIT_KEYS = ("batch_size",)
"""[fit] keys that apply to a closed-form fit (batch_size: evaluation batches)."""


def _mesh(n: int):
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devs = jax.devices()
    if n > len(devs):
        raise InputError(f"[fit] devices = {n} but only {len(devs)} device(s) are available")
    mesh = Mesh(np.asarray(devs[:n]), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())


def _closed_form_train(cfg: dict, spec, train_set, given_fit: set):
    """The kind's closed-form fit (KindSpec ``fit``) on the training set:
    ``(potential config, params, seconds)``. [fit] keys that a closed-form fit
    does not use, and per-element baselines, are errors naming them."""
    kind = cfg["model"]["kind"]
    bad = sorted(set(given_fit) - set(CLOSED_FORM_FIT_KEYS))
    if bad:
        raise InputError(f"[fit] {', '.join(bad)}: not used by kind = {kind!r}, which is fitted in closed form "
                         f"(no gradient steps); [fit] takes only {', '.join(CLOSED_FORM_FIT_KEYS)} "
                         "(evaluation batches) here, and the fit's own options are [model] keys")
    model = dict(cfg["model"])
    e0 = model.pop("atomic_energies", "none")
    if e0 not in ("none", None):
        raise InputError(f"[model] atomic_energies = {e0!r} does not apply to kind = {kind!r}: its closed-form "
                         "fit sets its own per-element energy offset; remove the key (or set it to 'none')")
    t0 = time.perf_counter()
    pcfg, params = spec.fit(model, train_set, np.asarray([s.energy for s in train_set]), cfg["fit"])
    return pcfg, params, time.perf_counter() - t0


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
        raw = io.read_toml(out_dir / "train_config.toml")
        cfg = resolve_train_config(raw)
        state_meta = io.load_checkpoint(out_dir / "checkpoint", required=("meta", "history"))
    else:
        raw = config
        cfg = resolve_train_config(config)
        out_dir = io.prepare_directory(cfg["output"]["directory"], overwrite=overwrite)
        state_meta = None
    f = cfg["fit"]
    train_set, val_set, test_set = load_splits(cfg, base_dir)
    if not val_set:
        log("note: no validation set; early stopping and best-model selection use the training set")
    t_start = time.perf_counter()

    spec = registry.spec(cfg["model"]["kind"]) if cfg["model"]["kind"] != "sum" else None
    if spec is not None and spec.fit is not None:
        given_fit = set(raw.get("fit") or {})
        pcfg, params, seconds = _closed_form_train(cfg, spec, train_set, given_fit)
        io.write_toml(out_dir / "train_config.toml", dict(cfg, fit={k: cfg["fit"][k] for k in sorted(given_fit)}))
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
    rates = LearningRates(f, total_steps, warmup)
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

    cols = METRICS_COLUMNS
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
            lr = rates(meta["step"], meta["plateau_scale"])
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
