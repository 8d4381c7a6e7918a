"""The run configuration of ``jaxpot md``: the ``[system]``, ``[md]`` and
``[output]`` tables (the ``[potential]`` table belongs to the kind registry,
:mod:`jaxpot.potentials.registry`).

Each table is declared once with :class:`jaxpot.config.Key` (type, default,
metal unit, one-line meaning); :func:`resolve_config` fills the defaults and
rejects, naming the table and the key: unknown keys, wrong types (no
coercion: ``timestep = true``, ``steps = 200.7`` or ``timestep = "0.5"`` are
errors; an integer is accepted for a number), and the path-integral keys
with ``ensemble = "nve"`` or ``"nvt"``, where they would be ignored.
The reference in ``docs/config.md`` is written from these tables
(``MD_TABLE.markdown()``, ...).

Units: K, fs, A, amu, e (metal units, :mod:`jaxpot.units`).
"""
from __future__ import annotations

import copy
from pathlib import Path

from ..partition import NEIGHBOR_LAYOUTS
from ..config import Key, Table, at_least, non_negative, positive
from ..errors import InputError
from ..system import System, from_ase

THERMOSTATS = {"nve": ("none",), "nvt": ("langevin", "nose_hoover_chain", "csvr"),
               "pimd": ("pile_l", "pile_g", "langevin", "none")}
DEFAULT_THERMOSTAT = {"nve": "none", "nvt": "langevin", "pimd": "pile_l"}


def _ensemble(v):
    return None if v in THERMOSTATS else f"is an unknown ensemble (use one of: {', '.join(THERMOSTATS)})"


SYSTEM_TABLE = Table("[system]", (
    Key("file", str, None, "", "structure file read by ase.io (extxyz, xyz, cif, ...); relative paths are "
        "taken from the working directory, then from the config file's directory. Velocities in the file "
        "(extxyz momenta) start classical runs."),
    Key("build", dict, None, "", "a structure builder table instead of a file: kind = water_box, "
        "water_cluster, bulk or molecule, and its arguments (jaxpot.build.build_structure)"),
    Key("index", (int, str), None, "", "which frame of a multi-frame file (ase.io index; default: the last)"),
), doc="The starting structure: exactly one of `file` or `build`.")

MD_TABLE = Table("[md]", (
    Key("ensemble", str, "nvt", "", "nve, nvt or pimd (ring-polymer path-integral MD)", check=_ensemble),
    Key("thermostat", str, None, "", "nve: none; nvt: langevin (default), nose_hoover_chain, csvr; "
        "pimd: pile_l (default), pile_g, langevin, none"),
    Key("temperature", float, 300.0, "K", "target temperature; also the temperature of the starting "
        "Maxwell-Boltzmann velocities", check=positive),
    Key("timestep", float, 0.5, "fs", "integration time step", check=positive),
    Key("steps", int, 20000, "", "number of steps of the run (a multiple of [output] every)", check=at_least(1)),
    Key("equilibration_steps", int, None, "", "steps left out of the summary averages (default: steps // 10)"),
    Key("beads", int, 1, "", "ring-polymer beads P (above 1 needs ensemble = 'pimd')", check=at_least(1)),
    Key("tau", float, 100.0, "fs", "thermostat time constant (the centroid's with PIMD)", check=positive),
    Key("seed", int, 0, "", "random seed: starting velocities, thermostat noise, potential init"),
    Key("pile_lambda", float, 0.5, "", "PIMD: PILE friction of the internal modes, gamma_k = 2 lambda w_k"),
    Key("splitting", str, "baoab", "", "PIMD: integrator splitting", choices=("baoab", "obabo")),
    Key("propagator", str, "exact", "", "PIMD: free ring-polymer propagator", choices=("exact", "cayley")),
    Key("nhc_length", int, 3, "", "thermostat = nose_hoover_chain: length of the chain"),
    Key("skin", float, 1.0, "A", "neighbor-list skin (PIMD adds 0.5 A for the ring-polymer radius)",
        check=non_negative),
    Key("neighbor_layout", str, "auto", "", "pairs, or cluster-pair lists for force fields; auto picks "
        "the faster one", choices=NEIGHBOR_LAYOUTS),
    Key("dtype", str, "float64", "", "floating-point precision of positions, forces and parameters",
        choices=("float32", "float64")),
    Key("block_steps", int, 1000, "", "steps per jit-compiled block (rounded to whole thermo rows)"),
    Key("remove_com", bool, None, "", "remove the centre-of-mass motion (PIMD: of the centroid). Default: "
        "on for translation-invariant potentials with nve/nvt, off with pimd"),
    Key("min_distance", float, 0.5, "A", "refuse a starting structure with two atoms closer than this"),
    Key("max_temperature_factor", float, 5.0, "", "stop when the temperature of a thermo row exceeds this "
        "multiple of the target (below 20 degrees of freedom, of the target times 20 / dof); nvt and pimd "
        "only (nve runs are watched by the drift guard); 0 = off", check=non_negative),
    Key("max_drift_eV_per_atom", float, 1.0, "eV/atom", "stop when the conserved quantity of a thermo row "
        "differs from its value at the start of the block by more than this per atom; 0 = off",
        check=non_negative),
    Key("max_force_eV_per_A", float, 1000.0, "eV/A", "stop when a force on an atom (any bead) exceeds this "
        "at any step; 0 = off", check=non_negative),
    Key("centroid_thermostat", bool, True, "", "PIMD: thermostat the centroid (false: TRPMD with PILE-L)"),
    Key("devices", int, 0, "", "PIMD: shard beads over this many devices (0 = all that divide beads)"),
    Key("bead_batch", int, 0, "", "PIMD: beads vmapped together per force call (0 = auto: 1 on CPU with a "
        "neighbor list, all beads otherwise and on GPU)"),
    Key("contraction", list, None, "", "PIMD with a sum potential: beads per term (0 = all beads), "
        "ring-polymer contraction"),
), doc="Dynamics: ensemble, thermostat, time step, length, precision.")

