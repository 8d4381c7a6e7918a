"""The System pytree and its conversion to and from ``ase.Atoms``.

Units: positions and cell in Angstrom, masses in amu, charges in e.
The cell is stored with lattice vectors as *rows* (ASE's convention), so a
fractional coordinate f maps to Cartesian r = f @ cell.
"""
from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
import numpy as np
from flax import struct

from ase.data import atomic_masses, atomic_numbers, chemical_symbols

from .errors import InputError  # noqa: F401  (re-exported: the data model raises it)
from .space import minimum_image


def positive_number(name: str, value, unit: str) -> float:
    """``value`` as a positive finite float, else InputError naming it and its unit."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number ({unit}), got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise InputError(f"{name} must be positive and finite ({unit}), got {value!r}")
    return v


def check_choice(what: str, value, choices) -> None:
    """InputError "unknown <what> 'value' (use one of: ...)" unless value is in choices."""
    if value not in choices:
        raise InputError(f"unknown {what} {value!r} (use one of: {', '.join(map(str, choices))})")


@struct.dataclass
class System:
    positions: jnp.ndarray            # (N, 3) A
    species: jnp.ndarray              # (N,) int32 atomic numbers
    masses: jnp.ndarray               # (N,) amu
    cell: jnp.ndarray                 # (3, 3) A, rows are lattice vectors (zeros if none)
    charges: Optional[jnp.ndarray] = None   # (N,) e, when the input carries them
    pbc: tuple = struct.field(pytree_node=False, default=(False, False, False))

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def periodic(self) -> bool:
        return any(self.pbc)

    @property
    def symbols(self) -> list[str]:
        return [chemical_symbols[int(z)] for z in np.asarray(self.species)]


def species_from_symbols(symbols) -> np.ndarray:
    """Atomic numbers for element symbols; unknown symbols raise InputError."""
    out = []
    for s in symbols:
        if s not in atomic_numbers or atomic_numbers[s] == 0:
            raise InputError(f"unknown element {s!r}")
        out.append(atomic_numbers[s])
    return np.asarray(out, dtype=np.int32)


def from_ase(atoms, dtype=jnp.float64) -> System:
    """Build a System from ``ase.Atoms`` (positions A, masses amu, charges e)."""
    z = np.asarray(atoms.get_atomic_numbers(), dtype=np.int32)
    if len(z) == 0:
        raise InputError("the structure has no atoms")
    if np.any(z <= 0):
        raise InputError("unknown element (atomic number 0, symbol 'X') in the structure")
    pos = np.asarray(atoms.get_positions(), dtype=np.float64)
    if not np.all(np.isfinite(pos)):
        raise InputError("the structure has non-finite positions")
    pbc = tuple(bool(p) for p in atoms.get_pbc())
    cell = np.asarray(atoms.get_cell().array, dtype=np.float64)
    if any(pbc):
        if not all(pbc):
            raise InputError("mixed periodicity (pbc not all True or all False) is not supported")
        if abs(np.linalg.det(cell)) < 1e-6:
            raise InputError("periodic structure with a degenerate (zero-volume) cell")
    charges = None
    if "initial_charges" in atoms.arrays and np.any(atoms.arrays["initial_charges"] != 0):
        charges = jnp.asarray(atoms.arrays["initial_charges"], dtype=dtype)
    return System(
        positions=jnp.asarray(pos, dtype=dtype),
        species=jnp.asarray(z),
        masses=jnp.asarray(atoms.get_masses(), dtype=dtype),
        cell=jnp.asarray(cell, dtype=dtype),
        charges=charges,
        pbc=pbc,
    )


def to_ase(system: System, positions=None):
    """An ``ase.Atoms`` copy of the system (optionally with other positions, A)."""
    from ase import Atoms

    pos = np.asarray(system.positions if positions is None else positions, dtype=np.float64)
    atoms = Atoms(
        numbers=np.asarray(system.species),
        positions=pos,
        cell=np.asarray(system.cell, dtype=np.float64),
        pbc=system.pbc,
    )
    atoms.set_masses(np.asarray(system.masses, dtype=np.float64))
    if system.charges is not None:
        atoms.set_initial_charges(np.asarray(system.charges, dtype=np.float64))
    return atoms


def default_masses(species) -> np.ndarray:
    """Standard atomic masses (amu) for atomic numbers."""
    return np.asarray([atomic_masses[int(z)] for z in np.asarray(species)])


def check_min_distance(system: System, min_distance: float = 0.5) -> None:
    """Raise InputError naming the closest pair if two atoms are nearer than
    ``min_distance`` (A), with the minimum image for periodic cells."""
    pos = np.asarray(system.positions, dtype=np.float64)
    n = len(pos)
    if n < 2:
        return
    cell = np.asarray(system.cell, dtype=np.float64)
    # blockwise to keep memory O(N * block)
    best = (np.inf, -1, -1)
    inv = np.linalg.inv(cell) if system.periodic else None
    for start in range(0, n, 512):
        d = pos[start:start + 512, None, :] - pos[None, :, :]
        if system.periodic:
            d = np.asarray(minimum_image(d, cell, inv))
        r = np.linalg.norm(d, axis=-1)
        ii = np.arange(start, min(start + 512, n))
        r[np.arange(len(ii)), ii] = np.inf
        k = np.unravel_index(np.argmin(r), r.shape)
        if r[k] < best[0]:
            best = (r[k], ii[k[0]], k[1])
    if best[0] < min_distance:
        sym = system.symbols
        i, j = best[1], best[2]
        raise InputError(
            f"atoms {i} ({sym[i]}) and {j} ({sym[j]}) overlap: distance {best[0]:.3f} A "
            f"is below the sanity limit of {min_distance} A"
        )
