"""The block loop of the MD driver: ``every * rows`` steps compiled as one
``lax.scan`` (a thermo row every ``every`` steps), with the neighbor list
updated inside, and the larger list that re-runs a block after an overflow.

Units: positions A, cell A (rows are lattice vectors), energies eV.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .engines import Engine
from .guards import block_start, row_extras, step_extras


def make_block(engine: Engine, nbr_fns, cell, every: int, rows: int, write_beads: bool = False,
               arrays: tuple = (), guards=None):
    """The jit-able block of ``every * rows`` steps that ``run_md`` compiles:
    ``block((state, nbr)) -> ((state, nbr), (rows of observables, frames))``.
    With ``arrays`` (names of ``Engine.frame_arrays``: ``"velocities"``,
    ``"forces"``) each frame is ``(positions, {name: (N, 3) array})``.

    The neighbor list is updated inside every step (rebuilt on device when an
    atom moved more than skin/2); observables are reduced on device once per
    row. As in OpenMM or i-PI, the potential energy is evaluated only where
    it is reported: the row's other steps compute forces alone, when the
    engine allows it (``Engine.without_energy``). With ``guards``
    (:class:`jaxpot.simulate.guards.Guards`) each row also carries the guard
    quantities (largest force over the row's steps, conserved quantity at
    the block's start).
    Benchmarks time this same function."""
    def one_step(carry, _, energy=True):
        state, nbr = carry
        if nbr_fns is not None:
            check, ref = engine.nbr_positions(state)
            nbr = nbr_fns.update(check, nbr, cell, reference=ref)
        state = engine.step(state, nbr)
        if not energy:
            state = engine.without_energy(state)
        return (state, nbr), step_extras(state, guards)

    forces_only = engine.without_energy is not None and every > 1

    def one_row(carry, _, start):
        if forces_only:
            carry, early = jax.lax.scan(functools.partial(one_step, energy=False), carry, None,
                                        length=every - 1)
            carry, last = one_step(carry, None)
            per_step = (early, jax.tree_util.tree_map(lambda x: x[None], last))
        else:
            carry, per_step = jax.lax.scan(one_step, carry, None, length=every)
            per_step = (per_step,)
        frame = engine.beads(carry[0]) if write_beads else engine.frame(carry[0])
        if arrays:
            frame = (frame, {name: engine.frame_arrays[name](carry[0]) for name in arrays})
        row = engine.observe(*carry)
        if guards is not None:
            row = {**row, **row_extras(per_step, start, guards)}
        return carry, (row, frame)

    def block(carry):
        start = block_start(engine, *carry, guards)
        return jax.lax.scan(functools.partial(one_row, start=start), carry, None, length=rows)

    return block


def grow_neighbor_list(engine: Engine, nbr_fns, state, overflowed, cell):
    """A larger list for re-running a block from ``state`` after ``overflowed``
    (the block's final list) reported an overflow; placed where the state lives."""
    check, ref = engine.nbr_positions(state)
    bigger = nbr_fns.reallocate(overflowed, check if ref is None else ref, cell)
    return engine.place(bigger.replace(overflow=jnp.zeros_like(bigger.overflow)))


def rows_per_block(n_rows: int, target: int) -> int:
    """The largest divisor of ``n_rows`` (thermo rows of the run) not above
    ``target`` (rows per block asked for): rows in each compiled block."""
    target = max(1, min(n_rows, target))
    for k in range(target, 0, -1):
        if n_rows % k == 0:
            return k
    return 1