OUTPUT_TABLE = Table("[output]", (
    Key("directory", str, "runs/md", "", "run directory (refused if it exists and is not empty, "
        "unless --overwrite)"),
    Key("every", int, 10, "", "steps between thermo rows and trajectory frames", check=at_least(1)),
    Key("all_beads", bool, False, "", "PIMD: also write every bead to trajectory_beads.extxyz"),
    Key("velocities", bool, False, "", "add each atom's velocity (A/fs) to trajectory.extxyz frames "
        "(array `velocities`; PIMD: of the centroid)"),
    Key("forces", bool, False, "", "add each atom's force (eV/A) to trajectory.extxyz frames (array "
        "`forces`; PIMD: the bead-averaged force on the centroid)"),
), doc="What the run writes, and how often.")

PIMD_ONLY = {"md": ("pile_lambda", "splitting", "propagator", "centroid_thermostat", "devices", "bead_batch",
                    "contraction"),
             "output": ("all_beads",)}
"""Keys that apply to ``ensemble = "pimd"`` only (rejected with nve / nvt)."""

MD_DEFAULTS = MD_TABLE.defaults()
OUTPUT_DEFAULTS = OUTPUT_TABLE.defaults()
TOP_LEVEL = ("system", "potential", "md", "output")


def _pimd_only(table: str, ensemble) -> dict:
    if not isinstance(ensemble, str) or ensemble == "pimd" or ensemble not in THERMOSTATS:
        return {}
    return {k: f"applies to ensemble = 'pimd' only (this run has ensemble = {ensemble!r})"
            for k in PIMD_ONLY[table]}


def resolve_structure(config: dict, top_level) -> dict:
    """The checks every command that reads a structure and a potential shares:
    top-level tables among ``top_level``, [system] and [potential] present,
    exactly one of [system] file / build. Returns the resolved [system] table."""
    unknown = sorted(set(config) - set(top_level))
    if unknown:
        raise InputError(f"unknown key(s) in top level: {', '.join(unknown)} (allowed: {', '.join(top_level)})")
    for sect in ("system", "potential"):
        if sect not in config:
            raise InputError(f"configuration has no [{sect}] table")
    system = SYSTEM_TABLE.resolve(config["system"])
    if (system["file"] is None) == (system["build"] is None):
        raise InputError("[system] needs exactly one of 'file' or 'build'")
    return system


