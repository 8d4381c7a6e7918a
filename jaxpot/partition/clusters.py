"""Cluster-pair neighbor lists (the pair sum that reads them is in
:mod:`jaxpot.partition.cluster_sum`).

For large periodic systems of pair potentials (solvated proteins, water
boxes) a list of atom pairs is a poor layout for XLA: every pair gathers two
positions and the gradient scatters forces back, one row at a time. Here,
as in GROMACS and OpenMM's CPU platform, atoms are grouped into spatial
clusters of ``C`` (default 8) and the list holds pairs of clusters whose
bounding boxes come within ``cutoff + skin``. Each cluster pair is then a
dense C x C block: positions and parameters are gathered per cluster, all
C^2 distances are computed at once, and the validity of each atom pair
(padding, i < j inside a cluster, excluded pairs) is a boolean tile stored
with the list. About 3x more distances are computed than in a pair list,
but without per-pair gathers or scatters.

Clusters (the GROMACS recipe: Pall and Hess, Comput. Phys. Commun. 184,
2641 (2013)): atoms are binned into columns of the x-y
plane, each column sorted along z and cut into runs of C atoms; a column's
last cluster is padded. The slot table maps the ``n_clusters * C`` slots to
atoms (``N`` marks padding). Positions are not reordered in the state: the
pair sum gathers them through the slot table. A cluster lies inside its
column, so the search for a cluster's partners reads only the columns within
reach, ceil((cutoff + skin) / column width) either way, up to
``cell_capacity`` clusters each: the build is linear in the system size.

Periodic images: the list is built from positions wrapped into the cell at
the build (``wrap`` holds each atom's integer cell offsets, fixed until the
next build, so slot coordinates stay compact while atoms drift), and each
cluster pair carries one image shift, the minimum image of the two cluster
centres. That is exact when every cell width exceeds 2 (cutoff + skin) plus
four cluster half-extents, which the build checks (orthorhombic cells only).

The list is reused until some atom has moved more than skin/2, rebuilt on
device at fixed capacities, and reports overflow like
:class:`jaxpot.partition.pairs.NeighborList`.

Lengths in A. ``ClusterListFns`` satisfies the contract declared in
:mod:`jaxpot.partition.contract` (``layout = "clusters"``). Excluded pairs
are masked out of the tiles with :func:`jaxpot.partition.exclusions.exclusion_lookup`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .cluster_sum import gather_slots
from .exclusions import exclusion_lookup
from .pairs import NeighborListOverflow, _compact, _round_up


class ClusterLayoutError(ValueError):
    """The cell or structure does not allow a cluster-pair list."""


@struct.dataclass
class ClusterNeighborList:
    layout: ClassVar[str] = "clusters"   # the declared layout (jaxpot.partition.contract)

    slots: jnp.ndarray        # (M,) int32 atom of each slot, N for padding; M = n_clusters * C
    wrap: jnp.ndarray         # (N, 3) integer cell offsets subtracted at the build (fractional)
    pair_a: jnp.ndarray       # (K,) int32 first cluster of each pair
    pair_b: jnp.ndarray       # (K,) int32 second cluster (b >= a)
    shifts: jnp.ndarray       # (K, 3) integer image shift of cluster b (fractional units)
    pair_mask: jnp.ndarray    # (K, C, C) bool: atom pair (a_k, b_l) interacts
    reference: jnp.ndarray    # (N, 3) positions at the last build, A
    n_pairs: jnp.ndarray      # int32 cluster pairs found at the last build (can exceed K)
    max_row: jnp.ndarray      # int32 most partners of one cluster at the last build
    max_extent: jnp.ndarray   # float: largest cluster half-extent at the last build, A
    images_ok: jnp.ndarray    # bool, sticky: no cluster pair had two images in range at any build
    overflow: jnp.ndarray     # bool, sticky: some build overflowed or broke the image condition
    n_builds: jnp.ndarray     # int32
    row_capacity: int = struct.field(pytree_node=False, default=0)
    cluster_size: int = struct.field(pytree_node=False, default=8)
    cell_capacity: int = struct.field(pytree_node=False, default=0)   # clusters per column searched (0: all)

    @property
    def capacity(self) -> int:
        return int(self.pair_a.shape[0])

    @property
    def n_clusters(self) -> int:
        return int(self.slots.shape[0]) // self.cluster_size

    def did_overflow(self) -> bool:
        return bool(self.overflow)


def cluster_layout_problem(cell, cutoff: float, skin: float, pbc: bool = True) -> str | None:
    """Why a cluster-pair list cannot be used for this cell, or None."""
    if not pbc:
        return "the cluster layout needs a periodic cell"
    cell = np.asarray(cell, np.float64)
    if cell.shape != (3, 3) or np.any(np.abs(cell - np.diag(np.diag(cell))) > 1e-9):
        return "the cluster layout needs an orthorhombic cell"
    widths = np.diag(cell)
    # clusters of a dense liquid are ~2 A in half-extent: demand that margin
    if np.any(widths < 2 * (cutoff + skin) + 8.0):
        return (f"cell widths {np.round(widths, 2).tolist()} A are too narrow for clusters at cutoff "
                f"{cutoff} + skin {skin} A (need > 2 (cutoff + skin) + 8 A)")
    return None


@dataclass(frozen=True)
class ClusterListFns:
    """``allocate`` (host) and ``update`` (jit-able) of a cluster-pair list,
    with the same interface as :class:`jaxpot.partition.pairs.NeighborListFns`
    (the :class:`jaxpot.partition.contract.NeighborFns` contract)."""

    layout: ClassVar[str] = "clusters"

    cutoff: float
    skin: float
    cluster_size: int
    columns: tuple            # (nx, ny) columns of the x-y plane
    n_clusters: int           # static cluster capacity
    n_atoms: int
    capacity_multiplier: float
    block: int
    excluded: Callable        # (i, j) -> bool
    images: str = "all"
    pbc: bool = True
    # (dx, dy) offsets of the columns whose clusters can come within cutoff +
    # skin of a cluster's column (each column once)
    column_offsets: tuple = ((0, 0),)

    def __post_init__(self):
        # one jitted builder (the pair list's name, which checkpoint restarts call)
        object.__setattr__(self, "build_jit", jax.jit(self.build, static_argnums=(2, 3, 4)))
        object.__setattr__(self, "_build_jit", self.build_jit)   # old private name, kept as an alias
        object.__setattr__(self, "_fullest_column", jax.jit(self.fullest_column))

    # ---------------- clusters -----------------
    def _clusters(self, frac_wrapped):
        """(slots (M,), real (NC, C)) from wrapped fractional positions."""
        n, c = self.n_atoms, self.cluster_size
        nx, ny = self.columns
        ncol = nx * ny
        cx = jnp.clip(jnp.floor(frac_wrapped[:, 0] * nx).astype(jnp.int32), 0, nx - 1)
        cy = jnp.clip(jnp.floor(frac_wrapped[:, 1] * ny).astype(jnp.int32), 0, ny - 1)
        col = cx * ny + cy
        order = jnp.lexsort((frac_wrapped[:, 2], col))
        col_sorted = col[order]
        counts = jnp.zeros(ncol, jnp.int32).at[col].add(1)
        start = jnp.cumsum(counts) - counts
        rank = jnp.arange(n, dtype=jnp.int32) - start[col_sorted]
        per_col = (counts + c - 1) // c
        cstart = jnp.cumsum(per_col) - per_col
        slot = cstart[col_sorted] * c + rank
        m = self.n_clusters * c
        slots = jnp.full(m, n, jnp.int32).at[slot].set(order.astype(jnp.int32), mode="drop")
        return slots, jnp.sum(per_col), cstart, per_col

    def fullest_column(self, positions, cell):
        """Most clusters in one x-y column for these positions (N, 3) A."""
        lengths = jnp.diagonal(jnp.asarray(cell).astype(jnp.float64))
        frac = positions.astype(jnp.float64) / lengths
        return jnp.max(self._clusters(frac - jnp.floor(frac))[3])

    def _candidates(self, a, cstart, per_col, column_capacity: int):
        """Clusters (B, Q) that can pair with clusters ``a`` (B,): those of
        the columns within reach, ``column_capacity`` slots per column, and
        which of the slots hold one. Q = offsets x capacity, independent of
        the system size (the search is O(clusters), not O(clusters^2))."""
        nx, ny = self.columns
        ends = jnp.cumsum(per_col)
        col = jnp.minimum(jnp.searchsorted(ends, a, side="right"), nx * ny - 1)   # column of each a
        offs = np.asarray(self.column_offsets, np.int32)
        cx = (col // ny)[:, None] + offs[None, :, 0]
        cy = (col % ny)[:, None] + offs[None, :, 1]
        cn = (cx % nx) * ny + cy % ny                                           # (B, O)
        t = jnp.arange(column_capacity, dtype=jnp.int32)
        cand = cstart[cn][..., None] + t                                        # (B, O, T)
        valid = t < per_col[cn][..., None]
        b = a.shape[0]
        return (jnp.minimum(cand, self.n_clusters - 1).reshape(b, -1).astype(jnp.int32),
                valid.reshape(b, -1))

    def build(self, positions, cell, capacity: int, row_capacity: int, cell_capacity: int = 0,
              prev=None) -> ClusterNeighborList:
        """Pure build at fixed capacities (jit-able); the arguments of
        :meth:`jaxpot.partition.pairs.NeighborListFns.build`. ``cell_capacity``:
        clusters per x-y column that the search reads (a fuller column is an
        overflow); 0 searches every cluster pair (lists of older checkpoints)."""
        reference = positions
        x = positions.astype(jnp.float64)
        cell = jnp.asarray(cell).astype(jnp.float64)
        n, c, nc = self.n_atoms, self.cluster_size, self.n_clusters
        lengths = jnp.diagonal(cell)
        frac = x / lengths
        wrap = jnp.floor(frac)
        fw = frac - wrap
        slots, used, cstart, per_col = self._clusters(fw)
        xw = fw * lengths
        xs = gather_slots(xw, slots, nc, c)
        real = (slots < n).reshape(nc, c)
        lo = jnp.min(jnp.where(real[..., None], xs, jnp.inf), axis=1)
        hi = jnp.max(jnp.where(real[..., None], xs, -jnp.inf), axis=1)
        live = jnp.any(real, axis=1)
        ctr = jnp.where(live[:, None], 0.5 * (lo + hi), 0.0)
        half = jnp.where(live[:, None], 0.5 * (hi - lo), 0.0)
        rc = self.cutoff + self.skin
        max_half = jnp.max(half, axis=0)

        nb = -(-nc // self.block)
        rows = jnp.arange(nb * self.block, dtype=jnp.int32).reshape(nb, self.block)

        def row_block(ia):
            a = jnp.minimum(ia, nc - 1)
            if cell_capacity:
                cand, cvalid = self._candidates(a, cstart, per_col, cell_capacity)   # (B, Q)
            else:
                cand = jnp.broadcast_to(jnp.arange(nc, dtype=jnp.int32), (a.shape[0], nc))
                cvalid = jnp.ones(cand.shape, bool)
            d = ctr[cand] - ctr[a][:, None, :]                                   # (B, Q, 3)
            s = -jnp.round(d / lengths)
            d = d + s * lengths
            hsum = half[a][:, None, :] + half[cand]
            gap = jnp.maximum(jnp.abs(d) - hsum, 0.0)
            g2 = jnp.sum(gap * gap, axis=-1)
            pair = cvalid & (cand >= a[:, None]) & live[a][:, None] & live[cand] & (ia[:, None] < nc)
            ok = pair & (g2 < rc * rc)
            # each cluster pair is listed at the minimum image of its centres,
            # which is exact unless the next image along some axis is also in
            # range (clusters long compared with L/2 - rc - skin): flag that.
            # Clusters outside the columns searched are out of range at every
            # image (the minimum image is the nearest).
            alt = jnp.maximum(lengths - jnp.abs(d) - hsum, 0.0)
            two_images = pair & jnp.any(g2[..., None] - gap * gap + alt * alt < rc * rc, axis=-1)
            sel, valid, cnt = jax.vmap(lambda f: _compact(f, row_capacity))(ok)
            s_sel = jnp.take_along_axis(s, sel[..., None], axis=1)
            return jnp.take_along_axis(cand, sel, axis=1), s_sel, valid, cnt, jnp.any(two_images)

        b_sel, s_sel, valid, cnt, two_images = jax.lax.map(row_block, rows)
        image_ok = ~jnp.any(two_images)
        b_sel = b_sel.reshape(-1, row_capacity)[:nc]
        s_sel = s_sel.reshape(-1, row_capacity, 3)[:nc]
        valid = valid.reshape(-1, row_capacity)[:nc]
        cnt = cnt.reshape(-1)[:nc]
        a_all = jnp.broadcast_to(jnp.arange(nc, dtype=jnp.int32)[:, None], b_sel.shape)
        sel, mask, n_pairs = _compact(valid.reshape(-1), capacity)
        pa = jnp.where(mask, a_all.reshape(-1)[sel], 0)
        pb = jnp.where(mask, b_sel.reshape(-1)[sel], 0)
        sh = jnp.where(mask[:, None], s_sel.reshape(-1, 3)[sel], 0.0)

        atoms = slots.reshape(nc, c)
        ai, bj = atoms[pa][:, :, None], atoms[pb][:, None, :]             # (K, C, 1), (K, 1, C)
        tri = jnp.triu(jnp.ones((c, c), bool), 1)
        pm = ((ai < n) & (bj < n) & mask[:, None, None]
              & ((pa != pb)[:, None, None] | tri[None]) & ~self.excluded(ai, bj))

        max_row = jnp.max(cnt).astype(jnp.int32)
        over = (n_pairs > capacity) | (max_row > row_capacity) | (used > nc) | ~image_ok
        if cell_capacity:
            over = over | (jnp.max(per_col) > cell_capacity)
        n_builds = jnp.int32(1)
        if prev is not None:
            over = over | prev.overflow
            image_ok = image_ok & prev.images_ok
            n_builds = prev.n_builds + 1
        return ClusterNeighborList(
            slots=slots, wrap=wrap, pair_a=pa.astype(jnp.int32), pair_b=pb.astype(jnp.int32),
            shifts=sh, pair_mask=pm, reference=reference, n_pairs=n_pairs.astype(jnp.int32),
            max_row=max_row, max_extent=jnp.max(max_half), images_ok=image_ok, overflow=over, n_builds=n_builds,
            row_capacity=row_capacity, cluster_size=c, cell_capacity=cell_capacity)

    # ---------------- host and loop interface -----------------
    def _column_capacity(self, positions, cell, at_least: int = 0) -> int:
        """Clusters per column the search reads: the fullest column now plus
        20% (at least 2) for the columns' fluctuations."""
        fullest = int(self._fullest_column(jnp.asarray(positions), cell))
        return max(fullest + max(2, -(-fullest // 5)), at_least)

    def _search_width(self, column_capacity: int) -> int:
        """Candidate partners per cluster: the columns in reach times their capacity."""
        return min(len(self.column_offsets) * column_capacity, self.n_clusters) if column_capacity \
            else self.n_clusters

    def allocate(self, positions, cell, capacity: int | None = None,
                 row_capacity: int | None = None, cell_capacity: int | None = None) -> ClusterNeighborList:
        """Build on the host with capacities from the current structure times
        ``capacity_multiplier`` (or at least those given)."""
        positions = jnp.asarray(positions)
        problem = cluster_layout_problem(np.asarray(cell), self.cutoff, self.skin)
        if problem:
            raise ClusterLayoutError(problem)
        tcap = self._column_capacity(positions, cell, cell_capacity or 0)
        probe = self._probe(positions, cell, tcap)
        if not bool(probe.images_ok):
            raise ClusterLayoutError(
                f"clusters of this structure extend up to {float(probe.max_extent):.2f} A: too wide for "
                f"the minimum-image rule in this cell at cutoff + skin = {self.cutoff + self.skin} A; "
                "use the pair-list layout (neighbor layout 'pairs')")
        # rows only size the build's scratch: a generous margin costs little
        rcap = max(_round_up(int(probe.max_row) * max(self.capacity_multiplier, 1.2) + 4, 8), row_capacity or 0)
        rcap = min(rcap, self._search_width(tcap))
        cap = max(int(probe.n_pairs * self.capacity_multiplier) + 8, capacity or 0)
        # large lists: whole chunks of the pair sum's CPU loop (no padding copy per step)
        cap = _round_up(cap, 2048 if cap >= 16384 else 256)
        return self.build_jit(positions, cell, cap, rcap, tcap)

    def _probe(self, positions, cell, column_capacity: int | None = None) -> ClusterNeighborList:
        """A build that only counts (room for every candidate partner of a
        cluster, 8 pairs kept)."""
        positions = jnp.asarray(positions)
        tcap = column_capacity or self._column_capacity(positions, cell)
        return self.build_jit(positions, cell, 8, self._search_width(tcap), tcap)

    def fits(self, positions, cell) -> bool:
        """Whether this structure's clusters are compact enough for the
        minimum-image rule in ``cell`` (host; one probe build)."""
        return bool(self._probe(positions, cell).images_ok)

    def reallocate(self, nbr: ClusterNeighborList, positions, cell) -> ClusterNeighborList:
        """A larger list after an overflow (host); a broken image condition
        is an error, since more capacity cannot mend it."""
        probe = self._probe(positions, cell)
        if not (bool(probe.images_ok) and bool(nbr.images_ok)):
            raise NeighborListOverflow(
                f"clusters now extend up to {float(probe.max_extent):.2f} A, too wide for the cluster-pair "
                f"list's minimum-image rule at cutoff + skin = {self.cutoff + self.skin} A in this cell; "
                "run with the pair-list layout")
        # every listed pair slot is computed each step, so the pair capacity
        # grows in small steps (the count of a liquid varies by ~1%)
        return self.allocate(positions, cell, capacity=int(nbr.capacity * 1.1) + 8,
                             row_capacity=int(nbr.row_capacity * 1.5) + 4,
                             cell_capacity=int(nbr.cell_capacity * 1.2) + 1 if nbr.cell_capacity else None)

    def needs_rebuild(self, positions, nbr: ClusterNeighborList):
        d = positions - nbr.reference
        return jnp.max(jnp.sum(d * d, axis=-1)) > (0.5 * self.skin) ** 2

    def update(self, positions, nbr: ClusterNeighborList, cell, reference=None) -> ClusterNeighborList:
        build_from = positions if reference is None else reference
        return jax.lax.cond(
            self.needs_rebuild(positions, nbr),
            lambda: self.build(build_from, cell, nbr.capacity, nbr.row_capacity, nbr.cell_capacity, prev=nbr),
            lambda: nbr)


def cluster_list(cutoff: float, cell, n_atoms: int, *, skin: float = 1.0, excluded=None,
                 cluster_size: int = 8, capacity_multiplier: float = 1.05,
                 block: int = 32) -> ClusterListFns:
    """Cluster-pair list functions for ``n_atoms`` atoms in a fixed
    orthorhombic ``cell`` (3, 3) A, cutoff and skin in A.

    excluded: (E, 2) atom pairs masked out of the list's tiles (a potential's
    exclusions and 1-4 pairs, which it handles itself).
    capacity_multiplier: room for cluster pairs over the count found at
    allocation. The pair sum computes every slot each step, padding
    included, so the margin is small (the count of a liquid at fixed volume
    varies by ~1%); an overflow regrows the list by 10%, as any overflow is
    handled (the block re-runs). Rows get at least 20%."""
    if cutoff <= 0:
        raise ValueError("cluster list cutoff must be positive")
    problem = cluster_layout_problem(cell, cutoff, skin)
    if problem:
        raise ClusterLayoutError(problem)
    lengths = np.diag(np.asarray(cell, np.float64))
    density = n_atoms / float(np.prod(lengths))
    side = (cluster_size / density) ** (1.0 / 3.0)       # cube holding one cluster
    nx, ny = (max(1, int(lengths[a] // side)) for a in range(2))
    n_clusters = -(-n_atoms // cluster_size) + nx * ny
    excl = np.zeros((0, 2), np.int64) if excluded is None else np.asarray(excluded, np.int64).reshape(-1, 2)
    # a cluster lies inside its column, so clusters |d| columns apart are at
    # least (|d| - 1) column widths apart: reach ceil((cutoff + skin) / width)
    reach = []
    for n_col, length in ((nx, lengths[0]), (ny, lengths[1])):
        r = int(np.ceil((cutoff + skin) / (length / n_col)))
        reach.append(list(range(n_col)) if 2 * r + 1 >= n_col else list(range(-r, r + 1)))
    offsets = tuple((dx, dy) for dx in reach[0] for dy in reach[1])
    return ClusterListFns(cutoff=float(cutoff), skin=float(skin), cluster_size=int(cluster_size),
                          columns=(nx, ny), n_clusters=int(n_clusters), n_atoms=int(n_atoms),
                          capacity_multiplier=float(capacity_multiplier), block=int(block),
                          excluded=exclusion_lookup(n_atoms, excl), column_offsets=offsets)
