"""Labelled structures from extxyz, splits and padded batches.

Labels (metal units: energy eV, forces eV/A, stress eV/A^3 with ASE's sign)
come from, in order of preference:
1. the keys named in the configuration (``energy_key``, ``forces_key``,
   ``stress_key``), looked up in ``atoms.info`` / ``atoms.arrays``;
2. the calculator results ASE attaches when it reads ``energy=`` and a
   ``forces`` column from an extxyz file;
3. the conventional ``REF_energy``, ``REF_forces``, ``REF_stress`` keys.

A batch holds ``batch_size`` structures padded to a common number of atoms
and neighbor pairs. Atom counts are padded to the next power of two (at
least 8), so a dataset of many sizes compiles only a few shapes; padding
atoms have atomic number 0 (the padding convention of every jaxpot model),
padding pair slots are masked, and padding structures have weight 0.
Neighbor lists are built once on the host (positions of training data do
not move) with :func:`ase.neighborlist.primitive_neighbor_list`, as half
lists with integer image shifts like :mod:`jaxpot.partition`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ..ml.data_defaults import dataset_species  # noqa: F401  (re-exported)
from ..partition import NeighborList
from ..partition.host import half_pairs
from ..potentials.base import Context
from ..system import InputError

_STRESS_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


@dataclass
class Labelled:
    """One reference structure (host-side numpy)."""

    numbers: np.ndarray            # (N,) atomic numbers
    positions: np.ndarray          # (N, 3) A
    cell: np.ndarray               # (3, 3) A (zeros for clusters)
    pbc: bool
    energy: float                  # eV
    forces: np.ndarray | None      # (N, 3) eV/A
    stress: np.ndarray | None      # (3, 3) eV/A^3
    charges: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)


def _lookup(atoms, key):
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    return None


def _calc_result(atoms, name):
    calc = atoms.calc
    if calc is None:
        return None
    return getattr(calc, "results", {}).get(name)


def _stress_matrix(s):
    s = np.asarray(s, dtype=np.float64)
    if s.shape == (3, 3):
        return s
    if s.size == 9:
        return s.reshape(3, 3)
    if s.size == 6:
        m = np.zeros((3, 3))
        for k, (a, b) in enumerate(_STRESS_VOIGT):
            m[a, b] = m[b, a] = s[k]
        return m
    raise InputError(f"stress label has {s.size} components (need 6 or 9)")


def labelled_from_atoms(atoms, *, energy_key=None, forces_key=None, stress_key=None,
                        where: str = "structure") -> Labelled:
    """A :class:`Labelled` from an ``ase.Atoms`` (see the module docstring)."""
    def get(key, name, ref):
        if key is not None:
            v = _lookup(atoms, key)
            if v is None:
                raise InputError(f"{where}: no {name} label {key!r} in info/arrays")
            return v
        v = _calc_result(atoms, name)
        return v if v is not None else _lookup(atoms, ref)

    energy = get(energy_key, "energy", "REF_energy")
    if energy is None:
        raise InputError(f"{where}: no energy label (calculator result 'energy', info 'REF_energy', "
                         "or set energy_key)")
    forces = get(forces_key, "forces", "REF_forces")
    stress = get(stress_key, "stress", "REF_stress")
    numbers = np.asarray(atoms.get_atomic_numbers(), np.int32)
    if np.any(numbers <= 0):
        raise InputError(f"{where}: unknown element (atomic number 0)")
    pbc = atoms.get_pbc()
    if any(pbc) and not all(pbc):
        raise InputError(f"{where}: mixed periodicity is not supported")
    positions = np.asarray(atoms.get_positions(), np.float64)
    if forces is not None:
        forces = np.asarray(forces, np.float64)
        if forces.shape != positions.shape:
            raise InputError(f"{where}: forces have shape {forces.shape}, expected {positions.shape}")
    energy = float(np.asarray(energy))
    if not np.isfinite(energy) or (forces is not None and not np.all(np.isfinite(forces))):
        raise InputError(f"{where}: non-finite energy or forces label")
    charges = atoms.arrays.get("initial_charges")
    return Labelled(numbers=numbers, positions=positions,
                    cell=np.asarray(atoms.get_cell().array, np.float64), pbc=bool(all(pbc)),
                    energy=energy, forces=forces,
                    stress=None if stress is None or not all(pbc) else _stress_matrix(stress),
                    charges=None if charges is None else np.asarray(charges, np.float64))


def read_labelled(paths, *, energy_key=None, forces_key=None, stress_key=None,
                  base_dir: Path | None = None) -> list[Labelled]:
    """All frames of one or more labelled files (anything ``ase.io.read``
    reads; extxyz is the usual one). ``"jaxpot:NAME"`` names a dataset
    shipped in ``jaxpot/data`` (``jaxpot:water_clusters.extxyz``,
    ``jaxpot:water_clusters_hot.extxyz``)."""
    from ase.io import read

    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in paths:
        if str(p).startswith("jaxpot:"):       # a dataset shipped with the package
            path = shipped_data(str(p)[len("jaxpot:"):])
        else:
            path = Path(p).expanduser()
        if not path.is_absolute() and base_dir is not None and not path.exists():
            path = Path(base_dir) / path
        if not path.is_file():
            raise InputError(f"data file not found: {p}")
        try:
            frames = read(path, index=":")
        except Exception as err:  # ase raises many kinds
            raise InputError(f"cannot read {path}: {err}") from None
        for k, atoms in enumerate(frames):
            out.append(labelled_from_atoms(atoms, energy_key=energy_key, forces_key=forces_key,
                                           stress_key=stress_key, where=f"{path.name} frame {k}"))
    if not out:
        raise InputError(f"no structures in {', '.join(map(str, paths))}")
    return out


def split_indices(n: int, validation_fraction: float, seed: int):
    """(train, validation) index arrays: a seeded random permutation."""
    if not 0.0 <= validation_fraction < 1.0:
        raise InputError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(validation_fraction * n))
    if validation_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    if n - n_val < 1:
        raise InputError(f"{n} structures are too few to split off a validation set")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def structure_pairs(s: Labelled, cutoff: float, cache: dict | None = None):
    """:func:`half_pairs` of ``s`` (none for ``cutoff <= 0``: potentials
    that need no neighbor list), looked up in / stored into ``cache`` (keyed
    by the structure's id) when one is given."""
    if cutoff <= 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros((0, 3))
    if cache is not None and id(s) in cache:
        return cache[id(s)]
    out = half_pairs(s, cutoff)
    if cache is not None:
        cache[id(s)] = out
    return out


def pad_size(n: int, minimum: int = 8) -> int:
    """Padded atom count: the next multiple of 8 up to 64 atoms, of 32 up to
    256, then the next power of two (few shapes, at most ~1/3 padding)."""
    n = max(int(n), minimum)
    if n <= 64:
        return -(-n // 8) * 8
    if n <= 256:
        return -(-n // 32) * 32
    return 1 << int(np.ceil(np.log2(n)))


@dataclass
class Batch:
    """Padded arrays for ``B`` structures (leading axis B everywhere)."""

    positions: jnp.ndarray        # (B, Np, 3) A
    context: Context              # species (B, Np), cell (B, 3, 3), neighbors batched
    energy: jnp.ndarray           # (B,) eV
    forces: jnp.ndarray           # (B, Np, 3) eV/A
    stress: jnp.ndarray           # (B, 3, 3) eV/A^3
    n_atoms: jnp.ndarray          # (B,) real atoms
    weight: jnp.ndarray           # (B,) 1 real, 0 padding structure
    has_forces: jnp.ndarray       # (B,) bool
    has_stress: jnp.ndarray       # (B,) bool


def _tree(cls):
    import jax

    jax.tree_util.register_pytree_node(
        cls, lambda b: (tuple(getattr(b, f) for f in b.__dataclass_fields__), None),
        lambda _, leaves: cls(*leaves))
    return cls


_tree(Batch)


def make_batch(structures: list[Labelled], cutoff: float, n_pad: int, k_pad: int,
               batch_size: int, dtype=np.float64, pairs_cache: dict | None = None) -> Batch:
    """Stack ``structures`` (at most ``batch_size``) into one padded batch."""
    b = batch_size
    pos = np.zeros((b, n_pad, 3))
    species = np.zeros((b, n_pad), np.int32)
    cell = np.zeros((b, 3, 3))
    idx = np.zeros((b, 2, k_pad), np.int32)
    shifts = np.zeros((b, k_pad, 3))
    mask = np.zeros((b, k_pad), bool)
    energy = np.zeros(b)
    forces = np.zeros((b, n_pad, 3))
    stress = np.zeros((b, 3, 3))
    n_atoms = np.ones(b)       # 1 for padding structures, so per-atom divisions stay finite
    weight = np.zeros(b)
    has_f = np.zeros(b, bool)
    has_s = np.zeros(b, bool)
    charges = np.zeros((b, n_pad))
    for k, s in enumerate(structures):
        n = s.n_atoms
        pos[k, :n] = s.positions
        # padding atoms sit far from everything (and from each other), so no
        # model can see them even without masks
        pos[k, n:] = 1e4 * (1.0 + np.arange(n_pad - n))[:, None]
        species[k, :n] = s.numbers
        cell[k] = s.cell
        i, j, S = structure_pairs(s, cutoff, pairs_cache)
        m = len(i)
        idx[k, 0, :m], idx[k, 1, :m], shifts[k, :m], mask[k, :m] = i, j, S, True
        energy[k] = s.energy
        if s.forces is not None:
            forces[k, :n] = s.forces
            has_f[k] = True
        if s.stress is not None:
            stress[k] = s.stress
            has_s[k] = True
        if s.charges is not None:
            charges[k, :n] = s.charges
        n_atoms[k] = n
        weight[k] = 1.0
    nbr = NeighborList(
        idx=jnp.asarray(idx), shifts=jnp.asarray(shifts, dtype), mask=jnp.asarray(mask),
        reference=jnp.asarray(pos, dtype), n_pairs=jnp.asarray(mask.sum(1), jnp.int32),
        max_row=jnp.zeros(b, jnp.int32), overflow=jnp.zeros(b, bool), n_builds=jnp.zeros(b, jnp.int32),
    )
    ctx = Context(species=jnp.asarray(species), cell=jnp.asarray(cell, dtype),
                  neighbors=nbr if cutoff > 0 else None,
                  charges=jnp.asarray(charges, dtype))
    return Batch(positions=jnp.asarray(pos, dtype), context=ctx, energy=jnp.asarray(energy),
                 forces=jnp.asarray(forces, dtype), stress=jnp.asarray(stress, dtype),
                 n_atoms=jnp.asarray(n_atoms), weight=jnp.asarray(weight),
                 has_forces=jnp.asarray(has_f), has_stress=jnp.asarray(has_s))


def pad_levels(sizes, max_shapes: int) -> list[int]:
    """At most ``max_shapes`` padded atom counts covering ``sizes`` that
    minimise the total number of padded atom slots (exact dynamic program
    over the distinct sizes). Each distinct shape costs one compilation of the
    training step, which for equivariant models on CPU can take minutes, so
    a few shapes with some padding beat many tight ones."""
    sizes = np.asarray(sizes, int)
    uniq, counts = np.unique(sizes, return_counts=True)
    m = len(uniq)
    k = max(1, min(int(max_shapes), m))
    inf = float("inf")
    # cost[a][b]: structures with sizes uniq[a..b] all padded to uniq[b]
    cum = np.concatenate([[0], np.cumsum(counts)])
    best = [[inf] * (m + 1) for _ in range(k + 1)]
    arg = [[-1] * (m + 1) for _ in range(k + 1)]
    best[0][0] = 0.0
    for levels in range(1, k + 1):
        for b in range(1, m + 1):
            for a in range(b):
                if best[levels - 1][a] == inf:
                    continue
                c = best[levels - 1][a] + uniq[b - 1] * (cum[b] - cum[a])
                if c < best[levels][b]:
                    best[levels][b], arg[levels][b] = c, a
    levels = min(range(1, k + 1), key=lambda q: best[q][m])
    out, b = [], m
    while b > 0:
        out.append(int(uniq[b - 1]))
        b = arg[levels][b]
        levels -= 1
    return sorted(out)


class _StructureBatcher:
    """What both batchers hold: the structures, the cutoff (A), the batch
    size, dtype and seed, and each structure's half pair list and its size
    (``_npairs``)."""

    def __init__(self, structures: list[Labelled], cutoff: float, batch_size: int, dtype, seed: int):
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.structures = structures
        self.cutoff = float(cutoff)
        self.batch_size = int(batch_size)
        self.dtype = dtype
        self.seed = int(seed)
        self._pairs: dict = {}
        self._npairs = np.asarray([len(structure_pairs(s, self.cutoff, self._pairs)[0]) for s in structures],
                                  int)


class Batcher(_StructureBatcher):
    """Padded batches of a fixed set of structures for one cutoff (A).

    Structures are grouped into at most ``max_shapes`` padded atom counts
    (:func:`pad_levels`; exact counts with ``pad=False``, for potentials
    built for one system); pair capacities are the
    largest pair count of each group rounded up to 64, so there is one
    compiled shape per group. ``batches(epoch)`` shuffles within groups and
    the order of batches, reproducibly from ``seed`` and the epoch."""

    def __init__(self, structures: list[Labelled], cutoff: float, batch_size: int,
                 dtype=np.float64, seed: int = 0, pad: bool = True, max_shapes: int = 3):
        super().__init__(structures, cutoff, batch_size, dtype, seed)
        self.groups: dict[int, list[int]] = {}
        levels = pad_levels([s.n_atoms for s in structures], max_shapes) if pad else None
        for k, s in enumerate(structures):
            # pad=False (potentials built for one system): exact sizes, no padding atoms
            n_pad = levels[int(np.searchsorted(levels, s.n_atoms))] if pad else s.n_atoms
            self.groups.setdefault(n_pad, []).append(k)
        self.k_pad = {}
        for n_pad, members in self.groups.items():
            most = int(self._npairs[members].max())
            self.k_pad[n_pad] = max(64, -(-most // 64) * 64)

    def __len__(self) -> int:
        return sum(-(-len(m) // self.batch_size) for m in self.groups.values())

    def _plan(self, epoch):
        plan = []
        rng = None if epoch is None else np.random.default_rng([self.seed, epoch])
        for n_pad in sorted(self.groups):
            members = list(self.groups[n_pad])
            if rng is not None:
                members = list(rng.permutation(members))
            for start in range(0, len(members), self.batch_size):
                plan.append((n_pad, members[start:start + self.batch_size]))
        if rng is not None:
            plan = [plan[k] for k in rng.permutation(len(plan))]
        return plan

    def plan(self, epoch: int | None = None) -> list[list[int]]:
        """Structure indices of each batch, in the order :meth:`batches` yields them."""
        return [members for _, members in self._plan(epoch)]

    def batches(self, epoch: int | None = None):
        """Yield :class:`Batch` objects; ``epoch=None`` keeps the file order."""
        for n_pad, members in self._plan(epoch):
            yield make_batch([self.structures[k] for k in members], self.cutoff, n_pad,
                             self.k_pad[n_pad], self.batch_size, self.dtype, self._pairs)


def element_counts(structures: list[Labelled], symbols) -> np.ndarray:
    """(S, E) counts of each element of ``symbols`` in each structure."""
    from ..system import species_from_symbols

    z = species_from_symbols(symbols)
    return np.asarray([[np.sum(s.numbers == zz) for zz in z] for s in structures], np.float64)


def fit_atomic_energies(structures: list[Labelled], symbols) -> dict:
    """Per-element reference energies (eV) by least squares of E ~ sum n_el E0_el.

    With one stoichiometry (e.g. only water clusters H2nOn) the offsets are
    not separable; ``lstsq`` then returns the minimum-norm solution, which
    fits the data equally well (only combinations present in the data
    matter to the fit)."""
    a = element_counts(structures, symbols)
    e = np.asarray([s.energy for s in structures])
    sol, *_ = np.linalg.lstsq(a, e, rcond=None)
    return {s: float(v) for s, v in zip(symbols, sol)}


def shipped_data(name: str = "water_clusters.extxyz") -> Path:
    """Path of a dataset shipped inside the package (``jaxpot/data``)."""
    path = Path(__file__).resolve().parents[1] / "data" / name
    if not path.is_file():
        raise InputError(f"no shipped dataset {name!r} in {path.parent}")
    return path


# --------------------------------------------------------------------------- packed graphs

@dataclass
class PackedBatch:
    """Up to ``B`` structures packed into one graph of ``Na`` atom and ``K``
    pair slots (PyG/jraph style): no per-structure padding, one neighbor list.

    The context's cell is the identity and the neighbor list's shifts are
    Cartesian (A), so pair vectors x_j - x_i + shift need no per-structure
    cell. Only potentials with per-atom energies (``Potential.atom_energies``:
    local models, which see nothing but pair vectors and species) can run on
    it; structure energies are segment sums over ``atom_structure``."""

    positions: jnp.ndarray        # (Na, 3) A; padding atoms far from everything
    context: Context              # species (Na,) (0 = padding), cell = I, neighbors (K pairs)
    atom_structure: jnp.ndarray   # (Na,) int32 structure of each atom (B for padding atoms)
    pair_structure: jnp.ndarray   # (K,) int32 structure of each pair (B for padding slots)
    energy: jnp.ndarray           # (B,) eV
    forces: jnp.ndarray           # (Na, 3) eV/A
    stress: jnp.ndarray           # (B, 3, 3) eV/A^3
    volume: jnp.ndarray           # (B,) A^3 (1 for clusters and padding structures)
    n_atoms: jnp.ndarray          # (B,) real atoms (1 for padding structures)
    weight: jnp.ndarray           # (B,) 1 real, 0 padding structure
    has_forces: jnp.ndarray       # (B,) bool
    has_stress: jnp.ndarray       # (B,) bool


_tree(PackedBatch)


def make_packed_batch(structures: list[Labelled], cutoff: float, atom_slots: int, pair_slots: int,
                      batch_size: int, dtype=np.float64, pairs_cache: dict | None = None) -> PackedBatch:
    """Pack ``structures`` (at most ``batch_size``, at most ``atom_slots``
    atoms and ``pair_slots`` half-list pairs in all) into one graph."""
    b = batch_size
    if len(structures) > b:
        raise ValueError(f"{len(structures)} structures do not fit a packed batch of {b}")
    pos = np.zeros((atom_slots, 3))
    species = np.zeros(atom_slots, np.int32)
    charges = np.zeros(atom_slots)
    forces = np.zeros((atom_slots, 3))
    atom_s = np.full(atom_slots, b, np.int32)
    idx = np.zeros((2, pair_slots), np.int32)
    shifts = np.zeros((pair_slots, 3))
    mask = np.zeros(pair_slots, bool)
    pair_s = np.full(pair_slots, b, np.int32)
    energy = np.zeros(b)
    stress = np.zeros((b, 3, 3))
    vol = np.ones(b)
    n_atoms = np.ones(b)
    weight = np.zeros(b)
    has_f = np.zeros(b, bool)
    has_s = np.zeros(b, bool)
    a = p = 0
    for k, s in enumerate(structures):
        n = s.n_atoms
        i, j, S = structure_pairs(s, cutoff, pairs_cache)
        m = len(i)
        if a + n > atom_slots or p + m > pair_slots:
            raise ValueError(f"structures need {a + n} atom / {p + m} pair slots, the batch has "
                             f"{atom_slots} / {pair_slots}")
        pos[a:a + n] = s.positions
        species[a:a + n] = s.numbers
        atom_s[a:a + n] = k
        if s.charges is not None:
            charges[a:a + n] = s.charges
        idx[0, p:p + m], idx[1, p:p + m] = i + a, j + a
        shifts[p:p + m] = S @ s.cell if m else 0.0
        mask[p:p + m] = True
        pair_s[p:p + m] = k
        energy[k] = s.energy
        if s.forces is not None:
            forces[a:a + n] = s.forces
            has_f[k] = True
        if s.stress is not None:
            stress[k] = s.stress
            has_s[k] = True
        if s.pbc:
            vol[k] = abs(np.linalg.det(s.cell))
        n_atoms[k] = n
        weight[k] = 1.0
        a += n
        p += m
    # padding atoms sit far from everything and from each other (no model sees them)
    pos[a:] = 1e4 * (1.0 + np.arange(atom_slots - a))[:, None]
    nbr = NeighborList(
        idx=jnp.asarray(idx), shifts=jnp.asarray(shifts, dtype), mask=jnp.asarray(mask),
        reference=jnp.asarray(pos, dtype), n_pairs=jnp.asarray(p, jnp.int32),
        max_row=jnp.asarray(0, jnp.int32), overflow=jnp.asarray(False), n_builds=jnp.asarray(0, jnp.int32),
    )
    ctx = Context(species=jnp.asarray(species), cell=jnp.eye(3, dtype=dtype),
                  neighbors=nbr if cutoff > 0 else None, charges=jnp.asarray(charges, dtype))
    return PackedBatch(positions=jnp.asarray(pos, dtype), context=ctx, atom_structure=jnp.asarray(atom_s),
                       pair_structure=jnp.asarray(pair_s), energy=jnp.asarray(energy),
                       forces=jnp.asarray(forces, dtype), stress=jnp.asarray(stress, dtype),
                       volume=jnp.asarray(vol, dtype), n_atoms=jnp.asarray(n_atoms), weight=jnp.asarray(weight),
                       has_forces=jnp.asarray(has_f), has_stress=jnp.asarray(has_s))


def _round_up(x: float, step: int) -> int:
    return int(step * max(1, -(-int(np.ceil(x)) // step)))


class PackedBatcher(_StructureBatcher):
    """Packed batches (:class:`PackedBatch`) of a fixed set of structures.

    Every batch has the same shape, so the training step compiles once:
    at most ``batch_size`` structures, ``atom_slots`` atoms and
    ``pair_slots`` half-list pairs. By default the slot budgets are
    ``slack`` x ``batch_size`` x the mean atom and pair counts (rounded up,
    and at least the largest single structure); structures are packed in a
    shuffled order (reproducible from ``seed`` and the epoch), see :meth:`plan`. ``budget`` =
    (atom_slots, pair_slots) reuses another batcher's shape (validation
    shares the training shape), grown where a structure would not fit."""

    def __init__(self, structures: list[Labelled], cutoff: float, batch_size: int, dtype=np.float64,
                 seed: int = 0, slack: float = 1.05, budget: tuple[int, int] | None = None):
        if not structures:
            raise InputError("no structures to batch")
        super().__init__(structures, cutoff, batch_size, dtype, seed)
        atoms = np.asarray([s.n_atoms for s in structures])
        pairs = self._npairs
        self._atoms = atoms
        if budget is None:
            budget = (slack * batch_size * atoms.mean(), slack * batch_size * pairs.mean())
        self.atom_slots = _round_up(max(budget[0], atoms.max()), 16)
        self.pair_slots = _round_up(max(budget[1], pairs.max(), 1), 64)

    @property
    def budget(self) -> tuple[int, int]:
        return self.atom_slots, self.pair_slots

    def plan(self, epoch: int | None = None) -> list[list[int]]:
        """Structure indices of each batch: structures in a shuffled order
        (``epoch=None``: file order), each put into the open batch it fills
        best (best fit, so batches come out nearly full), the batches then
        in a shuffled order."""
        rng = None if epoch is None else np.random.default_rng([self.seed, epoch])
        order = np.arange(len(self.structures)) if rng is None else rng.permutation(len(self.structures))
        A, P = self.atom_slots, self.pair_slots
        bins: list[list] = []           # [members, atoms, pairs]
        for k in order:
            n, m = self._atoms[k], self._npairs[k]
            best, room = None, None
            for b in bins:
                if len(b[0]) < self.batch_size and b[1] + n <= A and b[2] + m <= P:
                    r = (A - b[1] - n) / A + (P - b[2] - m) / P
                    if room is None or r < room:
                        best, room = b, r
            if best is None:
                bins.append([[int(k)], n, m])
            else:
                best[0].append(int(k))
                best[1] += n
                best[2] += m
        plan = [b[0] for b in bins]
        if rng is not None:
            plan = [plan[k] for k in rng.permutation(len(plan))]
        return plan

    def __len__(self) -> int:
        return len(self.plan(0))

    def batches(self, epoch: int | None = None):
        """Yield :class:`PackedBatch` objects (see :meth:`plan`)."""
        for members in self.plan(epoch):
            yield make_packed_batch([self.structures[k] for k in members], self.cutoff, self.atom_slots,
                                    self.pair_slots, self.batch_size, self.dtype, self._pairs)
