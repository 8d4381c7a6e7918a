"""The MD driver: a ``[system]/[potential]/[md]/[output]`` configuration in,
a run directory out (``../shared/API.md``).

The loop is one jit-compiled block of many steps (``lax.scan`` of ``every``
steps per thermo row, rows per block), with the neighbor list updated inside
the block and observables reduced on device; rows and frames leave the
device once per block. After each block the host checks for neighbor-list
overflow (then the block is re-run from its starting state with a larger
list, so no pair is ever silently missed) and for non-finite energies (then
the rows before the failure, the trajectory and a checkpoint of the last good
state are kept and the run stops with a one-line reason).
"""
from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import io, units
from .build import build_structure
from .clusters import NEIGHBOR_LAYOUTS, neighbor_fns_for
from .potentials import build_potential
from .potentials.base import Context, bind, virial
from .space import volume
from .system import InputError, System, check_min_distance, from_ase, to_ase


class SimulationError(RuntimeError):
    """A run that had to stop (non-finite energies, ...); outputs are kept."""


MD_DEFAULTS = {
    "ensemble": "nvt",
    "thermostat": None,            # resolved by ensemble
    "temperature": 300.0,          # K
    "timestep": 0.5,               # fs
    "steps": 20000,
    "equilibration_steps": None,   # default: steps // 10
    "beads": 1,
    "tau": 100.0,                  # fs
    "seed": 0,
    "pile_lambda": 0.5,
    "splitting": "baoab",
    "propagator": "exact",
    "nhc_length": 3,
    "skin": 1.0,                   # A, neighbor-list skin
    "neighbor_layout": "auto",     # auto | pairs | clusters (cluster-pair lists for force fields)
    "dtype": "float64",            # float64 | float32
    "block_steps": 1000,           # steps per jit-compiled block (rounded to rows)
    "remove_com": None,            # default: when the potential is translation invariant (classical)
    "min_distance": 0.5,           # A, sanity check on the starting structure
    "centroid_thermostat": True,   # PIMD: False gives TRPMD with PILE-L internal modes
    "devices": 0,                  # PIMD: shard beads over this many devices (0 = all that divide P)
    "bead_batch": 0,               # PIMD: beads vmapped together per force call (0 = auto: 1 on CPU
                                   # with a neighbor list, all beads otherwise and on GPU)
    "contraction": None,           # PIMD, sum potentials: beads per term (0 = all), ring-polymer contraction
}
OUTPUT_DEFAULTS = {"directory": "runs/md", "every": 10, "all_beads": False}
THERMOSTATS = {"nve": ("none",), "nvt": ("langevin", "nose_hoover_chain", "csvr"),
               "pimd": ("pile_l", "pile_g", "langevin", "none")}
DEFAULT_THERMOSTAT = {"nve": "none", "nvt": "langevin", "pimd": "pile_l"}


def _check_keys(table: dict, allowed, where: str):
    unknown = set(table) - set(allowed)
    if unknown:
        raise InputError(f"unknown key(s) in [{where}]: {', '.join(sorted(unknown))}")


