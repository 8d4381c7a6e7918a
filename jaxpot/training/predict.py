"""Predictions of a potential on batches of training structures: energies
(eV), forces (eV/A) and stress (eV/A^3) for padded batches (structures
mapped with :func:`jaxpot.mapping.map_leading`) and packed batches (one
disjoint graph, per-atom energies summed per structure), and the choice
between the two batchings.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import InputError
from ..mapping import map_leading
from ..potentials.base import energy_and_forces, energy_forces_stress
from ..system import from_ase
from .data import Batcher, Labelled, PackedBatch, PackedBatcher


def _atoms(s: Labelled):
    from ase import Atoms

    return Atoms(numbers=s.numbers, positions=s.positions, cell=s.cell, pbc=s.pbc)


def _system_for(structure: Labelled):
    return from_ase(_atoms(structure))


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
