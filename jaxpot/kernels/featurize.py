"""The descriptor of a resolved kernel configuration: ``descriptor_fn``
(one structure), ``descriptor_size`` (its length D), ``pad_structures``
(ase.Atoms -> padded arrays, positions A, Z = 0 for padding) and
``compute_descriptors`` (batched, one compiled function per descriptor).
The descriptors themselves are in :mod:`jaxpot.kernels.descriptors` and
:mod:`jaxpot.kernels.soap`.
"""
from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from ..system import InputError, species_from_symbols
from .descriptors import bag_of_bonds, bag_sizes, coulomb_eigen, coulomb_sorted, overlap_eigen
from .soap import _soap_size, soap_power_spectrum


def _descriptor_key(config: dict):
    """A hashable description of the descriptor of a resolved config."""
    kind, n = config["descriptor"], int(config["max_atoms"])
    if kind == "soap":
        z = tuple(int(v) for v in species_from_symbols(config["species"]))
        return (kind, n, z, float(config["cutoff"]), int(config["n_max"]), int(config["l_max"]))
    if kind == "overlap":
        return (kind, n, config["orbitals"])
    if kind == "bag_of_bonds":
        z = species_from_symbols(config["species"])
        counts = {int(zz): int(config["max_counts"][s]) for zz, s in zip(z, config["species"])}
        return (kind, n, tuple(bag_sizes(z, counts)))
    return (kind, n)


def _descriptor_from_key(key):
    kind, n = key[0], key[1]
    if kind == "coulomb_eigen":
        return partial(coulomb_eigen, max_atoms=n)
    if kind == "coulomb_sorted":
        return partial(coulomb_sorted, max_atoms=n)
    if kind == "overlap":
        return partial(overlap_eigen, max_atoms=n, orbitals=key[2])
    if kind == "soap":
        return partial(soap_power_spectrum, max_atoms=n, species_z=key[2], cutoff=key[3],
                       n_max=key[4], l_max=key[5])
    return partial(bag_of_bonds, max_atoms=n, bags=list(key[2]))


def descriptor_fn(config: dict):
    """``d(positions (N,3) A, species (N,)) -> (D,)`` for a resolved config."""
    return _descriptor_from_key(_descriptor_key(config))


@lru_cache(maxsize=32)
def _batched_descriptor(key):
    # one compiled batch function per descriptor, reused across fits and predictions
    return jax.jit(jax.vmap(_descriptor_from_key(key)))


def descriptor_size(config: dict) -> int:
    """Length D of the descriptor vector of a resolved config."""
    kind, n = config["descriptor"], int(config["max_atoms"])
    if kind == "coulomb_eigen":
        return n
    if kind == "coulomb_sorted":
        return n * (n + 1) // 2
    if kind == "overlap":
        return n * (4 if config["orbitals"] == "sp" else 1)
    if kind == "soap":
        return _soap_size(config)
    z = species_from_symbols(config["species"])
    counts = {int(zz): int(config["max_counts"][s]) for zz, s in zip(z, config["species"])}
    return sum(size for _, _, size in bag_sizes(z, counts))


def pad_structures(atoms_list, max_atoms: int):
    """Positions (B, max_atoms, 3) A and species (B, max_atoms) of a list of
    ase.Atoms, zero-padded (Z = 0 marks padding)."""
    pos = np.zeros((len(atoms_list), max_atoms, 3))
    z = np.zeros((len(atoms_list), max_atoms), np.int32)
    for k, at in enumerate(atoms_list):
        n = len(at)
        if n > max_atoms:
            raise InputError(f"structure {k} has {n} atoms, more than max_atoms = {max_atoms}")
        pos[k, :n] = at.get_positions()
        z[k, :n] = at.get_atomic_numbers()
    return pos, z


def compute_descriptors(config: dict, positions, species, batch_size: int = 256):
    """(B, D) descriptors for padded batches (positions A)."""
    fn = _batched_descriptor(_descriptor_key(config))
    pos, z = np.asarray(positions), np.asarray(species)
    out = [np.asarray(fn(jnp.asarray(pos[i:i + batch_size]), jnp.asarray(z[i:i + batch_size])))
           for i in range(0, len(pos), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, descriptor_size(config)))
