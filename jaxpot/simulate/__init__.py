"""The MD driver behind ``jaxpot md``: run configuration (:mod:`.config`),
engines per ensemble (:mod:`.engines`), the compiled block loop
(:mod:`.blocks`), outputs (:mod:`.output`) and :func:`run_md` (:mod:`.run`).
Keys and files: ``docs/config.md``, ``docs/outputs.md``; metal units.
"""
from ..assembly import cast_params
from ..errors import SimulationError
from .blocks import grow_neighbor_list, make_block, rows_per_block
from .config import (DEFAULT_THERMOSTAT, MD_DEFAULTS, MD_TABLE, OUTPUT_DEFAULTS, OUTPUT_TABLE, PIMD_ONLY,
                     SYSTEM_TABLE, THERMOSTATS, load_atoms, load_system, neighbor_skin, resolve_config,
                     starting_velocities)
from .engines import (FORCES_ONLY_MIN_ATOMS, Engine, classical_engine, pimd_engine, without_bead_energies,
                      without_potential_energy)
from .output import print_summary, summarize
from .run import run_md

__all__ = [
    "DEFAULT_THERMOSTAT", "Engine", "FORCES_ONLY_MIN_ATOMS", "MD_DEFAULTS", "MD_TABLE", "OUTPUT_DEFAULTS",
    "OUTPUT_TABLE", "PIMD_ONLY", "SYSTEM_TABLE", "SimulationError", "THERMOSTATS", "cast_params",
    "classical_engine", "grow_neighbor_list", "load_atoms", "load_system", "make_block", "neighbor_skin",
    "pimd_engine", "print_summary", "resolve_config", "rows_per_block", "run_md", "starting_velocities",
    "summarize", "without_bead_energies", "without_potential_energy",
]
