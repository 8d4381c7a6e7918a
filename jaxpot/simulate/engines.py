"""The engines of the MD driver: what :func:`jaxpot.simulate.run_md` needs
from an ensemble (classical MD or ring-polymer PIMD), as an :class:`Engine`
of jit-able functions, plus the device mesh that shards beads.

Units: positions A, momenta amu A/fs, energies eV, temperatures K, pressure
bar. The integrators are those of :mod:`jaxpot.dynamics.integrators`
(velocity Verlet; Langevin BAOAB, Nose-Hoover chains, CSVR: Bussi, Donadio
and Parrinello, J. Chem. Phys. 126, 014101 (2007)) and
:mod:`jaxpot.dynamics.pimd` (PILE: Ceriotti, Parrinello, Markland and
Manolopoulos, J. Chem. Phys. 133, 124104 (2010)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import units
from ..dynamics import quantity
from ..dynamics.observables import EV_A3_TO_BAR
from ..errors import InputError
from ..potentials.base import bind, virial
from ..space import volume
from ..system import System


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
    # per-atom arrays a trajectory frame may carry: name -> state -> (N, 3)
    # (velocities A/fs, forces eV/A; PIMD: of the centroid)
    frame_arrays: dict | None = None


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


def classical_engine(pot, params, system, context, md, velocities=None) -> Engine:
    """The engine of ``ensemble = "nve"`` / ``"nvt"``; returns (engine,
    elements, degrees of freedom). ``velocities`` (N, 3) A/fs start the run
    (None: Maxwell-Boltzmann at ``[md] temperature``)."""
    from ..dynamics import integrators as integ

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
        if velocities is not None:
            return init_fn(key, system.positions, system.masses,
                           jnp.asarray(velocities, system.positions.dtype), neighbors=nbr)
        return init_fn(key, system.positions, system.masses, neighbors=nbr)

    def observe(state, nbr):
        k_atom = quantity.per_atom_kinetic_energy(state.momenta, state.masses)
        kin = jnp.sum(k_atom)
        row = {
            "temperature_K": quantity.temperature(kin, n_dof),
            "potential_energy_eV": state.potential_energy.astype(jnp.float64),
            "kinetic_energy_eV": kin,
            "conserved_eV": integ.conserved_energy(state).astype(jnp.float64),
            "kinetic_energy_per_atom_eV": quantity.per_element_kinetic_energy(k_atom, avg),
        }
        if periodic:
            w = vir(params, state.positions, context.replace(neighbors=nbr))
            row["pressure_bar"] = quantity.pressure(kin, w, volume(context.cell)) * EV_A3_TO_BAR
        return row

    columns = ["temperature_K", "potential_energy_eV", "kinetic_energy_eV", "conserved_eV"]
    if periodic:
        columns.append("pressure_bar")
    skip = without_potential_energy if system.n_atoms >= FORCES_ONLY_MIN_ATOMS else None
    arrays = {"velocities": lambda s: s.momenta / s.masses[:, None], "forces": lambda s: s.forces}
    return Engine(init=init, step=lambda s, nbr: step_fn(s, neighbors=nbr), observe=observe,
                  frame=lambda s: s.positions, nbr_positions=lambda s: (s.positions, None),
                  columns=tuple(columns), without_energy=skip, frame_arrays=arrays), elements, n_dof


def pimd_engine(pot, params, system, context, md) -> Engine:
    """The engine of ``ensemble = "pimd"``; returns (engine, elements, degrees
    of freedom). Momenta are sampled at P T. With ``[md] remove_com = true``
    the centroid's centre-of-mass momentum is zeroed at the start and after
    every thermostat step (off by default)."""
    from ..dynamics import pimd as pm

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
                               remove_com=bool(md.get("remove_com") or False),
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
            "kinetic_energy_per_atom_eV": quantity.per_element_kinetic_energy(
                est["kinetic_cv_per_atom"].astype(jnp.float64), avg),
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
    # centroid velocity (bead-averaged momentum / mass, A/fs) and the force on the centroid (bead average, eV/A)
    arrays = {"velocities": lambda s: jnp.mean(s.momenta, axis=-3) / s.masses[:, None],
              "forces": lambda s: jnp.mean(s.forces, axis=-3)}
    return Engine(init=init, step=lambda s, nbr: step_fn(s, neighbors=nbr), observe=observe,
                  frame=frame, nbr_positions=nbr_positions, columns=columns,
                  beads=lambda s: s.positions, place=place, shard=shard, without_energy=skip,
                  frame_arrays=arrays), elements, n_dof


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
