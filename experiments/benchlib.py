"""Shared timing machinery of the benchmarks: jaxpot is timed through the very
block that ``jaxpot.simulate.run_md`` compiles (``simulate.make_block``),
with the same on-overflow re-run, so benchmark and production agree."""
from __future__ import annotations

import time

import jax
import numpy as np

from jaxpot.assembly import prepare
from jaxpot.simulate import (MD_DEFAULTS, classical_engine, grow_neighbor_list, make_block, neighbor_skin,
                             pimd_engine)


def time_calls(call, steps_per_call, min_steps, min_seconds, max_seconds, statistic="mean"):
    """(steps/s, steps timed) of repeated ``call()`` (which must block until
    its work is done) after one warm-up call; stops after ``max_seconds`` or
    once both ``min_steps`` and ``min_seconds`` are reached.

    statistic: "mean" (steps over the whole window) or "median" (of the
    single calls: robust to this VM's periods of 2x slowdown, which last
    from ~1 s to tens of seconds)."""
    call()
    times = []
    t0 = time.perf_counter()
    while True:
        t1 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t1)
        el = time.perf_counter() - t0
        if el >= max_seconds or (len(times) * steps_per_call >= min_steps and el >= min_seconds):
            break
    n = len(times) * steps_per_call
    if statistic == "median":
        return steps_per_call / float(np.median(times)), n
    return n / el, n


def time_blocks(run_block, carry, steps_per_block, min_steps, min_seconds, max_seconds, statistic="mean"):
    """:func:`time_calls` for a jitted ``run_block(carry) -> carry``; also
    returns the final carry."""
    box = [carry]

    def call():
        box[0] = jax.block_until_ready(run_block(box[0]))

    sps, steps = time_calls(call, steps_per_block, min_steps, min_seconds, max_seconds, statistic)
    return sps, steps, box[0]


def jaxpot_engine(atoms, spec, md_overrides, dtype_name):
    """(system, potential, params, context, engine, neighbor fns, list, state)
    for ``atoms``, a ``[potential]`` table and ``[md]`` overrides, as
    ``run_md`` builds them (neighbor skin included)."""
    md = {**MD_DEFAULTS, "dtype": dtype_name, **md_overrides}
    pot, params, ctx, fns, nbr, system = prepare(spec, atoms, dtype=dtype_name, skin=neighbor_skin(md),
                                                 layout=md["neighbor_layout"])
    make = pimd_engine if md["ensemble"] == "pimd" else classical_engine
    engine = make(pot, params, system, ctx, md)[0]
    state = engine.init(jax.random.PRNGKey(1), nbr)
    return system, pot, params, ctx, engine, fns, engine.place(nbr), state


def block_timer(engine, fns, cell, state, nbr, every, rows, statistic="mean"):
    """(compile seconds, timer(timing) -> steps/s, live dict) for the run_md
    block of ``every * rows`` steps; a timed round that overflows the
    neighbor list is re-run with a larger list, as ``run_md`` does."""
    block = make_block(engine, fns, cell, every, rows)

    def run(carry):
        return block(carry)[0]

    t0 = time.perf_counter()
    compiled = jax.jit(run).lower((state, nbr)).compile()
    compile_s = time.perf_counter() - t0
    live = {"carry": (state, nbr), "compiled": compiled, "steps": 0, "builds": 0}

    def timer(timing):
        for _ in range(3):
            start = live["carry"]
            builds0 = int(start[1].n_builds) if fns is not None else 0
            sps, steps, end = time_blocks(live["compiled"], start, every * rows, *timing, statistic=statistic)
            if fns is None or not bool(end[1].overflow):
                live["carry"] = end
                live["steps"] += steps + every * rows   # timed blocks + warm-up block
                live["builds"] += (int(end[1].n_builds) - builds0) if fns is not None else 0
                return sps
            live["carry"] = (start[0], grow_neighbor_list(engine, fns, start[0], end[1], cell))
            live["compiled"] = jax.jit(run).lower(live["carry"]).compile()
        raise RuntimeError("jaxpot neighbor list kept overflowing")

    return compile_s, timer, live
