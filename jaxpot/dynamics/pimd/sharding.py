"""Distribution of ring-polymer states over a device mesh (beads and
independent replicas are plain array axes; XLA inserts the collectives of
the normal-mode transform).
"""
from __future__ import annotations

from typing import Optional

import jax

from ...system import InputError
from .state import PIMDState


def shard_beads(state: PIMDState, mesh, bead_axis: str = "beads",
                replica_axis: Optional[str] = None) -> PIMDState:
    """Place a state on ``mesh`` (a ``jax.sharding.Mesh``) with the bead axis
    of positions, momenta, forces and energies split over the mesh axis
    ``bead_axis``; everything else replicated. For a batch of independent
    replicas (a state built with ``jax.vmap(init_fn)``, leading replica axis
    on every leaf) pass ``replica_axis`` to split that axis too.
    The jitted step then runs as one SPMD program; XLA inserts the
    collectives of the normal-mode transform. P must divide evenly by the
    mesh's bead-axis size."""
    from jax.sharding import NamedSharding, PartitionSpec as Spec

    if bead_axis not in mesh.axis_names:
        raise InputError(f"mesh has no axis {bead_axis!r} (axes: {mesh.axis_names})")
    if replica_axis is not None and replica_axis not in mesh.axis_names:
        raise InputError(f"mesh has no axis {replica_axis!r} (axes: {mesh.axis_names})")
    P = state.positions.shape[-3]
    n_dev = mesh.shape[bead_axis]
    if P % n_dev:
        raise InputError(f"{P} beads do not divide over {n_dev} devices on mesh axis {bead_axis!r}")
    lead = () if replica_axis is None else (replica_axis,)

    def put(x, bead_dims):
        spec = lead + ((bead_axis,) + (None,) * (bead_dims - 1) if bead_dims else ())
        return jax.device_put(x, NamedSharding(mesh, Spec(*spec)))

    return state.replace(
        positions=put(state.positions, 3), momenta=put(state.momenta, 3),
        forces=put(state.forces, 3), energies=put(state.energies, 1),
        masses=put(state.masses, 0), key=put(state.key, 0),
        heat=put(state.heat, 0), kT=put(state.kT, 0),
    )
