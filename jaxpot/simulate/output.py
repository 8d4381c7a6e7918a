"""Outputs of the MD driver (files described in ``docs/outputs.md``): thermo
rows, trajectory frames, the checkpoint with its metadata, ``summary.json``
(production averages with block-averaged standard errors: Flyvbjerg and
Petersen, J. Chem. Phys. 91, 461 (1989)) and the summary that ``jaxpot md``
and ``jaxpot demo`` print.

Units: time fs (thermo) and ps (summary), energies eV, temperature K,
pressure bar, drift eV/ps/atom.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import io


def thermo_columns(engine_columns, el_names) -> list:
    """The columns of thermo.csv: step, time_fs, the engine's, then the
    kinetic energy per atom of each element (eV)."""
    return ["step", "time_fs", *engine_columns] + [f"kinetic_energy_per_atom_{s}_eV" for s in el_names]


def save_state(run_dir, carry, step, nbr, compile_seconds, run_seconds, steps_timed, **extra):
    """checkpoint.npz: the carry (state, neighbor list) at ``step`` with the
    metadata a restart needs (list capacities, timings in s; ``extra``: more
    JSON-able entries, such as the guards' reference temperature in K)."""
    meta = {"step": int(step), "compile_seconds": compile_seconds, "run_seconds": run_seconds,
            "steps_timed": steps_timed,
            # one heat convention since 2026-12: kinetic energy removed by the thermostat (PIMD stored
            # the heat added before; a restart of such a checkpoint flips it, run.py)
            "heat_removed": True,
            "nbr_capacity": int(nbr.capacity) if nbr is not None else 0,
            "nbr_row_capacity": int(nbr.row_capacity) if nbr is not None else 0,
            "nbr_cell_capacity": int(nbr.cell_capacity) if nbr is not None else 0}
    meta.update(extra)
    io.save_checkpoint(Path(run_dir) / io.CHECKPOINT, carry, meta)


def write_rows(thermo, rows, steps_here, dt, el_names, columns, n):
    """The first ``n`` rows of a block into thermo.csv (``dt`` in fs)."""
    if n == 0:
        return
    out = {"step": steps_here[:n], "time_fs": steps_here[:n] * dt}
    for c in columns:
        out[c] = rows[c][:n]
    for k, s in enumerate(el_names):
        out[f"kinetic_energy_per_atom_{s}_eV"] = rows["kinetic_energy_per_atom_eV"][:n, k]
    thermo.write(out)


def write_frames(path, template, frames, steps_here, dt, arrays=None):
    """Frames (F, N, 3), or (F, P, N, 3) for all beads (one extxyz frame per
    bead, with ``bead`` in its info). ``arrays``: name -> (F, N, 3) per-atom
    arrays of (F, N, 3) frames: ``velocities`` (A/fs) goes in as an extxyz
    array of that name, ``forces`` (eV/A) as the frame's forces (ase.io.read
    gives ``atoms.arrays["velocities"]`` and ``atoms.get_forces()``)."""
    if len(frames) == 0:
        return
    from ase.calculators.singlepoint import SinglePointCalculator

    arrays = arrays or {}
    atoms_list = []
    for k, pos in enumerate(frames):
        beads = pos[None] if pos.ndim == 2 else pos
        for b, x in enumerate(beads):
            a = template.copy()
            a.set_positions(np.asarray(x, dtype=np.float64))
            a.info = {"step": int(steps_here[k]), "time_fs": float(steps_here[k] * dt)}
            if pos.ndim == 3:
                a.info["bead"] = b
            elif arrays:
                if "velocities" in arrays:
                    a.new_array("velocities", np.asarray(arrays["velocities"][k], dtype=np.float64))
                if "forces" in arrays:
                    a.calc = SinglePointCalculator(a, forces=np.asarray(arrays["forces"][k], dtype=np.float64))
            atoms_list.append(a)
    io.append_frames(path, atoms_list)


def summarize(run_dir, config, system, el_names, compile_seconds, steps_per_second) -> dict:
    """summary.json from thermo.csv: production averages with block-averaged
    standard errors, conserved-quantity drift (eV/ps/atom) and speed."""
    from ..dynamics.observables import block_average

    md = config["md"]
    data = io.read_thermo(Path(run_dir) / io.THERMO)
    prod = data["step"] > int(md["equilibration_steps"])

    def stat(x):
        x = np.asarray(x)[prod]
        if len(x) < 2:
            return {"mean": float(np.mean(x)) if len(x) else float("nan"), "sem": float("nan")}
        if len(x) < 8:   # too short for blocking: the naive (uncorrelated) error
            return {"mean": float(np.mean(x)), "sem": float(np.std(x, ddof=1) / np.sqrt(len(x)))}
        m, s = block_average(x)[:2]
        return {"mean": float(m), "sem": float(s)}

    summary = {
        "atoms": system.n_atoms,
        "beads": int(md["beads"]),
        "steps": int(md["steps"]),
        "time_ps": int(md["steps"]) * float(md["timestep"]) / 1000.0,
        "temperature_K": stat(data["temperature_K"]),
        "potential_energy_eV": stat(data["potential_energy_eV"]),
        "kinetic_energy_eV": stat(data["kinetic_energy_eV"]),
    }
    if "kinetic_energy_primitive_eV" in data:
        summary["kinetic_energy_primitive_eV"] = stat(data["kinetic_energy_primitive_eV"])
    summary["kinetic_energy_per_atom_eV"] = {s: stat(data[f"kinetic_energy_per_atom_{s}_eV"]) for s in el_names}
    if "pressure_bar" in data:
        summary["pressure_bar"] = stat(data["pressure_bar"])
    t = data["time_fs"][prod] / 1000.0
    c = data["conserved_eV"][prod]
    drift = float(np.polyfit(t, c, 1)[0]) / system.n_atoms if len(t) > 2 else float("nan")
    summary["conserved_drift_eV_per_ps_per_atom"] = drift
    summary["steps_per_second"] = float(steps_per_second)
    summary["compile_seconds"] = float(compile_seconds)
    summary["ensemble"] = md["ensemble"]
    summary["thermostat"] = md["thermostat"]
    summary["temperature_target_K"] = float(md["temperature"])
    return summary


def print_summary(summary: dict, out_dir) -> None:
    """Print a run's summary (as ``jaxpot md`` and ``jaxpot demo`` do)."""
    def pm(d):
        return f"{d['mean']:.5g} +/- {d['sem']:.2g}"

    print(f"run directory: {out_dir}")
    print(f"  atoms {summary['atoms']}, beads {summary['beads']}, {summary['time_ps']:.3g} ps, "
          f"{summary['steps_per_second']:.1f} steps/s (compile {summary['compile_seconds']:.1f} s)")
    print(f"  temperature      {pm(summary['temperature_K'])} K")
    print(f"  potential energy {pm(summary['potential_energy_eV'])} eV")
    print(f"  kinetic energy   {pm(summary['kinetic_energy_eV'])} eV")
    if "kinetic_energy_primitive_eV" in summary:
        print(f"  kinetic (prim.)  {pm(summary['kinetic_energy_primitive_eV'])} eV")
    for el, d in summary["kinetic_energy_per_atom_eV"].items():
        print(f"  kinetic energy per {el} atom {1000 * d['mean']:.2f} +/- {1000 * d['sem']:.2f} meV")
    print(f"  conserved drift  {summary['conserved_drift_eV_per_ps_per_atom']:.3g} eV/ps/atom")
