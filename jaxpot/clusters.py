"""Cluster-pair neighbor lists and the pair sum that reads them.

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

Clusters (the GROMACS recipe): atoms are binned into columns of the x-y
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
:class:`jaxpot.neighbors.NeighborList`.

The pair sum (:func:`cluster_pair_sum`) computes, chunk by chunk, the energy
of a central pair function ``u(r^2, features_i, features_j)`` and, when
differentiated, its gradients with respect to positions, image shifts,
per-atom features and shared parameters in the same pass (forward-mode
du/dr^2 and ``jax.vjp``: the derivatives still come from autodiff). The
chunk loop keeps intermediates in cache; the plain reverse pass of the whole
block sum wrote a dozen (K, C, C) arrays to memory and was 3x slower. On
CPU, r^2 is one fused reduction over the Cartesian axis of a (k, 3, C, C)
difference (3.5x faster than a sum of three per-component terms, which
XLA:CPU ran unvectorised), and du/dr^2 is computed once into memory before
the position vjp reads it: left to itself, XLA:CPU fuses the whole pair
function into each reduction of that vjp, once per Cartesian component and
side (3.5x slower).

Every slot of the list is computed each step, padding included, so the
pair capacity keeps a small margin (5%); XLA:CPU ran loops with a traced
trip count (to skip the padding) or a conditional body 1.7-2x slower.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .neighbors import NeighborListOverflow, _compact, _round_up


class ClusterLayoutError(ValueError):
    """The cell or structure does not allow a cluster-pair list."""


@struct.dataclass
class ClusterNeighborList:
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
    with the same interface as :class:`jaxpot.neighbors.NeighborListFns`."""

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
        object.__setattr__(self, "_build_jit", jax.jit(self.build, static_argnums=(2, 3, 4)))
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
        :meth:`jaxpot.neighbors.NeighborListFns.build`. ``cell_capacity``:
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
        return self._build_jit(positions, cell, cap, rcap, tcap)

    def _probe(self, positions, cell, column_capacity: int | None = None) -> ClusterNeighborList:
        """A build that only counts (room for every candidate partner of a
        cluster, 8 pairs kept)."""
        positions = jnp.asarray(positions)
        tcap = column_capacity or self._column_capacity(positions, cell)
        return self._build_jit(positions, cell, 8, self._search_width(tcap), tcap)

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
    from .potentials.classical import exclusion_lookup

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


# ---------------------------------------------------------------------------
# the pair sum
# ---------------------------------------------------------------------------

def gather_slots(values, slots, n_clusters: int, cluster_size: int, fill=0.0):
    """Per-atom values (N, ...) -> per-slot (NC, C, ...), ``fill`` in padding."""
    values = jnp.asarray(values)
    pad = jnp.full((1,) + values.shape[1:], fill, values.dtype)
    return jnp.concatenate([values, pad])[slots].reshape((n_clusters, cluster_size) + values.shape[1:])


def computed_once(fn, x, token):
    """``fn(x)``, with ``x`` written to memory first and read by ``fn``.

    XLA:CPU fuses an elementwise producer into every consumer that reads it,
    even an expensive one: the pair function behind du/dr^2 was recomputed
    inside each reduction of the position vjp (per Cartesian component and
    side). Passing ``x`` through a conditional whose predicate XLA cannot
    fold (``token >= 0``, true for the list's cluster indices) makes it an
    operand, so it is computed once. ``optimization_barrier`` does not do
    this on CPU (XLA removes it before fusion)."""
    def never(x):
        return jax.tree.map(jnp.zeros_like, jax.eval_shape(fn, x))
    return jax.lax.cond(token >= 0, fn, never, x)