def resolve_config(config: dict) -> dict:
    """Fill defaults and validate a run configuration (metal units)."""
    config = copy.deepcopy(config)
    _check_keys(config, ("system", "potential", "md", "output"), "top level")
    for sect in ("system", "potential"):
        if sect not in config:
            raise InputError(f"configuration has no [{sect}] table")
    system = config["system"]
    _check_keys(system, ("file", "build", "index"), "system")
    if ("file" in system) == ("build" in system):
        raise InputError("[system] needs exactly one of 'file' or 'build'")
    md = config.get("md", {})
    _check_keys(md, MD_DEFAULTS, "md")
    md = {**MD_DEFAULTS, **md}
    if md["ensemble"] not in THERMOSTATS:
        raise InputError(f"unknown ensemble {md['ensemble']!r} (nve | nvt | pimd)")
    if md["thermostat"] is None:
        md["thermostat"] = DEFAULT_THERMOSTAT[md["ensemble"]]
    if md["thermostat"] not in THERMOSTATS[md["ensemble"]]:
        raise InputError(f"thermostat {md['thermostat']!r} does not go with ensemble {md['ensemble']!r} "
                         f"(use one of: {', '.join(THERMOSTATS[md['ensemble']])})")
    if md["neighbor_layout"] not in NEIGHBOR_LAYOUTS:
        raise InputError(f"unknown neighbor_layout {md['neighbor_layout']!r} (use one of: "
                         f"{', '.join(NEIGHBOR_LAYOUTS)})")
    if md["beads"] != 1 and md["ensemble"] != "pimd":
        raise InputError("beads > 1 needs ensemble = 'pimd'")
    if md["ensemble"] == "pimd" and int(md["beads"]) < 1:
        raise InputError("beads must be >= 1")
    for key in ("temperature", "timestep", "tau"):
        if not float(md[key]) > 0:
            raise InputError(f"[md] {key} must be positive, got {md[key]}")
    if int(md["steps"]) < 1:
        raise InputError("[md] steps must be >= 1")
    if md["equilibration_steps"] is None:
        md["equilibration_steps"] = int(md["steps"]) // 10
    if not 0 <= int(md["equilibration_steps"]) < int(md["steps"]):
        raise InputError("[md] equilibration_steps must be >= 0 and below steps")
    from .mapping import check_batch
    check_batch("[md] bead_batch", md["bead_batch"])
    rpc = md["contraction"]
    if rpc is not None:
        if md["ensemble"] != "pimd":
            raise InputError("[md] contraction needs ensemble = 'pimd'")
        if not isinstance(rpc, list) or not rpc or any(
                isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= int(md["beads"]) for n in rpc):
            raise InputError(f"[md] contraction must be a list of bead numbers, one per term of the sum "
                             f"potential, each between 1 and beads = {md['beads']} (0 = all beads); got {rpc!r}")
    if md["dtype"] not in ("float32", "float64"):
        raise InputError(f"[md] dtype must be 'float32' or 'float64', got {md['dtype']!r}")
    out = config.get("output", {})
    _check_keys(out, OUTPUT_DEFAULTS, "output")
    out = {**OUTPUT_DEFAULTS, **out}
    if int(out["every"]) < 1:
        raise InputError("[output] every must be >= 1")
    if int(md["steps"]) % int(out["every"]):
        raise InputError(f"[md] steps ({md['steps']}) must be a multiple of [output] every ({out['every']})")
    config["md"], config["output"] = md, out
    return config


def load_system(spec: dict, base_dir: Path | None = None) -> System:
    """The starting structure from ``[system]`` (file read by ase.io, or a builder)."""
    if "build" in spec:
        atoms = build_structure(spec["build"])
    else:
        from ase.io import read

        path = Path(spec["file"])
        if not path.is_absolute() and base_dir is not None and not path.exists():
            path = base_dir / path
        if not path.is_file():
            raise InputError(f"structure file not found: {spec['file']}")
        try:
            atoms = read(path, index=spec.get("index", -1))
        except Exception as err:  # ase raises many kinds
            raise InputError(f"cannot read structure file {path}: {err}") from None
    return from_ase(atoms)


@dataclass
class Engine:
    """What the driver needs from an ensemble (classical or ring polymer)."""
    init: Callable           # key -> state
    step: Callable           # (state, neighbors) -> state
    observe: Callable        # state -> dict of per-row scalars / arrays
    frame: Callable          # state -> (N, 3) positions to write
    nbr_positions: Callable  # state -> (positions for the rebuild check, build reference)
    columns: tuple           # thermo columns besides step and time_fs
    beads: Callable | None = None   # state -> (P, N, 3) bead positions (PIMD)
    place: Callable = lambda x: x   # puts host-built pytrees (neighbor lists) where the state lives
    shard: Callable = lambda s: s   # distributes a state restored from a checkpoint
    # state -> state with its potential energy marked unknown (NaN): steps
    # between observed rows then leave the energy unused, and XLA drops its
    # evaluation from the force pass (None: every step computes it)
    without_energy: Callable | None = None


