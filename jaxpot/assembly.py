"""The one assembly path: a ``[potential]`` table and a structure in, a
potential ready to evaluate out.

:func:`prepare` does System -> Potential (:func:`jaxpot.potentials.build_potential`,
or a Potential built in Python) -> parameters (``Potential.init``, cast to
``dtype``) -> neighbor-list functions
(:func:`jaxpot.partition.neighbor_fns_for`: a pair list or a cluster-pair
list) -> a first list -> :class:`~jaxpot.potentials.base.Context`. The MD
driver (:mod:`jaxpot.simulate`), the ASE calculator
(:class:`jaxpot.interop.ase.JaxpotCalculator`), the structure builders
(:mod:`jaxpot.build`) and the benchmarks (``experiments/benchlib.py``) all
assemble through it.

Units (metal): positions, cell, cutoff and skin in A; energies eV; charges e.
Usage from Python: ``docs/python.md``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .partition import neighbor_fns_for
from .errors import InputError
from .potentials import build_potential
from .potentials.base import Context, Potential
from .system import System, from_ase

DTYPES = {"float64": jnp.float64, "float32": jnp.float32}


class Prepared(NamedTuple):
    """What :func:`prepare` returns.

    potential: the :class:`Potential` (``cutoff`` A, ``config`` the resolved table).
    params: its parameters (a pytree; floating leaves in ``dtype`` when cast).
    context: ``Context(species, cell, neighbors=None, charges)`` of the system;
        put a neighbor list in with ``context.replace(neighbors=...)``.
    neighbor_fns: the neighbor-list functions (``allocate``, ``update``,
        ``reallocate``), or None when the potential has no cutoff.
    neighbors: a list allocated at the system's positions (complete: grown
        once if the first one overflowed), or None (no cutoff, or ``allocate=False``).
    system: the :class:`System` the rest was built for, positions in ``dtype``.
    """
    potential: Potential
    params: Any
    context: Context
    neighbor_fns: Any
    neighbors: Any
    system: System


def cast_params(tree, dtype):
    """Floating leaves of a params pytree in ``dtype`` (integers untouched)."""
    return jax.tree_util.tree_map(
        lambda x: jnp.asarray(x, dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, tree)


def as_dtype(dtype):
    """``"float64"`` / ``"float32"`` (or a jnp dtype) as a jnp dtype; InputError otherwise."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise InputError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        return DTYPES[dtype]
    return dtype


def prepare(spec, system, *, dtype="float64", skin: float = 1.0, layout: str = "auto",
            key=None, params=None, cast: bool = True, allocate: bool = True) -> Prepared:
    """Assemble a potential for ``system``; returns a :class:`Prepared`.

    spec: a ``[potential]`` table (dict, e.g. ``{"kind": "qtip4pf"}``) or an
        already built :class:`Potential`.
    system: a :class:`System` or an ``ase.Atoms`` (converted with ``dtype``);
        a System is used as given (build it in ``dtype``).
    dtype: "float64" | "float32" (or the jnp dtype): precision of the params
        when ``cast``.
    skin: neighbor-list skin, A. layout: "auto" | "pairs" | "clusters"
        (see :func:`jaxpot.partition.neighbor_fns_for`).
    key: PRNG key of ``Potential.init`` (default ``jax.random.PRNGKey(0)``).
    params: use these parameters instead of ``init`` (cast when ``cast``).
    cast: cast floating parameters to ``dtype`` (:func:`cast_params`).
    allocate: allocate a first neighbor list at the system's positions.

    Contract: nothing is compiled here; the same inputs give the same
    potential, parameters and list, so the MD driver, the calculator and
    the benchmarks evaluate the same function."""
    dtype = as_dtype(dtype)
    if not isinstance(system, System):
        system = from_ase(system, dtype=dtype)
    if isinstance(spec, Potential):
        pot = spec
    elif isinstance(spec, dict):
        pot = build_potential(spec, system)
    else:
        raise InputError("prepare needs a [potential] table (dict) or a Potential")
    if params is None:
        params = pot.init(jax.random.PRNGKey(0) if key is None else key, system)
    if cast:
        params = cast_params(params, dtype)
    context = Context(species=system.species, cell=system.cell, neighbors=None, charges=system.charges)
    fns: Optional[Any] = None
    nbr = None
    if pot.cutoff > 0:
        fns = neighbor_fns_for(pot, np.asarray(system.cell), system.periodic, system.n_atoms, skin=skin,
                               layout=layout, positions=system.positions)
        if allocate:
            nbr = fns.allocate(system.positions, system.cell)
            if nbr.did_overflow():   # the starting forces must come from a complete list
                nbr = fns.reallocate(nbr, system.positions, system.cell)
    return Prepared(pot, params, context, fns, nbr, system)
