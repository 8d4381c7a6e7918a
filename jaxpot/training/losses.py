"""The loss of ``jaxpot train`` and the error sums behind every reported
MAE/RMSE.

Loss (per batch of B structures, weights w_b = 1 for real structures):
    L = w_E <rho((E - E_ref) / N_atoms)> + w_F <rho(F - F_ref)>_components
        + w_S <rho(sigma - sigma_ref)>_components
with rho the square (``loss = "mse"``) or the Huber function. Units: eV/atom,
eV/A, eV/A^3; the default weights (1, 100) follow MACE (Batatia et al.,
NeurIPS 2022). The weights may ramp linearly over the epochs
(``*_weight_final``).
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax

from .data import PackedBatch


def _rho(x, loss: str, delta: float):
    if loss == "huber":
        return optax.huber_loss(x, delta=delta) * 2.0   # = x^2 for |x| < delta
    return x * x


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


def loss_weights(f: dict, epoch: int) -> np.ndarray:
    x = epoch / max(f["epochs"] - 1, 1)
    out = []
    for key in ("energy_weight", "forces_weight", "stress_weight"):
        final = f.get(key + "_final")
        out.append(f[key] if final is None else f[key] + (final - f[key]) * x)
    return np.asarray(out, np.float64)