def _element_groups(system: System):
    z = np.asarray(system.species)
    elements = sorted(set(int(x) for x in z))
    onehot = np.stack([(z == e).astype(np.float64) for e in elements])  # (E, N)
    return elements, onehot / onehot.sum(axis=1, keepdims=True)


# Engines of at least this many atoms (times beads) compute the potential
# energy only on the steps that report it. The block then holds a second
# compiled copy of the step (about 1 s more compile for villin): for small
# systems the energy costs less than that.
FORCES_ONLY_MIN_ATOMS = 1000


def without_potential_energy(state):
    """An MDState with its potential energy marked unknown (NaN, eV)."""
    return state.replace(potential_energy=jnp.full_like(state.potential_energy, jnp.nan))


def without_bead_energies(state):
    """A PIMDState with its bead energies marked unknown (NaN, eV)."""
    return state.replace(energies=jnp.full_like(state.energies, jnp.nan))


def classical_engine(pot, params, system, context, md) -> Engine:
    from .dynamics import integrators as integ

    kT = units.KB * float(md["temperature"])
    remove_com = md["remove_com"]
    if remove_com is None:
        remove_com = bool(pot.translation_invariant)
    energy_fn = bind(pot, params, context)
    kwargs = {}
    if md["thermostat"] == "nose_hoover_chain":
        kwargs["chain_length"] = int(md["nhc_length"])
    init_fn, step_fn = integ.make_integrator(md["thermostat"], energy_fn, float(md["timestep"]), kT,
                                             float(md["tau"]), remove_com, **kwargs)
    n_dof = integ.n_degrees_of_freedom(system.n_atoms, remove_com)
    elements, avg = _element_groups(system)
    avg = jnp.asarray(avg)
    vir = virial(pot)
    periodic = system.periodic

    def init(key, nbr):
        return init_fn(key, system.positions, system.masses, neighbors=nbr)

    def observe(state, nbr):
        k_atom = 0.5 * jnp.sum(state.momenta ** 2, axis=-1) / state.masses * units.MVV2E
        kin = jnp.sum(k_atom.astype(jnp.float64))
        row = {
            "temperature_K": 2.0 * kin / (n_dof * units.KB),
            "potential_energy_eV": state.potential_energy.astype(jnp.float64),
            "kinetic_energy_eV": kin,
            "conserved_eV": integ.conserved_energy(state).astype(jnp.float64),
            "kinetic_energy_per_atom_eV": avg @ k_atom.astype(jnp.float64),
        }
        if periodic:
            w = vir(params, state.positions, context.replace(neighbors=nbr))
            vol = volume(context.cell)
            row["pressure_bar"] = (2.0 * kin + jnp.trace(w)) / (3.0 * vol) * units.EV_A3_TO_GPA * 1e4
        return row

    columns = ["temperature_K", "potential_energy_eV", "kinetic_energy_eV", "conserved_eV"]
    if periodic:
        columns.append("pressure_bar")
    skip = without_potential_energy if system.n_atoms >= FORCES_ONLY_MIN_ATOMS else None
    return Engine(init=init, step=lambda s, nbr: step_fn(s, neighbors=nbr), observe=observe,
                  frame=lambda s: s.positions, nbr_positions=lambda s: (s.positions, None),
                  columns=tuple(columns), without_energy=skip), elements, n_dof


