"""Energy minimisation behind ``jaxpot minimize``: the ``[minimize]`` table and
:func:`run_minimize`.

A configuration holds ``[system]`` (as ``jaxpot md``'s,
:data:`jaxpot.simulate.SYSTEM_TABLE`), ``[potential]`` and ``[minimize]``.
The potential is assembled by :func:`jaxpot.assembly.prepare` inside
:class:`jaxpot.interop.ase.JaxpotCalculator`, and the structure is relaxed
with one of ASE's optimisers: FIRE (Bitzek, Koskinen, Gaehler, Moseler and
Gumbsch, Phys. Rev. Lett. 97, 170201 (2006)), BFGS (quasi-Newton) or LBFGS
(Nocedal, Math. Comp. 35, 773 (1980)). Positions move, the cell does not.

Writes, in ``[minimize] directory``: ``relaxed.extxyz`` (the last structure,
with its energy and forces), ``minimize.csv`` (step, energy_eV,
fmax_eV_per_A: one row per force evaluation of the optimiser's steps) and
``summary.json`` (converged, steps, energy_eV, fmax). Not converging within
``steps`` is not an error: ``converged`` is false.

Units: energies eV, forces eV/A, lengths A.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from . import io
from .config import Key, Table, at_least, positive
from .errors import InputError
from .simulate.config import load_atoms, resolve_structure

OPTIMIZERS = ("fire", "bfgs", "lbfgs")


def _optimizer(v):
    return None if v in OPTIMIZERS else f"is an unknown optimizer (use one of: {', '.join(OPTIMIZERS)})"


MINIMIZE_TABLE = Table("[minimize]", (
    Key("optimizer", str, "fire", "", "ASE optimiser: fire (ase.optimize.FIRE), bfgs (ase.optimize.BFGS) "
        "or lbfgs (ase.optimize.LBFGS)", check=_optimizer),
    Key("fmax", float, 0.05, "eV/A", "converged when the largest force on an atom is below this",
        check=positive),
    Key("steps", int, 1000, "", "most optimiser steps", check=at_least(1)),
    Key("directory", str, "runs/minimize", "", "output directory (refused if it exists and is not empty, "
        "unless --overwrite)"),
), doc="Energy minimisation (`jaxpot minimize`): optimiser, force tolerance, step limit, output.")

TOP_LEVEL = ("system", "potential", "minimize")
RELAXED = "relaxed.extxyz"
TRACE = "minimize.csv"


def resolve_minimize_config(config: dict) -> dict:
    """Fill defaults and validate a ``jaxpot minimize`` configuration; a new
    dict. InputError naming the table and key on any bad entry."""
    config = copy.deepcopy(config)
    system = resolve_structure(config, TOP_LEVEL)
    if not isinstance(config["potential"], dict):
        raise InputError("[potential] must be a table")
    config["system"] = system
    config["minimize"] = MINIMIZE_TABLE.resolve(config.get("minimize", {}))
    return config


def _optimizer_class(name: str):
    from ase.optimize import BFGS, FIRE, LBFGS

    return {"fire": FIRE, "bfgs": BFGS, "lbfgs": LBFGS}[name]


def max_force(forces) -> float:
    """The largest per-atom force norm (eV/A), as ASE's ``fmax`` measures it."""
    f = np.asarray(forces, dtype=np.float64)
    return float(np.sqrt((f * f).sum(axis=1).max())) if len(f) else 0.0


def minimize_atoms(atoms, spec, *, optimizer: str = "fire", fmax: float = 0.05, steps: int = 1000,
                   dtype: str = "float64", trace=None):
    """Relax ``atoms`` (positions, A) on the potential ``spec`` (a
    ``[potential]`` table or a Potential); returns (relaxed atoms with a
    JaxpotCalculator attached, converged, optimiser steps taken). ``trace``
    is called as ``trace(step, energy_eV, fmax_eV_per_A)`` after every
    optimiser step (and for the starting structure, step 0)."""
    from .interop.ase import JaxpotCalculator

    err = _optimizer(optimizer)
    if err:
        raise InputError(f"[minimize] optimizer {optimizer!r} {err}")
    atoms = atoms.copy()
    atoms.calc = JaxpotCalculator(spec, dtype=dtype)
    opt = _optimizer_class(optimizer)(atoms, logfile=None)
    if trace is not None:
        def observe():
            trace(opt.nsteps, atoms.get_potential_energy(), max_force(atoms.get_forces()))
        opt.attach(observe, interval=1)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return atoms, converged, int(opt.nsteps)


def run_minimize(config: dict, *, overwrite: bool = False, base_dir: Path | None = None) -> dict:
    """``jaxpot minimize``: relax the ``[system]`` structure on the
    ``[potential]`` and write ``relaxed.extxyz``, ``minimize.csv`` and
    ``summary.json`` in ``[minimize] directory``; returns the summary
    (energy_eV eV, fmax eV/A)."""
    config = resolve_minimize_config(config)
    mn = config["minimize"]
    atoms = load_atoms(config["system"], base_dir)
    out_dir = io.prepare_directory(mn["directory"], overwrite=overwrite)
    rows = {"step": [], "energy_eV": [], "fmax_eV_per_A": []}

    def trace(step, energy, fmax):
        rows["step"].append(int(step))
        rows["energy_eV"].append(float(energy))
        rows["fmax_eV_per_A"].append(float(fmax))

    relaxed, converged, n_steps = minimize_atoms(atoms, config["potential"], optimizer=mn["optimizer"],
                                                 fmax=float(mn["fmax"]), steps=int(mn["steps"]), trace=trace)
    log = io.ThermoLog(out_dir / TRACE, list(rows))
    log.write({k: np.asarray(v) for k, v in rows.items()})
    energy = float(relaxed.get_potential_energy())
    forces = relaxed.get_forces()
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frame = relaxed.copy()
    frame.calc = SinglePointCalculator(frame, energy=energy, forces=np.asarray(forces))
    write(out_dir / RELAXED, frame, format="extxyz")
    summary = {"converged": converged, "steps": n_steps, "energy_eV": energy, "fmax": max_force(forces),
               "fmax_target": float(mn["fmax"]), "optimizer": mn["optimizer"], "atoms": len(relaxed)}
    io.write_json(out_dir / io.SUMMARY, summary)
    return summary


def print_minimize_summary(summary: dict, out_dir) -> None:
    """Print a minimisation's summary (``jaxpot minimize``); a warning line
    when it did not converge."""
    print(f"output directory: {out_dir}")
    print(f"  {summary['optimizer']}: {summary['steps']} steps, energy {summary['energy_eV']:.8g} eV, "
          f"fmax {summary['fmax']:.3g} eV/A")
    if not summary["converged"]:
        print(f"jaxpot: warning: not converged (fmax {summary['fmax']:.3g} > {summary['fmax_target']:g} eV/A "
              f"after {summary['steps']} steps)")