def resolve_config(config: dict) -> dict:
    """Fill defaults and validate a run configuration (metal units); returns a
    new dict. InputError naming the table and the key on any bad entry."""
    config = copy.deepcopy(config)
    system = resolve_structure(config, TOP_LEVEL)
    raw_md = config.get("md", {})
    ensemble = raw_md.get("ensemble", MD_DEFAULTS["ensemble"]) if isinstance(raw_md, dict) else None
    md = MD_TABLE.resolve(raw_md, inapplicable=_pimd_only("md", ensemble))
    if md["thermostat"] is None:
        md["thermostat"] = DEFAULT_THERMOSTAT[md["ensemble"]]
    if md["thermostat"] not in THERMOSTATS[md["ensemble"]]:
        raise InputError(f"[md] thermostat {md['thermostat']!r} does not go with ensemble {md['ensemble']!r} "
                         f"(use one of: {', '.join(THERMOSTATS[md['ensemble']])})")
    if md["beads"] != 1 and md["ensemble"] != "pimd":
        raise InputError("[md] beads > 1 needs ensemble = 'pimd'")
    if md["equilibration_steps"] is None:
        md["equilibration_steps"] = md["steps"] // 10
    if not 0 <= md["equilibration_steps"] < md["steps"]:
        raise InputError("[md] equilibration_steps must be >= 0 and below steps")
    from ..mapping import check_batch
    check_batch("[md] bead_batch", md["bead_batch"])
    rpc = md["contraction"]
    if rpc is not None:
        if not rpc or any(isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= md["beads"]
                          for n in rpc):
            raise InputError(f"[md] contraction must be a list of bead numbers, one per term of the sum "
                             f"potential, each between 1 and beads = {md['beads']} (0 = all beads); got {rpc!r}")
    out = OUTPUT_TABLE.resolve(config.get("output", {}), inapplicable=_pimd_only("output", ensemble))
    if md["steps"] % out["every"]:
        raise InputError(f"[md] steps ({md['steps']}) must be a multiple of [output] every ({out['every']})")
    config["system"], config["md"], config["output"] = system, md, out
    return config


def config_to_save(config: dict) -> dict:
    """The resolved configuration as ``config.toml`` holds it: without the
    path-integral keys of an nve / nvt run (they would not apply on restart)."""
    config = copy.deepcopy(config)
    if config["md"]["ensemble"] != "pimd":
        for table, keys in PIMD_ONLY.items():
            for k in keys:
                config[table].pop(k, None)
    return config


def saved_config(config: dict) -> dict:
    """A ``config.toml`` read back for a restart. Runs written before the
    path-integral keys were checked hold them, at their defaults, also for
    nve / nvt: those are dropped (any other value is still an error)."""
    config = copy.deepcopy(config)
    md = config.get("md", {})
    if isinstance(md, dict) and md.get("ensemble", MD_DEFAULTS["ensemble"]) != "pimd":
        for table, defaults in (("md", MD_DEFAULTS), ("output", OUTPUT_DEFAULTS)):
            section = config.get(table, {})
            for k in PIMD_ONLY[table]:
                if k in section and section[k] == defaults[k]:
                    del section[k]
    return config


def neighbor_skin(md: dict) -> float:
    """Neighbor-list skin (A) for an ``[md]`` table. PIMD lists are built from
    centroids and beads spread around them, so the skin also covers the
    ring-polymer radius (~0.3 A for H at 300 K): 0.5 A more."""
    return float(md["skin"]) + (0.5 if md["ensemble"] == "pimd" else 0.0)


def load_atoms(spec: dict, base_dir: Path | None = None):
    """The starting structure of a resolved ``[system]`` table as ``ase.Atoms``
    (a file read by ase.io, or a builder); A, amu, e."""
    if spec.get("build") is not None:
        from ..build import build_structure
        return build_structure(spec["build"])
    from ase.io import read

    path = Path(spec["file"])
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = base_dir / path
    if not path.is_file():
        raise InputError(f"structure file not found: {spec['file']}")
    try:
        index = spec.get("index")
        return read(path, index=-1 if index is None else index)
    except Exception as err:  # ase raises many kinds
        raise InputError(f"cannot read structure file {path}: {err}") from None


def load_system(spec: dict, base_dir: Path | None = None) -> System:
    """The starting structure from ``[system]`` (file read by ase.io, or a builder)."""
    return from_ase(load_atoms(spec, base_dir))


def starting_velocities(atoms):
    """(N, 3) velocities in A/fs from ``atoms`` (extxyz momenta or velocities
    that ase reads), or None when the file carries none (all zero)."""
    import numpy as np
    from ase import units as ase_units

    v = np.asarray(atoms.get_velocities(), dtype=np.float64)
    if not np.any(v != 0):
        return None
    return v * ase_units.fs    # ase velocity unit A / (A sqrt(amu/eV)) -> A/fs