def pimd_engine(pot, params, system, context, md) -> Engine:
    from .dynamics import pimd as pm

    kT = units.KB * float(md["temperature"])
    energy_fn = bind(pot, params, context)
    n_beads = int(md["beads"])
    mesh = _bead_mesh(n_beads, int(md["devices"]))
    groups = 1 if mesh is None else mesh.shape["beads"]
    bead_batch = int(md.get("bead_batch", 0))
    force_fn = None
    if md.get("contraction") is not None:
        rpc = list(md["contraction"])
        if not pot.terms or len(pot.terms) != len(rpc):
            raise InputError(f"[md] contraction lists {len(rpc)} bead number(s): it needs [potential] "
                             f"kind = 'sum' with as many terms (this potential has "
                             f"{len(pot.terms) or 'no'} terms)")
        force_fn = pm.contracted_energy_and_forces(
            [(bind(t, p, context), n) for t, p, n in zip(pot.terms, params, rpc)], n_beads,
            bead_batch=bead_batch, groups=groups)
    init_fn, step_fn = pm.pimd(energy_fn, float(md["timestep"]), kT, n_beads, force_fn=force_fn,
                               thermostat=md["thermostat"], tau=float(md["tau"]),
                               pile_lambda=float(md["pile_lambda"]), splitting=md["splitting"],
                               propagator=md["propagator"],
                               centroid_thermostat=bool(md["centroid_thermostat"]),
                               bead_batch=bead_batch, bead_groups=groups)
    elements, avg = _element_groups(system)
    avg = jnp.asarray(avg)
    n_dof = 3 * system.n_atoms

    def shard(state):
        # one SPMD program: beads split over devices, XLA inserts the
        # collectives of the normal-mode transform
        return state if mesh is None else pm.shard_beads(state, mesh)

    def init(key, nbr):
        return shard(init_fn(key, system.positions, system.masses, neighbors=nbr))

    def observe(state, nbr):
        est = pm.estimators(state, kT)
        return {
            # kinetic temperature of the ring-polymer momenta (sampled at P T), divided by P
            "temperature_K": est["temperature"].astype(jnp.float64),
            "potential_energy_eV": est["potential"].astype(jnp.float64),
            "kinetic_energy_eV": est["kinetic_cv"].astype(jnp.float64),
            "kinetic_energy_primitive_eV": est["kinetic_primitive"].astype(jnp.float64),
            "conserved_eV": est["conserved"].astype(jnp.float64),
            "spring_energy_eV": est["spring"].astype(jnp.float64),
            "kinetic_energy_per_atom_eV": avg @ est["kinetic_cv_per_atom"].astype(jnp.float64),
        }

    def frame(state):
        return pm.centroid(state)

    def nbr_positions(state):
        return state.positions, pm.centroid(state)

    columns = ("temperature_K", "potential_energy_eV", "kinetic_energy_eV", "conserved_eV",
               "kinetic_energy_primitive_eV", "spring_energy_eV")
    def place(tree):
        if mesh is None or tree is None:
            return tree
        from jax.sharding import NamedSharding, PartitionSpec
        return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))

    skip = without_bead_energies if system.n_atoms * n_beads >= FORCES_ONLY_MIN_ATOMS else None
    return Engine(init=init, step=lambda s, nbr: step_fn(s, neighbors=nbr), observe=observe,
                  frame=frame, nbr_positions=nbr_positions, columns=columns,
                  beads=lambda s: s.positions, place=place, shard=shard, without_energy=skip), elements, n_dof


def _bead_mesh(n_beads: int, devices: int):
    """A 1-D device mesh over the bead axis, or None for one device."""
    avail = jax.devices()
    if devices < 0 or devices > len(avail):
        raise InputError(f"[md] devices = {devices}, but {len(avail)} device(s) are available")
    n = devices or len(avail)
    while n > 1 and n_beads % n:
        n -= 1
    if devices and n != devices:
        raise InputError(f"{n_beads} beads do not divide over [md] devices = {devices}")
    if n <= 1:
        return None
    from jax.sharding import Mesh
    return Mesh(np.asarray(avail[:n]), ("beads",))


