"""The choice of neighbor-list layout for a potential: a pair list
(:mod:`jaxpot.partition.pairs`) or a cluster-pair list
(:mod:`jaxpot.partition.clusters`), and the measured rule that picks one.

Lengths in A. The potential is read through the attributes that
:class:`NeighborRequest` declares, so this layer imports nothing from
``jaxpot.potentials`` (a layer above it).
"""
from __future__ import annotations

from typing import Callable, Optional, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from ..system import InputError
from .clusters import cluster_layout_problem, cluster_list
from .contract import NeighborFns
from .pairs import neighbor_list


class NeighborRequest(Protocol):
    """What :func:`neighbor_fns_for` reads from a potential (the fields of
    :class:`jaxpot.potentials.base.Potential` of the same names)."""

    name: str
    cutoff: float                          # A, the range the list must cover
    neighbor_images: str                   # "all" | "minimum"
    charges: Optional[Callable]            # None for potentials without charges
    cluster_exclusions: Optional[np.ndarray]   # (E, 2) pairs left out of cluster tiles; None: pairs only


NEIGHBOR_LAYOUTS = ("auto", "pairs", "clusters")
CLUSTER_MIN_ATOMS = 1000   # below this a pair list is as fast and needs no margin in the cell


def neighbor_fns_for(potential: NeighborRequest, cell, periodic: bool, n_atoms: int, *, skin: float,
                     layout: str = "auto", positions=None) -> NeighborFns:
    """Neighbor-list functions for a potential: a cluster-pair list
    (:func:`jaxpot.partition.clusters.cluster_list`) or a pair list
    (:func:`jaxpot.partition.pairs.neighbor_list`).

    layout: "pairs"; "clusters" (an error naming the reason where the
    potential or cell cannot use one); "auto": clusters for potentials that
    can read them (``Potential.cluster_exclusions``) in orthorhombic cells
    wide enough, with at least ``CLUSTER_MIN_ATOMS`` atoms, where they are
    the faster layout, else pairs. Faster, as measured: always on GPUs; on
    CPU with Coulomb (the pair function's cost dwarfs the gathers; villin
    1.3x in float64, 2.4x in float32) or in float32 (LJ argon 4000: 1.25x),
    but not for plain LJ in float64 (0.4x: a dilute fluid's clusters are
    wide, so tiles hold ~8x more distances than the cutoff sphere).
    With ``positions`` (N, 3) A, "auto" also checks that this structure's
    clusters are compact enough for the cell (else pairs).

    potential: anything with the attributes of :class:`NeighborRequest`
    (read, never imported: :class:`jaxpot.potentials.Potential` has them);
    cell (3, 3) A, skin A."""
    if layout not in NEIGHBOR_LAYOUTS:
        raise InputError(f"unknown neighbor layout {layout!r} (use one of {', '.join(NEIGHBOR_LAYOUTS)})")
    why = None
    if potential.cluster_exclusions is None:
        why = f"potential {potential.name!r} reads only pair lists"
    elif potential.neighbor_images != "all":
        why = "the minimum-image convention needs a pair list"
    else:
        why = cluster_layout_problem(cell, potential.cutoff, skin, periodic)
    if layout == "clusters" and why:
        raise InputError(f"neighbor layout 'clusters' is not possible: {why}")
    faster = (jax.default_backend() != "cpu" or potential.charges is not None
              or (positions is not None and jnp.asarray(positions).dtype == jnp.float32))
    if layout == "clusters" or (layout == "auto" and why is None and n_atoms >= CLUSTER_MIN_ATOMS and faster):
        fns = cluster_list(potential.cutoff, cell, n_atoms, skin=skin, excluded=potential.cluster_exclusions)
        if layout == "clusters" or positions is None or fns.fits(positions, cell):
            return fns
    return neighbor_list(potential.cutoff, np.asarray(cell), periodic, skin=skin,
                         images=potential.neighbor_images)
