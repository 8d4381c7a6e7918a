"""The declared contract shared by jaxpot's neighbor lists: the pair list
(:mod:`jaxpot.partition.pairs`, layout ``"pairs"``) and the cluster-pair list
(:mod:`jaxpot.partition.clusters`, layout ``"clusters"``).

Modelled on JAX MD's ``partition.NeighborListFns`` / ``NeighborList``
(Schoenholz and Cubuk, "JAX MD: a framework for differentiable physics",
NeurIPS 2020): a host-side ``allocate`` that sizes static capacities, a
jit-able ``update`` that rebuilds at those capacities, and an overflow flag
the host checks. Two ``typing.Protocol`` classes, both
``runtime_checkable``:

- :class:`NeighborListLike`: the list itself, a pytree carried through the
  integrator's step (``neighbors=`` of ``Context``);
- :class:`NeighborFns`: the object that builds and updates lists for one
  cutoff and one fixed cell.

Lengths in A. Nothing here computes; the concrete classes are
:class:`jaxpot.partition.pairs.NeighborList` / ``NeighborListFns`` and
:class:`jaxpot.partition.clusters.ClusterNeighborList` / ``ClusterListFns``.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

PAIRS = "pairs"          # NeighborList: (i, j) pairs with image shifts
CLUSTERS = "clusters"    # ClusterNeighborList: pairs of C-atom clusters, C x C tiles
LAYOUTS = (PAIRS, CLUSTERS)


@runtime_checkable
class NeighborListLike(Protocol):
    """A neighbor list: a pytree of static shape.

    ``layout`` (class level, not a pytree leaf) names the data layout, so a
    potential dispatches on ``context.neighbors.layout`` instead of testing
    the class. Capacities are static (they fix array shapes, so changing
    one recompiles): ``capacity`` listed pairs (cluster pairs for
    ``"clusters"``), ``row_capacity`` partners per atom (per cluster) kept
    by a build, ``cell_capacity`` atoms (clusters) per cell (x-y column) the
    search reads, 0 where no cell search is used. ``n_pairs`` and
    ``max_row`` are what the last build found and may exceed the
    capacities; then ``overflow`` is set. ``overflow`` is sticky: once a
    build overflowed it stays True in every later update of that list, and
    the list's contents must not be trusted. ``reference`` (N, 3) A are the
    positions of the last build; ``n_builds`` counts builds since
    allocation."""

    layout: ClassVar[str]
    reference: Any          # (N, 3) A
    n_pairs: Any            # int32 scalar
    max_row: Any            # int32 scalar
    overflow: Any           # bool scalar, sticky
    n_builds: Any           # int32 scalar
    row_capacity: int
    cell_capacity: int

    @property
    def capacity(self) -> int: ...

    def did_overflow(self) -> bool:
        """``overflow`` read on the host (one device sync)."""
        ...

    def replace(self, **updates) -> "NeighborListLike":
        """A copy with some fields replaced (flax ``struct.dataclass``)."""
        ...


@runtime_checkable
class NeighborFns(Protocol):
    """Builds and updates neighbor lists for one cutoff, skin and fixed cell
    (a new cell needs new functions: the image set and grids depend on it).

    Who does what:

    - ``allocate(positions, cell, capacity=None, row_capacity=None,
      cell_capacity=None)`` (host): builds a list with capacities sized from
      this structure times a margin, or at least the ones given.
    - ``update(positions, nbr, cell, reference=None)`` (jit-able, called
      inside every MD step): rebuilds on device, at ``nbr``'s capacities,
      when ``needs_rebuild`` (some atom moved more than ``skin / 2`` since
      the last build), else returns ``nbr`` unchanged. ``positions`` may
      carry leading batch axes (ring-polymer beads); ``reference`` (N, 3)
      are then the positions built from (the centroids). A rebuild that
      needs more room than the capacities sets the sticky ``overflow``.
    - the host checks ``overflow`` (the MD driver ``jaxpot.simulate`` after
      each block of steps): on overflow it discards the block, calls
      ``reallocate(nbr, positions, cell)`` (host: a larger list, from the
      block's starting positions) and re-runs the block. Positions are
      never wrapped inside a block. (The structure builders also call
      ``reallocate``; the ASE calculator calls ``allocate`` afresh.)
    - ``build(positions, cell, capacity, row_capacity, cell_capacity=0,
      prev=None)``: the pure build at fixed capacities (jit-able);
      ``build_jit``: its one jitted instance per object, with the three
      capacities static, which allocation uses and a checkpoint restart
      calls to rebuild a list at its saved capacities (``_build_jit`` is the
      old private name, kept as an alias).

    ``cutoff`` and ``skin`` in A; the list covers ``cutoff + skin``.
    ``images``: "all" or "minimum" (see :mod:`jaxpot.partition.pairs`);
    ``pbc``: periodic cell or not. ``layout`` names the list layout built.
    """

    layout: ClassVar[str]
    cutoff: float
    skin: float
    images: str
    pbc: bool
    build_jit: Callable[..., Any]

    def build(self, positions, cell, capacity: int, row_capacity: int, cell_capacity: int = 0,
              prev=None) -> NeighborListLike: ...

    def allocate(self, positions, cell, capacity: int | None = None, row_capacity: int | None = None,
                 cell_capacity: int | None = None) -> NeighborListLike: ...

    def reallocate(self, nbr, positions, cell) -> NeighborListLike: ...

    def needs_rebuild(self, positions, nbr) -> Any: ...

    def update(self, positions, nbr, cell, reference=None) -> NeighborListLike: ...