def neighbor_skin(md: dict) -> float:
    """Neighbor-list skin (A) for an ``[md]`` table. PIMD lists are built from
    centroids and beads spread around them, so the skin also covers the
    ring-polymer radius (~0.3 A for H at 300 K): 0.5 A more."""
    return float(md["skin"]) + (0.5 if md["ensemble"] == "pimd" else 0.0)


def cast_params(tree, dtype):
    """Floating leaves of a params pytree in ``dtype`` (integers untouched)."""
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, tree)


def make_block(engine: Engine, nbr_fns, cell, every: int, rows: int, write_beads: bool = False):
    """The jit-able block of ``every * rows`` steps that ``run_md`` compiles:
    ``block((state, nbr)) -> ((state, nbr), (rows of observables, frames))``.

    The neighbor list is updated inside every step (rebuilt on device when an
    atom moved more than skin/2); observables are reduced on device once per
    row. As in OpenMM or i-PI, the potential energy is evaluated only where
    it is reported: the row's other steps compute forces alone, when the
    engine allows it (``Engine.without_energy``). Benchmarks time this same
    function."""
    def one_step(carry, _, energy=True):
        state, nbr = carry
        if nbr_fns is not None:
            check, ref = engine.nbr_positions(state)
            nbr = nbr_fns.update(check, nbr, cell, reference=ref)
        state = engine.step(state, nbr)
        if not energy:
            state = engine.without_energy(state)
        return (state, nbr), None

    forces_only = engine.without_energy is not None and every > 1

    def one_row(carry, _):
        if forces_only:
            carry, _ = jax.lax.scan(functools.partial(one_step, energy=False), carry, None, length=every - 1)
            carry, _ = one_step(carry, None)
        else:
            carry, _ = jax.lax.scan(one_step, carry, None, length=every)
        frame = engine.beads(carry[0]) if write_beads else engine.frame(carry[0])
        return carry, (engine.observe(*carry), frame)

    def block(carry):
        return jax.lax.scan(one_row, carry, None, length=rows)

    return block


def grow_neighbor_list(engine: Engine, nbr_fns, state, overflowed, cell):
    """A larger list for re-running a block from ``state`` after ``overflowed``
    (the block's final list) reported an overflow; placed where the state lives."""
    check, ref = engine.nbr_positions(state)
    bigger = nbr_fns.reallocate(overflowed, check if ref is None else ref, cell)
    return engine.place(bigger.replace(overflow=jnp.zeros_like(bigger.overflow)))


def _rows_per_block(n_rows: int, target: int) -> int:
    target = max(1, min(n_rows, target))
    for k in range(target, 0, -1):
        if n_rows % k == 0:
            return k
    return 1


