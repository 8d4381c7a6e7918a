"""Excluded atom pairs: a jit-able lookup ``(i, j) -> bool`` for the pairs a
potential handles itself (bonded exclusions, 1-4 pairs), which the
cluster-pair list masks out of its tiles (:mod:`jaxpot.partition.clusters`).

Atom indices only; no units. The neighbor layer owns these functions so
that it never imports a force field; :mod:`jaxpot.forcefield` uses them
from here.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..system import InputError


# Exclusions of bonded neighbours almost always join atoms a few indices
# apart (a residue is tens of atoms), so each atom's excluded partners at
# index offsets 1..D are a bit mask of D bits: one gather per listed pair
# instead of a row of an (N, max_excl) table (which dominated the pair loop
# of a solvated protein: ~30 int32 per pair).
_EXCLUSION_BITS_MAX = 256


def exclusion_bitmask(n_atoms: int, excluded) -> tuple[np.ndarray, int] | None:
    """(masks (N, W) uint32, D) with bit (d - 1) of atom a's mask set when
    the pair (a, a + d) is excluded (d = 1..D, W = ceil(D / 32)); None when
    some excluded pair is more than ``_EXCLUSION_BITS_MAX`` indices apart
    (then :func:`exclusion_lookup` searches sorted keys) or there is no exclusion."""
    excluded = np.asarray(excluded, np.int64).reshape(-1, 2)
    if len(excluded) == 0:
        return None
    lo, hi = excluded.min(axis=1), excluded.max(axis=1)
    d = hi - lo
    if np.any(d <= 0):
        raise InputError("an exclusion pairs an atom with itself")
    dmax = int(d.max())
    if dmax > _EXCLUSION_BITS_MAX:
        return None
    words = -(-dmax // 32)
    masks = np.zeros((n_atoms, words), np.uint32)
    b = d - 1
    np.bitwise_or.at(masks, (lo, b // 32), (np.uint32(1) << (b % 32).astype(np.uint32)).astype(np.uint32))
    return masks, dmax


def excluded_pairs_lookup(bitmask, i, j):
    """True where (i, j) is excluded, for the masks of :func:`exclusion_bitmask`."""
    masks, dmax = bitmask
    lo, hi = jnp.minimum(i, j), jnp.maximum(i, j)
    d = hi - lo
    b = jnp.clip(d - 1, 0, dmax - 1)
    word = masks[lo, b // 32]
    bit = jnp.right_shift(word, (b % 32).astype(jnp.uint32)) & jnp.uint32(1)
    return (d >= 1) & (d <= dmax) & (bit == 1)


def exclusion_lookup(n_atoms: int, excluded):
    """A jit-able ``(i, j) -> bool``, True for the unordered pairs in
    ``excluded`` (E, 2) with indices < ``n_atoms``; any pair with index
    ``n_atoms`` (padding) is False.

    Bit masks over index offsets (:func:`exclusion_bitmask`) when all
    excluded pairs lie within 256 indices (bonded exclusions almost always
    do), else a binary search of sorted pair keys. Padding needs no test:
    no listed pair reaches index N, and the keys i (N + 1) + j cannot collide."""
    excluded = np.asarray(excluded, np.int64).reshape(-1, 2)
    if len(excluded) == 0:
        return lambda i, j: jnp.zeros(jnp.broadcast_shapes(jnp.shape(i), jnp.shape(j)), bool)
    bits = exclusion_bitmask(n_atoms, excluded)
    if bits is not None:
        # one zero row more, for the padding index
        table = (jnp.asarray(np.concatenate([bits[0], np.zeros((1, bits[0].shape[1]), np.uint32)])), bits[1])
        return lambda i, j: excluded_pairs_lookup(table, i, j)
    lo, hi = excluded.min(axis=1), excluded.max(axis=1)
    keys = jnp.asarray(np.unique(lo * (n_atoms + 1) + hi))

    def lookup_sorted(i, j):
        k = jnp.minimum(i, j).astype(jnp.int64) * (n_atoms + 1) + jnp.maximum(i, j)
        return keys[jnp.clip(jnp.searchsorted(keys, k), 0, keys.shape[0] - 1)] == k
    return lookup_sorted
