"""The optimiser of ``jaxpot train``: optax Adam/AdamW with global-norm
clipping, frozen terms by ``optax.multi_transform``, the learning rate
injected per step with ``optax.inject_hyperparams`` (so schedules never
recompile) and the learning-rate schedule built from optax's own schedules:
a linear warm-up (``optax.linear_schedule``) joined
(``optax.join_schedules``) to a cosine decay to ``min_lr_ratio`` x the peak
(``optax.cosine_decay_schedule``; Loshchilov & Hutter, SGDR, arXiv:1608.03983)
or to a constant, which ``schedule = "plateau"`` scales on the host by
``plateau_factor`` on each validation plateau.

The learning rate is dimensionless where ``relative_parameters`` applies,
else in the units of each parameter per unit gradient.
"""
from __future__ import annotations

import jax
import numpy as np
import optax


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


def lr_schedule(f: dict, total_steps: int, warmup_steps: int):
    """The optax schedule step -> learning rate of the [fit] table ``f``
    (before the host-side plateau factor): ``lr (step + 1) / warmup_steps``
    during the warm-up, then the cosine from ``lr`` to ``min_lr_ratio lr``
    over the remaining steps, or ``lr``."""
    lr = f["learning_rate"]
    if f["schedule"] == "cosine":
        after = optax.cosine_decay_schedule(lr, max(total_steps - warmup_steps, 1), alpha=f["min_lr_ratio"])
    else:
        after = optax.constant_schedule(lr)
    if warmup_steps <= 0:
        return after
    warm = optax.linear_schedule(lr / warmup_steps, lr, warmup_steps - 1)
    return optax.join_schedules([warm, after], [warmup_steps])


class LearningRates:
    """The learning rate of every step of a run (host floats), from
    :func:`lr_schedule` evaluated once over all steps, times the plateau
    factor after the warm-up with ``schedule = "plateau"``."""

    def __init__(self, f: dict, total_steps: int, warmup_steps: int):
        self.plateau = f["schedule"] == "plateau"
        self.warmup_steps = warmup_steps
        steps = np.arange(max(total_steps, 1))
        # a constant schedule returns a scalar whatever the steps
        self.values = np.broadcast_to(np.asarray(lr_schedule(f, total_steps, warmup_steps)(steps), np.float64),
                                      steps.shape)

    def __call__(self, step: int, plateau_scale: float = 1.0) -> float:
        lr = float(self.values[min(step, len(self.values) - 1)])
        if self.plateau and step >= self.warmup_steps:
            return lr * plateau_scale
        return lr


def learning_rate(f: dict, step: int, total_steps: int, warmup_steps: int, plateau_scale: float) -> float:
    """The learning rate of one step (see :class:`LearningRates`)."""
    return LearningRates(f, total_steps, warmup_steps)(step, plateau_scale)
