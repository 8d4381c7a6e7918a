"""``run_md``: a ``[system]/[potential]/[md]/[output]`` configuration in, a
run directory out (``docs/config.md``, ``docs/outputs.md``).

The loop is one jit-compiled block of many steps (``lax.scan`` of ``every``
steps per thermo row, rows per block: :mod:`jaxpot.simulate.blocks`), with
the neighbor list updated inside the block and observables reduced on
device; rows and frames leave the device once per block. After each block
the host checks for neighbor-list overflow (then the block is re-run from
its starting state with a larger list, so no pair is ever silently missed)
and for non-finite energies (then the rows before the failure, the
trajectory and a checkpoint of the last good state are kept and the run
stops with a one-line reason).

Units: metal (eV, A, fs, amu, K, bar).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .. import io
from ..assembly import prepare
from ..errors import SimulationError
from ..system import check_min_distance, from_ase, to_ase
from .blocks import grow_neighbor_list, make_block, rows_per_block
from .config import (config_to_save, load_atoms, neighbor_skin, resolve_config, saved_config,
                     starting_velocities)
from .engines import classical_engine, pimd_engine
from .guards import Guards, reference_temperature
from .interrupt import InterruptGuard
from .output import save_state, summarize, thermo_columns, write_frames, write_rows


def _note(message: str) -> None:
    print(f"jaxpot: note: {message}", file=sys.stderr)


def run_md(config: dict, *, overwrite: bool = False, restart: str | Path | None = None,
           progress: bool = True, base_dir: Path | None = None) -> dict:
    """Run MD/PIMD from a configuration dict; returns the summary dict.

    With ``restart`` (a run directory) the saved config and checkpoint are
    used and the run continues bit-identically to its requested ``steps``.
    Starting velocities in the structure file (extxyz momenta) start a
    classical run; PIMD samples its momenta at P T."""
    if restart is not None:
        run_dir = Path(restart)
        config = io.read_toml(run_dir / io.CONFIG)
        config = resolve_config(saved_config(config))
        leaves, meta = io.load_checkpoint(run_dir / io.CHECKPOINT)
    else:
        config = resolve_config(config)
        run_dir = io.prepare_directory(config["output"]["directory"], overwrite=overwrite)
        meta = None
    md, out = config["md"], config["output"]
    dtype = jnp.float32 if md["dtype"] == "float32" else jnp.float64

    velocities = None
    if restart is not None and (run_dir / "start.extxyz").exists():
        from ase.io import read
        system = from_ase(read(run_dir / "start.extxyz"), dtype=dtype)
    else:
        atoms = load_atoms(config["system"], base_dir)
        system = from_ase(atoms)
        velocities = starting_velocities(atoms)
        system = from_ase(to_ase(system), dtype=dtype)
    check_min_distance(system, float(md["min_distance"]))
    where = config["system"].get("file") or "the structure"
    if meta is not None:
        velocities = None    # the checkpoint holds the momenta
    if velocities is not None:
        if md["ensemble"] == "pimd":
            _note(f"the velocities in {where} are not used: PIMD samples the ring-polymer "
                  f"momenta at P T = {md['beads']} x {md['temperature']} K")
            velocities = None
        else:
            _note(f"starting from the velocities in {where} "
                  f"(not sampled at {md['temperature']} K)")
    key = jax.random.PRNGKey(int(md["seed"]))
    key, pkey = jax.random.split(key)
    prep = prepare(config["potential"], system, dtype=dtype, skin=neighbor_skin(md),
                   layout=md["neighbor_layout"], key=pkey)
    pot, params, context, nbr_fns, nbr = prep.potential, prep.params, prep.context, prep.neighbor_fns, prep.neighbors
    config["potential"] = {**config["potential"], **pot.config}
    if pot.cutoff > 0:
        if system.periodic and pot.neighbor_images == "minimum":
            from ..partition import cutoff_scheme_hint
            from ..space import perpendicular_widths
            if perpendicular_widths(np.asarray(system.cell)).min() < 2 * pot.cutoff:
                _note(f"{cutoff_scheme_hint(np.asarray(system.cell), pot.cutoff)}; "
                      "running with images='minimum' as configured")
        if meta is not None:
            # the exact saved capacities, so the checkpoint's arrays fit
            nbr = nbr_fns.build_jit(system.positions, system.cell, int(meta["nbr_capacity"]),
                                     int(meta["nbr_row_capacity"]), int(meta.get("nbr_cell_capacity", 0)))

    if md["ensemble"] == "pimd":
        engine, elements, n_dof = pimd_engine(pot, params, system, context, md)
    else:
        engine, elements, n_dof = classical_engine(pot, params, system, context, md, velocities=velocities)

    state = engine.init(key, nbr)
    nbr = engine.place(nbr)
    start_step = 0
    guard_ref = reference_temperature(md, getattr(state, "momenta", None), system.masses, n_dof,
                                      saved=(meta or {}).get("guard_temperature_K"))
    guards = Guards(md, guard_ref, system.n_atoms, n_dof * int(md["beads"]))
    if meta is not None:
        state, nbr = io.restore_like((state, nbr), leaves)
        if md["ensemble"] == "pimd" and not meta.get("heat_removed", False):
            state = state.replace(heat=-state.heat)     # checkpoint of the older PIMD convention (heat added)
        state, nbr = engine.shard(state), engine.place(nbr)
        start_step = int(meta["step"])
    else:
        io.write_toml(run_dir / io.CONFIG, config_to_save(config))
        from ase.io import write
        write(run_dir / "start.extxyz", to_ase(system), format="extxyz")

    every = int(out["every"])
    n_steps = int(md["steps"])
    dt = float(md["timestep"])
    n_rows_total = n_steps // every
    rows = rows_per_block(n_rows_total, max(1, int(md["block_steps"]) // every))
    from ase.data import chemical_symbols
    el_names = [chemical_symbols[e] for e in elements]
    thermo = io.ThermoLog(run_dir / io.THERMO, thermo_columns(engine.columns, el_names), append=meta is not None)
    if meta is not None:
        io.truncate_thermo(run_dir / io.THERMO, start_step)
        io.truncate_trajectory(run_dir / io.TRAJECTORY, start_step)
        io.truncate_trajectory(run_dir / "trajectory_beads.extxyz", start_step)

    write_beads = bool(out["all_beads"]) and engine.beads is not None
    frame_arrays = tuple(k for k in ("velocities", "forces") if out[k])
    block_jit = jax.jit(make_block(engine, nbr_fns, system.cell, every, rows, write_beads, frame_arrays,
                                   guards=guards))
    t0 = time.perf_counter()
    compiled = block_jit.lower((state, nbr)).compile()
    compile_seconds = time.perf_counter() - t0
    if meta is not None:
        compile_seconds = float(meta.get("compile_seconds", compile_seconds))

    bar = None
    if progress:
        from tqdm import tqdm   # plain text bar: also readable in notebooks and logs
        bar = tqdm(total=n_steps, initial=start_step, unit="step", desc="jaxpot md",
                   dynamic_ncols=True, mininterval=1.0)
    run_seconds = float(meta.get("run_seconds", 0.0)) if meta else 0.0
    steps_timed = int(meta.get("steps_timed", 0)) if meta else 0
    step = start_step
    positions_atoms = to_ase(system)
    # SIGINT / SIGTERM: Interrupted at the last checkpoint, never inside the writes of a block
    stop = InterruptGuard(start_step, run_dir)
    try:
        while step < n_steps:
            t1 = time.perf_counter()
            new_carry, (block_rows, frames) = compiled((state, nbr))
            jax.block_until_ready(new_carry)
            elapsed = time.perf_counter() - t1
            stop.hold()    # a signal now waits until rows, frames and the checkpoint are written
            if nbr_fns is not None and bool(new_carry[1].overflow):
                # re-run this block from its start with a larger list
                nbr = grow_neighbor_list(engine, nbr_fns, state, new_carry[1], system.cell)
                t0 = time.perf_counter()
                compiled = block_jit.lower((state, nbr)).compile()
                compile_seconds += time.perf_counter() - t0
                stop.release()
                continue
            block_rows = {k: np.asarray(v) for k, v in block_rows.items()}
            frames, arrays = frames if frame_arrays else (frames, {})
            frames = np.asarray(frames)
            arrays = {k: np.asarray(v) for k, v in arrays.items()}
            steps_here = every * (np.arange(rows) + 1) + step
            good = np.isfinite(block_rows["potential_energy_eV"]) & np.isfinite(block_rows["conserved_eV"])
            n_good = int(np.argmin(good)) if not good.all() else rows
            n_sane, reason = guards.first_trip(block_rows, steps_here)
            if n_sane >= n_good:
                reason = None    # a non-finite row comes first (or nothing tripped)
            n_good = min(n_good, n_sane)
            write_rows(thermo, block_rows, steps_here, dt, el_names, engine.columns, n_good)
            if write_beads:
                write_frames(run_dir / io.TRAJECTORY, positions_atoms, frames[:n_good].mean(axis=1),
                             steps_here, dt, {k: v[:n_good] for k, v in arrays.items()})
                write_frames(run_dir / "trajectory_beads.extxyz", positions_atoms, frames[:n_good],
                             steps_here, dt)
            else:
                write_frames(run_dir / io.TRAJECTORY, positions_atoms, frames[:n_good], steps_here, dt,
                             {k: v[:n_good] for k, v in arrays.items()})
            if n_good < rows:
                save_state(run_dir, (state, nbr), step, nbr, compile_seconds, run_seconds, steps_timed,
                           guard_temperature_K=guard_ref)
                if reason is not None:
                    raise SimulationError(f"{reason}; rows, frames and a checkpoint at step {step} are kept "
                                          f"in {run_dir} (0 turns the guard off)")
                raise SimulationError(
                    f"non-finite energy at step {int(steps_here[n_good])} (last finite row at step "
                    f"{int(steps_here[n_good - 1]) if n_good else step}); rows, frames and a checkpoint "
                    f"at step {step} are kept in {run_dir}")
            state, nbr = new_carry
            step += every * rows
            run_seconds += elapsed
            steps_timed += every * rows
            save_state(run_dir, (state, nbr), step, nbr, compile_seconds, run_seconds, steps_timed,
                       guard_temperature_K=guard_ref)
            stop.release(step)
            if bar is not None:
                bar.update(every * rows)
                bar.set_postfix(T=f"{block_rows['temperature_K'][-1]:.1f}K",
                                U=f"{block_rows['potential_energy_eV'][-1]:.3f}eV")
    finally:
        stop.restore()
        if bar is not None:
            bar.close()

    summary = summarize(run_dir, config, system, el_names, compile_seconds,
                        steps_timed / run_seconds if run_seconds > 0 else float("nan"))
    io.write_json(run_dir / io.SUMMARY, summary)
    return summary