def run_md(config: dict, *, overwrite: bool = False, restart: str | Path | None = None,
           progress: bool = True, base_dir: Path | None = None) -> dict:
    """Run MD/PIMD from a configuration dict; returns the summary dict.

    With ``restart`` (a run directory) the saved config and checkpoint are
    used and the run continues bit-identically to its requested ``steps``."""
    if restart is not None:
        run_dir = Path(restart)
        config = io.read_toml(run_dir / io.CONFIG)
        config = resolve_config(config)
        leaves, meta = io.load_checkpoint(run_dir / io.CHECKPOINT)
    else:
        config = resolve_config(config)
        run_dir = io.prepare_directory(config["output"]["directory"], overwrite=overwrite)
        meta = None
    md, out = config["md"], config["output"]
    dtype = jnp.float32 if md["dtype"] == "float32" else jnp.float64

    if restart is not None and (run_dir / "start.extxyz").exists():
        from ase.io import read
        system = from_ase(read(run_dir / "start.extxyz"), dtype=dtype)
    else:
        system = load_system(config["system"], base_dir)
        system = from_ase(to_ase(system), dtype=dtype)
    check_min_distance(system, float(md["min_distance"]))
    pot = build_potential(config["potential"], system)
    config["potential"] = {**config["potential"], **pot.config}
    key = jax.random.PRNGKey(int(md["seed"]))
    key, pkey = jax.random.split(key)
    params = cast_params(pot.init(pkey, system), dtype)
    context = Context(species=system.species, cell=system.cell, neighbors=None, charges=system.charges)

    nbr_fns = None
    nbr = None
    if pot.cutoff > 0:
        skin = neighbor_skin(md)
        if system.periodic and pot.neighbor_images == "minimum":
            from .neighbors import cutoff_scheme_hint
            from .space import perpendicular_widths
            if perpendicular_widths(np.asarray(system.cell)).min() < 2 * pot.cutoff:
                import sys
                print(f"jaxpot: note: {cutoff_scheme_hint(np.asarray(system.cell), pot.cutoff)}; "
                      "running with images='minimum' as configured", file=sys.stderr)
        nbr_fns = neighbor_fns_for(pot, np.asarray(system.cell), system.periodic, system.n_atoms, skin=skin,
                                   layout=md["neighbor_layout"], positions=system.positions)
        nbr = nbr_fns.allocate(system.positions, system.cell)
        if nbr.did_overflow():   # the starting forces must come from a complete list
            nbr = nbr_fns.reallocate(nbr, system.positions, system.cell)
        if meta is not None:
            # the exact saved capacities, so the checkpoint's arrays fit
            nbr = nbr_fns._build_jit(system.positions, system.cell, int(meta["nbr_capacity"]),
                                     int(meta["nbr_row_capacity"]), int(meta.get("nbr_cell_capacity", 0)))

    if md["ensemble"] == "pimd":
        engine, elements, n_dof = pimd_engine(pot, params, system, context, md)
    else:
        engine, elements, n_dof = classical_engine(pot, params, system, context, md)

    state = engine.init(key, nbr)
    nbr = engine.place(nbr)
    start_step = 0
    if meta is not None:
        state, nbr = io.restore_like((state, nbr), leaves)
        state, nbr = engine.shard(state), engine.place(nbr)
        start_step = int(meta["step"])
    else:
        io.write_toml(run_dir / io.CONFIG, config)
        from ase.io import write
        write(run_dir / "start.extxyz", to_ase(system), format="extxyz")

    every = int(out["every"])
    n_steps = int(md["steps"])
    dt = float(md["timestep"])
    n_rows_total = n_steps // every
    rows_per_block = _rows_per_block(n_rows_total, max(1, int(md["block_steps"]) // every))
    from ase.data import chemical_symbols
    el_names = [chemical_symbols[e] for e in elements]
    columns = ["step", "time_fs", *engine.columns] + [f"kinetic_energy_per_atom_{s}_eV" for s in el_names]
    thermo = io.ThermoLog(run_dir / io.THERMO, columns, append=meta is not None)
    if meta is not None:
        io.truncate_thermo(run_dir / io.THERMO, start_step)
        io.truncate_trajectory(run_dir / io.TRAJECTORY, start_step)
        io.truncate_trajectory(run_dir / "trajectory_beads.extxyz", start_step)

    write_beads = bool(out["all_beads"]) and engine.beads is not None
    block_jit = jax.jit(make_block(engine, nbr_fns, system.cell, every, rows_per_block, write_beads))
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
    try:
        while step < n_steps:
            t1 = time.perf_counter()
            new_carry, (rows, frames) = compiled((state, nbr))
            jax.block_until_ready(new_carry)
            elapsed = time.perf_counter() - t1
            if nbr_fns is not None and bool(new_carry[1].overflow):
                # re-run this block from its start with a larger list
                nbr = grow_neighbor_list(engine, nbr_fns, state, new_carry[1], system.cell)
                t0 = time.perf_counter()
                compiled = block_jit.lower((state, nbr)).compile()
                compile_seconds += time.perf_counter() - t0
                continue
            rows = {k: np.asarray(v) for k, v in rows.items()}
            frames = np.asarray(frames)
            steps_here = every * (np.arange(rows_per_block) + 1) + step
            good = np.isfinite(rows["potential_energy_eV"]) & np.isfinite(rows["conserved_eV"])
            n_good = int(np.argmin(good)) if not good.all() else rows_per_block
            _write_rows(thermo, rows, steps_here, dt, el_names, engine.columns, n_good)
            if write_beads:
                _write_frames(run_dir / io.TRAJECTORY, positions_atoms, frames[:n_good].mean(axis=1),
                              steps_here, dt)
                _write_frames(run_dir / "trajectory_beads.extxyz", positions_atoms, frames[:n_good],
                              steps_here, dt)
            else:
                _write_frames(run_dir / io.TRAJECTORY, positions_atoms, frames[:n_good], steps_here, dt)
            if n_good < rows_per_block:
                _save(run_dir, (state, nbr), step, nbr, compile_seconds, run_seconds, steps_timed)
                raise SimulationError(
                    f"non-finite energy at step {int(steps_here[n_good])} (last finite row at step "
                    f"{int(steps_here[n_good - 1]) if n_good else step}); rows, frames and a checkpoint "
                    f"at step {step} are kept in {run_dir}")
            state, nbr = new_carry
            step += every * rows_per_block
            run_seconds += elapsed
            steps_timed += every * rows_per_block
            _save(run_dir, (state, nbr), step, nbr, compile_seconds, run_seconds, steps_timed)
            if bar is not None:
                bar.update(every * rows_per_block)
                bar.set_postfix(T=f"{rows['temperature_K'][-1]:.1f}K",
                                U=f"{rows['potential_energy_eV'][-1]:.3f}eV")
    finally:
        if bar is not None:
            bar.close()

    summary = summarize(run_dir, config, system, el_names, compile_seconds,
                        steps_timed / run_seconds if run_seconds > 0 else float("nan"))
    io.write_json(run_dir / io.SUMMARY, summary)
    return summary


def _save(run_dir, carry, step, nbr, compile_seconds, run_seconds, steps_timed):
    meta = {"step": int(step), "compile_seconds": compile_seconds, "run_seconds": run_seconds,
            "steps_timed": steps_timed,
            "nbr_capacity": int(nbr.capacity) if nbr is not None else 0,
            "nbr_row_capacity": int(nbr.row_capacity) if nbr is not None else 0,
            "nbr_cell_capacity": int(nbr.cell_capacity) if nbr is not None else 0}
    io.save_checkpoint(Path(run_dir) / io.CHECKPOINT, carry, meta)


def _write_rows(thermo, rows, steps_here, dt, el_names, columns, n):
    if n == 0:
        return
    out = {"step": steps_here[:n], "time_fs": steps_here[:n] * dt}
    for c in columns:
        out[c] = rows[c][:n]
    for k, s in enumerate(el_names):
        out[f"kinetic_energy_per_atom_{s}_eV"] = rows["kinetic_energy_per_atom_eV"][:n, k]
    thermo.write(out)


def _write_frames(path, template, frames, steps_here, dt):
    """Frames (F, N, 3), or (F, P, N, 3) for all beads (one extxyz frame per
    bead, with ``bead`` in its info)."""
    if len(frames) == 0:
        return
    atoms_list = []
    for k, pos in enumerate(frames):
        beads = pos[None] if pos.ndim == 2 else pos
        for b, x in enumerate(beads):
            a = template.copy()
            a.set_positions(np.asarray(x, dtype=np.float64))
            a.info = {"step": int(steps_here[k]), "time_fs": float(steps_here[k] * dt)}
            if pos.ndim == 3:
                a.info["bead"] = b
            atoms_list.append(a)
    io.append_frames(path, atoms_list)


def summarize(run_dir, config, system, el_names, compile_seconds, steps_per_second) -> dict:
    """summary.json from thermo.csv: production averages with block-averaged
    standard errors, conserved-quantity drift (eV/ps/atom) and speed."""
    from .dynamics.observables import block_average

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
