"""The Potential contract and what every model gets from it for free.

A potential is a pure function ``energy(params, positions, context) -> eV``:
- ``params``: a pytree (empty for fixed physics models), from ``init(key, system)``;
- ``positions``: (N, 3) A;
- ``context``: a :class:`Context` pytree with what does not change every step
  (species, cell, neighbor list, per-atom input charges).

Forces are ``-grad`` in positions (eV/A); the stress is the derivative with
respect to a homogeneous strain applied to positions and cell together
(eV/A^3, ASE sign: sigma = (1/V) dE/d(epsilon)); bead or configuration
batches are ``vmap``. Sums of potentials are potentials (Delta-learning).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..partition import NeighborList
from ..space import pair_vectors, volume


@struct.dataclass
class Context:
    species: jnp.ndarray                      # (N,) int32 atomic numbers
    cell: jnp.ndarray                         # (3, 3) A, rows are lattice vectors
    neighbors: Optional[NeighborList] = None  # half list with image shifts
    charges: Optional[jnp.ndarray] = None     # (N,) e, from the input structure


def species_index_table(symbols):
    """(119,) int32 lookup from atomic number to the index of that element in
    a model's ``species`` list (e.g. ["H", "O"]); -1 for elements the model
    does not know and for atomic number 0, which marks padding atoms.

    Models use it as ``idx = table[context.species]``; atoms with idx < 0
    contribute no energy (the padding convention of batched training data)."""
    from ..system import species_from_symbols

    table = np.full(119, -1, np.int32)
    for k, z in enumerate(species_from_symbols(symbols)):
        table[z] = k
    return jnp.asarray(table)


def check_species(system, symbols, name: str) -> None:
    """InputError naming the elements of ``system`` that a model with
    ``species`` ``symbols`` was not built for."""
    from ..system import InputError

    missing = sorted(set(system.symbols) - set(symbols))
    if missing:
        raise InputError(f"{name} model has no parameters for element(s) {', '.join(missing)} "
                         f"(its species: {', '.join(symbols)})")


def _no_params(key, system):
    return {}


@dataclass(frozen=True)
class Potential:
    """A potential energy surface.

    energy: ``(params, positions (N,3) A, Context) -> scalar eV``.
    cutoff: interaction range in A that the neighbor list must cover
        (0 for potentials that need no neighbor list).
    translation_invariant: False for external fields (e.g. ``harmonic``
        tethers), so integrators keep centre-of-mass motion.
    charges: optional ``(params, positions, Context) -> (N,) e`` for models
        that assign charges (reported by the ASE calculator).
    config: the resolved configuration, all defaults filled in.
    neighbor_images: ``"all"`` (exact, every periodic image within the
        cutoff) or ``"minimum"`` (each pair once at its minimum image, i-PI's
        convention for small boxes); see :mod:`jaxpot.partition`.
    terms: the summed potentials of a ``sum`` (params are then the tuple of
        their params), so integrators can treat terms apart (ring-polymer
        contraction); empty for other potentials.
    atom_energies: optional ``(params, positions, Context) -> (N,) eV``,
        per-atom energies that sum to ``energy`` (local models: ML networks,
        atomic reference energies, and sums of them). A potential that has
        it sees nothing but the neighbor list's pair vectors and the species,
        so disjoint structures packed into one graph (training batches) get
        their own energies from one call.
    cluster_exclusions: for pair potentials that can also read a
        cluster-pair list (:mod:`jaxpot.partition`): the (E, 2) atom pairs the
        list's tiles must leave out (exclusions and 1-4 pairs the potential
        handles itself); None for potentials that read only pair lists.
    """

    energy: Callable[[Any, jnp.ndarray, Context], jnp.ndarray]
    init: Callable[[Any, Any], Any] = _no_params
    cutoff: float = 0.0
    name: str = "potential"
    translation_invariant: bool = True
    charges: Optional[Callable] = None
    config: dict = field(default_factory=dict)
    neighbor_images: str = "all"
    terms: tuple = ()
    atom_energies: Optional[Callable] = None
    cluster_exclusions: Optional[np.ndarray] = None


def esum(x):
    """Sum in float64, whatever the dtype of the terms (energies)."""
    return jnp.sum(jnp.asarray(x).astype(jnp.float64))


def pairs(positions, context: Context, *, full: bool = False):
    """Pair vectors from the context's neighbor list.

    Returns (i, j, dr, mask): indices (K,), r_j - r_i + s @ cell (K, 3) A and
    the validity mask (K,). Padded slots get a harmless vector of length 1e3 A
    (beyond any cutoff, never 0, so gradients stay finite). ``full=True``
    returns each pair in both directions (for many-body/ML models)."""
    nbr = context.neighbors
    if nbr is None:
        raise ValueError("this potential needs a neighbor list in its context")
    dr = pair_vectors(positions, context.cell, nbr.idx, nbr.shifts.astype(positions.dtype))
    far = jnp.asarray([1e3, 0.0, 0.0], dtype=dr.dtype)
    dr = jnp.where(nbr.mask[:, None], dr, far)
    i, j, mask = nbr.idx[0], nbr.idx[1], nbr.mask
    if full:
        i, j = jnp.concatenate([i, j]), jnp.concatenate([j, i])
        dr = jnp.concatenate([dr, -dr])
        mask = jnp.concatenate([mask, mask])
    return i, j, dr, mask


def safe_norm(dr, axis=-1):
    """|dr| with a finite gradient at dr = 0."""
    r2 = jnp.sum(dr * dr, axis=axis)
    safe = r2 > 0
    return jnp.where(safe, jnp.sqrt(jnp.where(safe, r2, 1.0)), 0.0)


def sum_potentials(terms, name: str = "sum") -> Potential:
    """A potential whose energy is the sum of the terms' energies; its params
    are the tuple of the terms' params (all trainable together)."""
    terms = tuple(terms)
    if not terms:
        raise ValueError("a sum of potentials needs at least one term")

    def init(key, system):
        keys = jax.random.split(key, len(terms))
        return tuple(t.init(k, system) for t, k in zip(terms, keys))

    def energy(params, positions, context):
        return sum(t.energy(p, positions, context) for t, p in zip(terms, params))

    charge_terms = [(k, t) for k, t in enumerate(terms) if t.charges is not None]

    def charges(params, positions, context):
        return sum(t.charges(params[k], positions, context) for k, t in charge_terms)

    def atom_energies(params, positions, context):
        return sum(t.atom_energies(p, positions, context) for t, p in zip(terms, params))

    return Potential(
        energy=energy, init=init, cutoff=max(t.cutoff for t in terms), name=name,
        translation_invariant=all(t.translation_invariant for t in terms),
        charges=charges if charge_terms else None, config={"kind": "sum", "terms": [t.config for t in terms]},
        neighbor_images="minimum" if any(t.neighbor_images == "minimum" for t in terms) else "all",
        terms=terms, atom_energies=atom_energies if all(t.atom_energies is not None for t in terms) else None,
        cluster_exclusions=_shared_cluster_exclusions(terms),
    )


