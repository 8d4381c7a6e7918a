"""Mapping a per-item function over a leading batch axis (beads, structures).

``vmap`` turns a neighbor-list model's gathers and scatters into batched
ones, which XLA:CPU executes several times slower than the same work done
item by item (measured: the q-TIP4P/F real-space pair sum of 216 waters over
8 beads, 4.5x; the whole force call, 2.3x). GPUs, in contrast, need the batch
to fill the device. :func:`map_leading` therefore maps sequentially with
``lax.map`` on CPU and with ``vmap`` elsewhere, unless told otherwise.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from .system import InputError


def check_batch(name: str, value) -> int:
    """``value`` as an integer >= 0 (0 = automatic), or InputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"{name} must be an integer >= 0 (0 = automatic), got {value!r}")
    return int(value)


def auto_batch(batch: int, size: int, gathers: bool = True) -> int:
    """Items vmapped together: ``batch`` if set, else 1 on CPU for
    gather-heavy work (``gathers``: neighbor-list models) and ``size``
    otherwise (cheap per-item work, e.g. 648 harmonic tethers over 32 beads,
    runs 2x faster vmapped than mapped)."""
    if batch:
        return int(batch)
    return 1 if (gathers and jax.default_backend() == "cpu") else int(size)


def map_leading(fn: Callable, *args, batch: int = 0, groups: int = 1, gathers: bool = True):
    """``fn`` applied to each slice along the leading axis of every leaf of
    ``args``, results stacked along a new leading axis (like ``vmap(fn)``).

    ``batch``: items evaluated together by ``vmap`` inside each step of a
    sequential ``lax.map`` (0: :func:`auto_batch`, told by ``gathers``
    whether ``fn`` is gather-heavy). ``groups``: the axis is
    split into this many equal groups that are ``vmap``ped, one per device
    when the axis is sharded, so that each device maps over its own items."""
    leaves = jax.tree_util.tree_leaves(args)
    if not leaves:
        raise ValueError("map_leading needs at least one array argument")
    size = leaves[0].shape[0]
    if not isinstance(groups, int) or groups < 1:
        raise InputError(f"groups must be a positive integer, got {groups!r}")
    if size % groups:
        raise InputError(f"a batch axis of {size} does not split into {groups} equal groups")
    per = size // groups
    b = auto_batch(batch, per, gathers)
    if b >= per:
        return jax.vmap(fn)(*args)
    if groups == 1:
        return jax.lax.map(lambda a: fn(*a), args, batch_size=b)
    split = jax.tree_util.tree_map(lambda x: x.reshape((groups, per) + x.shape[1:]), args)
    out = jax.vmap(lambda a: jax.lax.map(lambda y: fn(*y), a, batch_size=b))(split)
    return jax.tree_util.tree_map(lambda x: x.reshape((size,) + x.shape[2:]), out)
