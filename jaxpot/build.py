"""Structure builders for users without input files.

``water_box``: n rigid-geometry water molecules at a density (g/cm^3) with
random orientations on a jittered cubic lattice, placed so that no two atoms
of different molecules come closer than ``min_contact`` A, then optionally
relaxed with FIRE on q-TIP4P/F. ``from_ase_build`` gives
access to anything ``ase.build`` makes (bulk crystals, molecules).
"""
from __future__ import annotations

import numpy as np

from . import units
from .errors import InputError

WATER_MASS = 18.01528  # amu


def _random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


def water_box(molecules: int = 64, density: float = 0.997, seed: int = 0,
              relax: bool = True, min_contact: float = 1.6):
    """A periodic cubic box of water as ``ase.Atoms`` (O, H, H order).

    density in g/cm^3; lengths in A. Raises InputError when the molecules
    cannot be placed without unphysical contacts."""
    from ase import Atoms

    if molecules < 1:
        raise InputError("water_box needs at least one molecule")
    if not 0.05 <= density <= 2.0:
        raise InputError(f"water_box density {density} g/cm^3 is outside 0.05..2.0")
    rng = np.random.default_rng(seed)
    volume = molecules * WATER_MASS / (density / units.AMU_A3_TO_G_CM3)
    side = volume ** (1.0 / 3.0)
    n_side = int(np.ceil(molecules ** (1.0 / 3.0)))
    spacing = side / n_side
    r_oh, theta = 0.9572, np.deg2rad(104.52)
    local = np.array([[0.0, 0.0, 0.0],
                      [r_oh, 0.0, 0.0],
                      [r_oh * np.cos(theta), r_oh * np.sin(theta), 0.0]])
    local -= local.mean(axis=0)
    sites = np.array([(i, j, k) for i in range(n_side) for j in range(n_side) for k in range(n_side)], float)
    sites = sites[rng.permutation(len(sites))[:molecules]]
    placed = []

    def clashes(xyz):
        if not placed:
            return False
        prev = np.concatenate(placed)
        d = xyz[:, None, :] - prev[None, :, :]
        d -= np.round(d / side) * side
        return np.min(np.linalg.norm(d, axis=-1)) < min_contact

    for s in sites:
        for attempt in range(200):
            centre = (s + 0.5) * spacing + rng.uniform(-0.15, 0.15, 3) * spacing
            xyz = centre + local @ _random_rotation(rng).T
            if not clashes(xyz):
                placed.append(xyz)
                break
        else:
            raise InputError(f"water_box could not place {molecules} molecules at {density} g/cm^3 "
                             f"without contacts below {min_contact} A")
    atoms = Atoms("OH2" * molecules, positions=np.concatenate(placed), cell=[side] * 3, pbc=True)
    if relax:
        atoms = relax_water(atoms)
    return atoms


def relax_water(atoms, steps: int = 300, max_step: float = 0.1, dt: float = 0.5):
    """Relax a water structure on q-TIP4P/F with FIRE (Bitzek et al., PRL 97,
    170201 (2006)): damped dynamics that mixes velocities towards the force
    direction and restarts whenever the power F.v turns negative. At most
    ``max_step`` A per atom per step; ``dt`` in fs with unit masses.
    Returns a new ``ase.Atoms``."""
    import jax
    import jax.numpy as jnp

    from .assembly import prepare
    from .potentials.base import energy_and_forces

    spec = {"kind": "qtip4pf", "coulomb": "pme", "accuracy": 1e-4,
            "cutoff": min(9.0, 0.45 * float(np.min(atoms.cell.lengths())))}
    # a pair list (as always here) and the parameters as the model gives them
    prep = prepare(spec, atoms, skin=1.0, layout="pairs", cast=False)
    system, pot, params, fns = prep.system, prep.potential, prep.params, prep.neighbor_fns
    ef = energy_and_forces(pot)
    f_inc, f_dec, a0, f_a, dt_max = 1.1, 0.5, 0.1, 0.99, 10.0 * dt

    def forces(pos, nbr):
        nbr = fns.update(pos, nbr, system.cell)
        return ef(params, pos, prep.context.replace(neighbors=nbr))[1], nbr

    @jax.jit
    def fire(pos, nbr):
        f, nbr = forces(pos, nbr)

        def body(carry, _):
            pos, v, f, nbr, h, a, n_pos = carry
            power = jnp.sum(f * v)
            fn = f / jnp.maximum(jnp.linalg.norm(f), 1e-30)
            v = (1 - a) * v + a * jnp.linalg.norm(v) * fn
            up = power > 0
            n_pos = jnp.where(up, n_pos + 1, 0)
            grow = up & (n_pos > 5)
            h = jnp.where(grow, jnp.minimum(h * f_inc, dt_max), jnp.where(up, h, h * f_dec))
            a = jnp.where(grow, a * f_a, jnp.where(up, a, a0))
            v = jnp.where(up, v, 0.0)
            v = v + h * f
            dx = h * v
            norm = jnp.linalg.norm(dx, axis=-1, keepdims=True)
            dx = dx * jnp.minimum(1.0, max_step / jnp.maximum(norm, 1e-30))
            pos = pos + dx
            f, nbr = forces(pos, nbr)
            return (pos, v, f, nbr, h, a, n_pos), None

        carry = (pos, jnp.zeros_like(pos), f, nbr, jnp.asarray(dt), jnp.asarray(a0), jnp.asarray(0))
        carry, _ = jax.lax.scan(body, carry, None, length=steps)
        return carry[0], carry[3]

    nbr = prep.neighbors
    pos, nbr = fire(system.positions, nbr)
    while nbr.did_overflow():   # relax again from the start with a larger list
        nbr = fns.reallocate(nbr, system.positions, system.cell)
        pos, nbr = fire(system.positions, nbr)
    out = atoms.copy()
    out.set_positions(np.asarray(pos))
    return out


def water_cluster(molecules: int = 8, seed: int = 0, density: float = 0.9):
    """A non-periodic water cluster (ase.Atoms) cut from a relaxed box."""
    atoms = water_box(molecules, density=density, seed=seed)
    atoms.set_pbc(False)
    atoms.set_cell(np.zeros((3, 3)))
    atoms.center(vacuum=None)
    return atoms


BUILDERS = {"water_box", "water_cluster", "bulk", "molecule"}


def build_structure(spec: dict):
    """An ``ase.Atoms`` from a ``[system] build = {...}`` table.

    kinds: ``water_box`` (molecules, density g/cm^3, seed), ``water_cluster``
    (molecules, seed), ``bulk`` (ase.build.bulk arguments plus ``repeat``),
    ``molecule`` (ase.build.molecule name, optional ``vacuum`` A)."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in BUILDERS:
        raise InputError(f"unknown builder {kind!r} (known: {', '.join(sorted(BUILDERS))})")
    try:
        if kind == "water_box":
            return water_box(**spec)
        if kind == "water_cluster":
            return water_cluster(**spec)
        repeat = spec.pop("repeat", None)
        if kind == "bulk":
            from ase.build import bulk
            atoms = bulk(**spec)
        else:
            from ase.build import molecule
            vacuum = spec.pop("vacuum", None)
            atoms = molecule(**spec)
            if vacuum is not None:
                atoms.center(vacuum=vacuum)
        if repeat is not None:
            atoms = atoms.repeat(repeat)
        return atoms
    except TypeError as err:
        raise InputError(f"bad arguments for builder {kind!r}: {err}") from None