def cluster_pair_sum(pair_fn: Callable, cutoff: float, *, chunk: int | None = None):
    """``energy(xc, shifts, feats, shared, pair_a, pair_b, pair_mask) -> eV``
    (float64), the sum over the listed atom pairs of ``pair_fn``.

    xc (NC, C, 3) A: slot positions; shifts (K, 3) A: Cartesian image shift
    of each cluster pair's second cluster; feats: tuple of (NC, C) per-slot
    arrays (charges, LJ parameters; floating); shared: a pytree of
    parameters every pair may read (e.g. LJ type tables; floating leaves);
    pair_a, pair_b (K,) and pair_mask (K, C, C) from the list.

    ``pair_fn(r2, feats_i, feats_j, shared)`` returns pair energies in eV for
    squared distances r2 (A^2) of shape (k, C, C), with feats_i entries of
    shape (k, C, 1) and feats_j (k, 1, C); it must be elementwise in r2 and
    is only asked about pairs inside ``cutoff`` (others get r2 = 4 cutoff^2
    and are dropped).

    Differentiable (reverse mode) in xc, shifts, feats and shared through a
    custom VJP that computes, chunk by chunk, only the derivatives asked for:
    du/dr^2 by forward-mode autodiff of ``pair_fn`` (one fused pass with the
    energy), carried to positions and shifts by ``jax.vjp`` of the squared
    distance (on CPU with du/dr^2 computed once into memory first:
    :func:`computed_once`);
    feature and shared-parameter derivatives by ``jax.vjp`` of ``pair_fn``.

    chunk: cluster pairs per step of the loop; None picks 2048 on CPU (the
    intermediates stay in cache) and 65536 on accelerators (few launches)."""
    rc2 = float(cutoff) ** 2
    far = 4.0 * rc2

    cpu = jax.default_backend() == "cpu"

    def squared_distances(xi, xj):
        # xi, xj (k, 3, C): components on their own axis
        if cpu:
            # one fusion reducing over the Cartesian axis: XLA:CPU vectorises
            # it, unlike the sum of three component terms below (3.5x slower)
            return jnp.sum((xj[:, :, None, :] - xi[:, :, :, None]) ** 2, axis=1)
        # accelerators: the form measured there (every reduction of the
        # gradient over a contiguous axis of length C)
        r2 = 0.0
        for d in range(3):
            dd = xj[:, d, None, :] - xi[:, d, :, None]
            r2 = r2 + dd * dd
        return r2

    def tile_energy(u):
        # (C, C) tiles summed in the working precision, tiles in float64
        return jnp.sum(jnp.sum(u, axis=(1, 2)).astype(jnp.float64))

    def pair_energies(r2, inside, fi, fj, shared):
        u = pair_fn(r2, tuple(f[:, :, None] for f in fi), tuple(f[:, None, :] for f in fj), shared)
        return jnp.where(inside, u, 0.0)

    def split(arr, k, fill):
        size = chunk or (2048 if jax.default_backend() == "cpu" else 65536)
        size = min(size, k)
        nch = -(-k // size)
        return _split(arr, k, fill, size, nch)

    def _split(arr, k, fill, chunk, nch):
        pad = nch * chunk - k
        if pad:
            arr = jnp.concatenate([arr, jnp.full((pad,) + arr.shape[1:], fill, arr.dtype)])
        return arr.reshape((nch, chunk) + arr.shape[1:])

    def inputs(xt, shifts, feats, a, b):
        return (xt[a], xt[b] + shifts[:, :, None], tuple(f[a] for f in feats), tuple(f[b] for f in feats))

    def run(xc, shifts, feats, shared, pa, pb, pm, need):
        """need: None (energy only) or (x, shifts, feats, shared) flags."""
        k = pa.shape[0]
        xt = jnp.swapaxes(xc, 1, 2)                                    # (NC, 3, C)
        seq = (split(pa, k, 0), split(pb, k, 0), split(shifts, k, 0.0), split(pm, k, False))

        if need is None:
            def body(acc, blk):
                a, b, s, m = blk
                xi, xj, fi, fj = inputs(xt, s, feats, a, b)
                r2 = squared_distances(xi, xj)
                inside = m & (r2 < rc2)
                return acc + tile_energy(pair_energies(jnp.where(inside, r2, far), inside, fi, fj, shared)), None
            return jax.lax.scan(body, jnp.zeros((), jnp.float64), seq)[0]

        need_x, need_s, need_f, need_sh = need

        def body(carry, blk):
            e_acc, gx, gf, gsh = carry
            a, b, s, m = blk
            xi, xj, fi, fj = inputs(xt, s, feats, a, b)
            if cpu:
                r2 = squared_distances(xi, xj)
            else:
                r2, geom_vjp = jax.vjp(squared_distances, xi, xj)
            inside = m & (r2 < rc2)
            r2 = jnp.where(inside, r2, far)
            u, du = jax.jvp(lambda q: pair_energies(q, inside, fi, fj, shared), (r2,), (jnp.ones_like(r2),))
            if cpu:
                def position_vjp(g):
                    # one vjp per side: each (k, 3, C, C) product then fuses
                    # into its own reduction instead of being written out
                    # for both to read
                    _, vi = jax.vjp(lambda p: squared_distances(p, xj), xi)
                    _, vj = jax.vjp(lambda q: squared_distances(xi, q), xj)
                    return vi(g)[0], vj(g)[0]
                dxi, dxj = computed_once(position_vjp, du, a[0])
            else:
                dxi, dxj = geom_vjp(du)
            ys = jnp.zeros((a.shape[0], 3), xc.dtype)
            if need_x:
                gx = gx.at[a].add(dxi).at[b].add(dxj)
            if need_s:
                ys = jnp.sum(dxj, axis=2)
            if need_f or need_sh:
                _, vjp = jax.vjp(lambda fi, fj, sh: tile_energy(pair_energies(r2, inside, fi, fj, sh)),
                                 fi, fj, shared)
                dfi, dfj, dsh = vjp(jnp.ones((), jnp.float64))
                if need_f:
                    gf = tuple(g.at[a].add(di).at[b].add(dj) for g, di, dj in zip(gf, dfi, dfj))
                if need_sh:
                    gsh = jax.tree.map(jnp.add, gsh, dsh)
            return (e_acc + tile_energy(u), gx, gf, gsh), ys

        init = (jnp.zeros((), jnp.float64), jnp.zeros_like(xt), tuple(jnp.zeros_like(f) for f in feats),
                jax.tree.map(jnp.zeros_like, shared))
        (e, gx, gf, gsh), gshift = jax.lax.scan(body, init, seq)
        return e, (jnp.swapaxes(gx, 1, 2), gshift.reshape(-1, 3)[:k], gf, gsh)

    @jax.custom_vjp
    def energy(xc, shifts, feats, shared, pa, pb, pm):
        return run(xc, shifts, feats, shared, pa, pb, pm, None)

    def fwd(xc, shifts, feats, shared, pa, pb, pm):
        def perturbed(tree):
            return any(leaf.perturbed for leaf in jax.tree.leaves(tree, is_leaf=_is_primal))

        need = (xc.perturbed, shifts.perturbed, perturbed(feats), perturbed(shared))
        value = (lambda tree: jax.tree.map(lambda p: p.value, tree, is_leaf=_is_primal))
        e, grads = run(xc.value, shifts.value, value(feats), value(shared), pa.value, pb.value, pm.value, need)
        return e, (grads, need)

    def bwd(res, g):
        (gx, gshift, gf, gsh), (need_x, need_s, need_f, need_sh) = res

        def scale(t):
            return (g * t.astype(jnp.float64)).astype(t.dtype)
        return (scale(gx) if need_x else None, scale(gshift) if need_s else None,
                tuple(scale(t) for t in gf) if need_f else None,
                jax.tree.map(scale, gsh) if need_sh else None, None, None, None)

    energy.defvjp(fwd, bwd, symbolic_zeros=True)
    return energy


def _is_primal(x):
    return isinstance(x, jax.custom_derivatives.CustomVJPPrimal)


NEIGHBOR_LAYOUTS = ("auto", "pairs", "clusters")
CLUSTER_MIN_ATOMS = 1000   # below this a pair list is as fast and needs no margin in the cell


def neighbor_fns_for(potential, cell, periodic: bool, n_atoms: int, *, skin: float,
                     layout: str = "auto", positions=None):
    """Neighbor-list functions for a potential: a cluster-pair list
    (:func:`cluster_list`) or a pair list (:func:`jaxpot.neighbors.neighbor_list`).

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
    clusters are compact enough for the cell (else pairs)."""
    from .neighbors import neighbor_list
    from .system import InputError

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