def _shared_cluster_exclusions(terms):
    """A sum reads a cluster-pair list only if every term that needs
    neighbors can, with the same excluded pairs."""
    users = [t for t in terms if t.cutoff > 0]
    if not users or any(t.cluster_exclusions is None for t in users):
        return None
    keys = [{(min(a, b), max(a, b)) for a, b in np.asarray(t.cluster_exclusions).tolist()} for t in users]
    if any(k != keys[0] for k in keys[1:]):
        return None
    return np.asarray(users[0].cluster_exclusions)


def energy_and_forces(potential: Potential):
    """``(params, positions, context) -> (E eV, F (N,3) eV/A)``."""
    vg = jax.value_and_grad(potential.energy, argnums=1)

    def fn(params, positions, context):
        e, g = vg(params, positions, context)
        return e, -g

    return fn


def strained_energy(potential: Potential):
    """``(params, strain (3,3), positions, context) -> E`` with the strain
    applied to positions and cell: r -> r (1 + eps)^T."""
    def fn(params, strain, positions, context):
        sym = 0.5 * (strain + strain.T)
        deform = jnp.eye(3, dtype=positions.dtype) + sym.astype(positions.dtype)
        return potential.energy(params, positions @ deform.T,
                                context.replace(cell=context.cell @ deform.T))
    return fn


def energy_forces_stress(potential: Potential):
    """``(params, positions, context) -> (E eV, F eV/A, stress (3,3) eV/A^3)``.

    Stress sigma = (1/V) dE/d(epsilon) at epsilon = 0 (ASE convention;
    pressure = -trace(sigma)/3 from the potential alone)."""
    se = strained_energy(potential)
    grads = jax.value_and_grad(se, argnums=(1, 2))

    def fn(params, positions, context):
        zero = jnp.zeros((3, 3), dtype=positions.dtype)
        e, (ds, dx) = grads(params, zero, positions, context)
        return e, -dx, ds / volume(context.cell)

    return fn


def virial(potential: Potential):
    """``(params, positions, context) -> W (3,3) eV``: W = -dE/d(epsilon),
    so that P V = (2 K + trace W)/3."""
    se = strained_energy(potential)
    g = jax.grad(se, argnums=1)

    def fn(params, positions, context):
        return -g(params, jnp.zeros((3, 3), positions.dtype), positions, context)

    return fn


def batched(fn):
    """Vectorise ``fn(params, positions, context)`` over a leading axis of
    positions (beads or configurations), sharing params and context."""
    return jax.vmap(fn, in_axes=(None, 0, None))


def bind(potential: Potential, params, context: Context):
    """``energy_fn(positions, neighbors=None) -> eV`` for integrators
    (JAX MD style: extra keyword arguments are passed through every step)."""
    def energy_fn(positions, neighbors=None, **unused):
        ctx = context if neighbors is None else context.replace(neighbors=neighbors)
        return potential.energy(params, positions, ctx)
    return energy_fn
