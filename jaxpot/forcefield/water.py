"""Flexible water models as ready-made potentials: q-TIP4P/F and SPC/Fw.

q-TIP4P/F (Habershon, Markland, Manolopoulos, JCP 131, 024501 (2009)):
  V_OH(r)   = D_r [a^2 dr^2 - a^3 dr^3 + (7/12) a^4 dr^4],  dr = r - r_eq
              (quartic expansion of a Morse bond), D_r = 116.09 kcal/mol,
              a = 2.287 1/A, r_eq = 0.9419 A
  V_HOH     = (1/2) k_theta (theta - theta_eq)^2, k_theta = 87.85 kcal/mol/rad^2,
              theta_eq = 107.4 deg
  V_LJ(O-O) = 4 eps [(s/r)^12 - (s/r)^6], eps = 0.1852 kcal/mol, s = 3.1589 A,
              truncated at 9 A without shift or tail correction (as in the paper)
  Coulomb between molecules only: q_H = +0.5564 e on the hydrogens and
  q_M = -1.1128 e on the massless M site r_M = gamma r_O + (1 - gamma)/2 (r_H1 + r_H2),
  gamma = 0.73612. The M site is a function of O, H, H positions, so autodiff
  distributes its force onto them (the chain rule replaces the usual
  hand-written virtual-site force redistribution).
SPC/Fw (Wu, Tepper, Voth, JCP 124, 024503 (2006)): harmonic bonds
  (k_b = 1059.162 kcal/mol/A^2, r0 = 1.012 A, E = k_b/2 dr^2) and angle
  (k_theta = 75.90 kcal/mol/rad^2, theta0 = 113.24 deg), q_O = -0.82 e,
  q_H = +0.41 e, O-O LJ eps = 0.1554253 kcal/mol, sigma = 3.165492 A.

Molecules are recognised from the atom order O, H, H or, failing that, by
assigning every H to its nearest O (minimum image); each O must own exactly
two H. Bonded geometry uses minimum-image vectors, so molecules split across
the periodic boundary in the input are handled.
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from .. import units
from ..space import minimum_image, times3
from ..system import InputError, System, check_choice
from ..potentials.base import Context, Potential, esum, safe_norm
from ..potentials.electrostatics import all_pairs, make_coulomb

QTIP4PF = dict(
    D_r=116.09 * units.KCAL_MOL, a_r=2.287, r_eq=0.9419,
    k_theta=87.85 * units.KCAL_MOL, theta_eq=107.4,
    epsilon=0.1852 * units.KCAL_MOL, sigma=3.1589,
    q_H=0.5564, gamma=0.73612, bond="quartic_morse",
)
SPCFW = dict(
    k_b=1059.162 * units.KCAL_MOL, r_eq=1.012,
    k_theta=75.90 * units.KCAL_MOL, theta_eq=113.24,
    epsilon=0.1554253 * units.KCAL_MOL, sigma=3.165492,
    q_H=0.41, gamma=1.0, bond="harmonic",
)

_DEFAULTS = dict(cutoff=9.0, coulomb=None, accuracy=1e-5, images="all",
                 lj_tail_correction=False, lj_shift=False, part="all")
PARTS = ("all", "intramolecular", "intermolecular")


def find_water_molecules(system: System) -> np.ndarray:
    """(M, 3) atom indices (O, H1, H2) of every water molecule.

    Raises InputError if the system is not made only of water."""
    z = np.asarray(system.species)
    n = len(z)
    bad = sorted(set(int(x) for x in z) - {1, 8})
    if bad:
        from ase.data import chemical_symbols
        raise InputError("water model got non-water elements: "
                         + ", ".join(chemical_symbols[b] for b in bad))
    if n % 3 == 0 and np.all(z[0::3] == 8) and np.all(z[1::3] == 1) and np.all(z[2::3] == 1):
        return np.arange(n).reshape(-1, 3)
    o = np.where(z == 8)[0]
    h = np.where(z == 1)[0]
    if len(h) != 2 * len(o):
        raise InputError(f"water model needs two H per O, got {len(o)} O and {len(h)} H")
    pos = np.asarray(system.positions, dtype=np.float64)
    d = pos[h][:, None, :] - pos[o][None, :, :]
    if system.periodic:
        cell = np.asarray(system.cell, dtype=np.float64)
        f = d @ np.linalg.inv(cell)
        d = (f - np.round(f)) @ cell
    owner = np.argmin(np.linalg.norm(d, axis=-1), axis=1)
    counts = np.bincount(owner, minlength=len(o))
    if np.any(counts != 2):
        k = int(np.argmax(counts != 2))
        raise InputError(f"cannot recognise water molecules: O atom {o[k]} has {counts[k]} "
                         "nearest H atoms (expected 2)")
    mols = np.zeros((len(o), 3), dtype=np.int64)
    for k in range(len(o)):
        mols[k] = [o[k], *h[owner == k]]
    return mols


def _mic(d, cell, periodic):
    return minimum_image(d, cell) if periodic else d


def water_potential(model: dict, system: System, *, cutoff: float = 9.0,
                    coulomb: str | None = None, accuracy: float = 1e-5,
                    images: str = "all", lj_tail_correction: bool = False,
                    lj_shift: bool = False, part: str = "all", name: str = "water") -> Potential:
    """A flexible water potential for ``system`` (energies eV, lengths A).

    ``model`` is a parameter table (:data:`QTIP4PF` or :data:`SPCFW`, metal
    units); its floats are the trainable params returned by ``init``.
    ``coulomb``: "ewald" (default for periodic cells), "pme", or "direct"
    (default for clusters). ``images``: neighbor convention for small cells.
    ``lj_shift``: subtract V_LJ(cutoff) so the energy is continuous at the
    cutoff (not in the published models, which truncate; useful for tight
    NVE energy conservation, since each O-O pair crossing 9 A otherwise
    changes the energy by |V_LJ(9 A)| = 6e-5 eV).
    ``part``: "all" (default), "intramolecular" (bonds and angle only, no
    neighbor list) or "intermolecular" (LJ and Coulomb only); the two parts
    sum to "all". Ring-polymer contraction puts them on different bead
    numbers (``[md] contraction``).
    """
    check_choice("part", part, PARTS)
    mols = find_water_molecules(system)
    n = system.n_atoms
    periodic = system.periodic
    if coulomb is None:
        coulomb = "ewald" if periodic else "direct"
    if periodic and coulomb == "direct":
        raise InputError("coulomb = 'direct' is for clusters; use 'ewald' or 'pme' in a periodic cell")
    if not periodic and coulomb in ("ewald", "pme"):
        raise InputError(f"coulomb = {coulomb!r} needs a periodic cell; use 'direct' for clusters")
    mol_of = np.zeros(n, dtype=np.int32)
    mol_of[mols.reshape(-1)] = np.repeat(np.arange(len(mols)), 3)
    is_o = np.zeros(n, dtype=bool)
    is_o[mols[:, 0]] = True
    bond_kind = model["bond"]
    params0 = {k: float(v) for k, v in model.items() if k not in ("bond",)}
    coul = make_coulomb(coulomb, np.asarray(system.cell) if periodic else None, cutoff,
                        accuracy=accuracy, n_sites=n)
    mol_of_j = jnp.asarray(mol_of)
    is_o_j = jnp.asarray(is_o)
    o_idx, h1_idx, h2_idx = (jnp.asarray(mols[:, k]) for k in range(3))
    # intramolecular site pairs (M-H1, M-H2, H1-H2): all excluded from Coulomb
    ex_i = jnp.asarray(np.concatenate([mols[:, 0], mols[:, 0], mols[:, 1]]))
    ex_j = jnp.asarray(np.concatenate([mols[:, 1], mols[:, 2], mols[:, 2]]))
    ex_scale = jnp.zeros(3 * len(mols))
    if not periodic:
        di, dj = all_pairs(n)
        di, dj = jnp.asarray(di), jnp.asarray(dj)
    # margin so that every site pair within the cutoff is an atom pair in the list:
    # the M site sits ~0.15 A from its O
    margin = 0.35 if params0["gamma"] < 1.0 else 0.0

    def geometry(params, positions, cell):
        r1 = _mic(positions[h1_idx] - positions[o_idx], cell, periodic)
        r2 = _mic(positions[h2_idx] - positions[o_idx], cell, periodic)
        m = positions[o_idx] + 0.5 * (1.0 - params["gamma"]) * (r1 + r2)
        sites = positions.at[o_idx].set(m)
        return r1, r2, sites

    def intramolecular(params, r1, r2):
        d1, d2 = safe_norm(r1), safe_norm(r2)
        if bond_kind == "quartic_morse":
            a = params["a_r"]

            def v(r):
                x = a * (r - params["r_eq"])
                return params["D_r"] * (x ** 2 - x ** 3 + (7.0 / 12.0) * x ** 4)
        else:
            def v(r):
                return 0.5 * params["k_b"] * (r - params["r_eq"]) ** 2
        cos = jnp.sum(r1 * r2, axis=-1) / (d1 * d2)
        theta = jnp.arccos(jnp.clip(cos, -1.0 + 1e-12, 1.0 - 1e-12))
        th0 = jnp.deg2rad(params["theta_eq"])
        return esum(v(d1)) + esum(v(d2)) + esum(0.5 * params["k_theta"] * (theta - th0) ** 2)

    def charges_of(params, dtype):
        q = jnp.where(is_o_j, -2.0 * params["q_H"], params["q_H"])
        return q.astype(dtype)

    def lj(params, sr6):
        v = 4.0 * params["epsilon"] * (sr6 * sr6 - sr6)
        if lj_shift:
            src6 = (params["sigma"] / cutoff) ** 6
            v = v - 4.0 * params["epsilon"] * (src6 * src6 - src6)
        return v

    def energy(params, positions, context: Context):
        cell = context.cell
        r1, r2, sites = geometry(params, positions, cell)
        if part == "intramolecular":
            return intramolecular(params, r1, r2)
        e = intramolecular(params, r1, r2) if part == "all" else jnp.zeros((), jnp.float64)
        q = charges_of(params, positions.dtype)
        rc2 = cutoff ** 2
        if periodic or context.neighbors is not None:
            nbr = context.neighbors
            i, j, mask = nbr.idx[0], nbr.idx[1], nbr.mask
            # gathers of (N, 3) arrays only: XLA's CPU gather/scatter (the
            # gradient of a gather) is several times slower on wider rows
            image = times3(nbr.shifts.astype(positions.dtype), cell)
            dr = positions[j] - positions[i] + image
            sdr = sites[j] - sites[i] + image
            intra = (mol_of_j[i] == mol_of_j[j]) & jnp.all(nbr.shifts == 0, axis=-1)
            # O-O Lennard-Jones on atom positions
            r2 = jnp.sum(dr * dr, axis=-1)
            lj_mask = mask & is_o_j[i] & is_o_j[j] & (r2 < rc2) & ~intra
            sr6 = (params["sigma"] ** 2 / jnp.where(lj_mask, r2, 1.0)) ** 3
            e = e + esum(jnp.where(lj_mask, lj(params, sr6), 0.0))
            cmask = mask & ~intra & (jnp.sum(sdr * sdr, axis=-1) < rc2)
            sdr = jnp.where(cmask[:, None], sdr, jnp.asarray([1e3, 0.0, 0.0], sdr.dtype))
        else:
            i, j = di, dj
            sdr = sites[j] - sites[i]
            dr = positions[j] - positions[i]
            intra = mol_of_j[i] == mol_of_j[j]
            r2 = jnp.sum(dr * dr, axis=-1)
            lj_mask = is_o_j[i] & is_o_j[j] & ~intra & (r2 < rc2)
            sr6 = (params["sigma"] ** 2 / jnp.where(lj_mask, r2, 1.0)) ** 3
            e = e + esum(jnp.where(lj_mask, lj(params, sr6), 0.0))
            cmask = ~intra
            sdr = jnp.where(cmask[:, None], sdr, jnp.asarray([1e3, 0.0, 0.0], sdr.dtype))
        if lj_tail_correction and periodic:
            # uniform-density tail beyond rc: (8/3) pi N_O^2 eps s^3/V [(s/rc)^9/3 - (s/rc)^3]
            n_o = float(len(mols))
            vol = jnp.abs(jnp.linalg.det(cell))
            s3 = params["sigma"] ** 3
            x3 = (params["sigma"] / cutoff) ** 3
            e = e + (8.0 / 3.0) * jnp.pi * n_o ** 2 / vol * params["epsilon"] * s3 * (x3 ** 3 / 3.0 - x3)
        ex_dr = sites[ex_j] - sites[ex_i]
        e = e + coul.energy(sites, q, cell, i, j, sdr, cmask,
                            excl_i=ex_i, excl_j=ex_j, excl_dr=ex_dr, excl_scale=ex_scale)
        return e

    def init(key, system_):
        return {k: jnp.asarray(v) for k, v in params0.items()}

    def charges(params, positions, context):
        return charges_of(params, positions.dtype)

    config = {"cutoff": cutoff, "coulomb": coulomb, "accuracy": accuracy,
              "images": images, "lj_tail_correction": lj_tail_correction, "lj_shift": lj_shift,
              "part": part}
    needs_list = periodic and part != "intramolecular"
    return Potential(energy=energy, init=init, cutoff=cutoff + margin if needs_list else 0.0,
                     name=name, charges=None if part == "intramolecular" else charges, config=config, neighbor_images=images)


def _from_config(model, kind):
    """Factory of a water kind. ``parameters = {q_H = 0.55, ...}`` overrides
    entries of the parameter table (metal units: eV, A, degrees, e; the
    starting point of a force-field fit); the fitted values live in params."""
    def factory(config: dict, system: System) -> Potential:
        unknown = set(config) - set(_DEFAULTS) - {"kind", "parameters"}
        if unknown:
            raise InputError(f"unknown key(s) for potential kind {kind!r}: {', '.join(sorted(unknown))}")
        override = dict(config.get("parameters") or {})
        bad = set(override) - (set(model) - {"bond"})
        if bad:
            raise InputError(f"unknown {kind} parameter(s) {', '.join(sorted(bad))} "
                             f"(known: {', '.join(sorted(set(model) - {'bond'}))})")
        opts = {**_DEFAULTS, **{k: v for k, v in config.items() if k not in ("kind", "parameters")}}
        pot = water_potential({**model, **{k: float(v) for k, v in override.items()}}, system, name=kind, **opts)
        pot.config["kind"] = kind
        if override:
            pot.config["parameters"] = {k: float(v) for k, v in override.items()}
        return pot
    return factory


qtip4pf_from_config = _from_config(QTIP4PF, "qtip4pf")
spcfw_from_config = _from_config(SPCFW, "spcfw")
