"""What ``jaxpot train`` and ``jaxpot eval`` report (keys in docs/outputs.md):
the per-epoch ``metrics.csv`` columns, ``summary.json`` (errors of the
saved model on the train, validation and test sets), the learning-curve
plot, the progress bar, and the errors of a model directory on a labelled
file.

Errors: energies per atom (eV/atom), force components (eV/A), stress
components (eV/A^3, when labelled), as MAE and RMSE over every structure.
"""
from __future__ import annotations

import jax

from .. import io
from ..potentials import build_potential
from ..potentials.saved import load_params, read_model_config
from .data import Batcher, read_labelled
from .losses import error_sums, errors_from_sums
from .model import _pads
from .predict import _system_for, batching_mode, make_batcher, make_predict

METRICS_COLUMNS = ["epoch", "time_s", "learning_rate", "train_loss", "train_energy_rmse_eV_per_atom",
                   "train_forces_rmse_eV_per_A", "val_energy_mae_eV_per_atom", "val_energy_rmse_eV_per_atom",
                   "val_forces_mae_eV_per_A", "val_forces_rmse_eV_per_A"]
"""The columns of metrics.csv, one row per epoch (validation columns NaN
between validations)."""


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
    data = read_labelled(data_path, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key)
    pcfg = read_model_config(model_dir)["potential"]
    pads = _pads(pcfg)
    sysm = None if pads else _system_for(data[0])
    pot = build_potential(pcfg, sysm)
    params = load_params(model_dir, pot.init(jax.random.PRNGKey(0), sysm))
    b = make_batcher(batching_mode(pot, "auto", pads), data, cutoff=pot.cutoff, batch_size=batch_size, pad=pads)
    return evaluate(jax.jit(make_predict(pot, False)), params, b)
