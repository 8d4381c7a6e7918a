"""Force-field topology (static integer index arrays) and parameters (a
float pytree), with their validation; the bond-graph exclusion rule.

Units (metal): lengths A, energies eV, angles rad, force constants eV/A^2
(bonds, Urey-Bradley) and eV/rad^2 (angles, impropers), charges e, CMAP
grids eV.

Data layout: a static :class:`Topology` (integer index arrays, held in the
potential's closure) and a float :class:`ForceFieldParams` pytree (trainable
with optax, savable), joined by
:func:`jaxpot.forcefield.engine.classical_potential`. The 1-2/1-3 excluded,
1-4 scaled convention of :func:`exclusions_from_bonds` is the AMBER/CHARMM/
OPLS one.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..system import InputError

COMBINATION_RULES = ("lorentz-berthelot", "geometric")


@dataclass(frozen=True, eq=False)
class Topology:
    """Static connectivity: integer index arrays (numpy), never traced.

    atom_types (N,): LJ type of each atom (index into per-type params).
    bonds (B, 2), angles (A, 3) (vertex in the middle), urey_bradley (U, 2)
    (the 1-3 atoms), torsions (D, 4) with torsion_periodicity (D,) (several
    rows per torsion give several multiplicities), impropers (I, 4),
    cmap (C, 8) (two dihedrals a1..a4, b1..b4, as OpenMM) with cmap_map (C,).
    exclusions (E, 2): pairs without nonbonded interaction.
    pairs14 (P, 2): pairs removed from the nonbonded sum and added back
    with scaled (coulomb14_scale, lj14_scale) or explicit parameters
    (ForceFieldParams.pair14_*), like OpenMM's NonbondedForce exceptions.
    nbfix (T, T) bool: type pairs whose LJ sigma/epsilon come from the
    explicit tables ForceFieldParams.nbfix_sigma/nbfix_epsilon instead of
    the combination rule.
    quartic_morse_bonds (Q, 2): bonds with the quartic expansion of a Morse
    potential (:func:`jaxpot.forcefield.bonded.quartic_morse_bond_energy`).
    virtual_sites (V, 3): massless average sites (a, b, c) at
    w_a r_a + w_b r_b + w_c r_c (weights ForceFieldParams.vsite_weights);
    the site is atom a's charge centre: atom a's charge interacts (Coulomb,
    Ewald/PME) from the site, atom a keeps its LJ at its own position and
    the site has none (TIP4P's M site with a = O). Its position is a
    function of a, b, c, so autodiff distributes its force onto them.
    """

    n_atoms: int
    n_types: int
    atom_types: np.ndarray
    bonds: np.ndarray
    angles: np.ndarray
    urey_bradley: np.ndarray
    torsions: np.ndarray
    torsion_periodicity: np.ndarray
    impropers: np.ndarray
    cmap: np.ndarray
    cmap_map: np.ndarray
    exclusions: np.ndarray
    pairs14: np.ndarray
    nbfix: np.ndarray
    coulomb14_scale: float = 1.0
    lj14_scale: float = 1.0
    combination_rule: str = "lorentz-berthelot"
    quartic_morse_bonds: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int32))
    virtual_sites: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int32))


def _index_array(name, value, width, n_atoms):
    if value is None:
        return np.zeros((0, width), dtype=np.int32)
    a = np.asarray(value)
    if a.size == 0:
        return np.zeros((0, width), dtype=np.int32)
    if a.ndim != 2 or a.shape[1] != width:
        raise InputError(f"topology {name} must have shape (n, {width}), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(a == np.round(a)):
            raise InputError(f"topology {name} holds non-integer atom indices")
        a = a.astype(np.int64)
    if np.any(a < 0) or np.any(a >= n_atoms):
        bad = a[(a < 0) | (a >= n_atoms)][0]
        raise InputError(f"topology {name} refers to atom {int(bad)}, outside 0..{n_atoms - 1}")
    for row in a:
        if len(set(row.tolist())) != width:
            raise InputError(f"topology {name} entry {row.tolist()} repeats an atom")
    return a.astype(np.int32)


def make_topology(n_atoms: int, *, atom_types=None, n_types: Optional[int] = None, bonds=None,
                  angles=None, urey_bradley=None, torsions=None, torsion_periodicity=None,
                  impropers=None, cmap=None, cmap_map=None, exclusions=None, pairs14=None,
                  nbfix=None, coulomb14_scale: float = 1.0, lj14_scale: float = 1.0,
                  combination_rule: str = "lorentz-berthelot", quartic_morse_bonds=None,
                  virtual_sites=None) -> Topology:
    """A validated :class:`Topology` (atom indices 0-based; missing terms empty).

    ``atom_types`` defaults to type 0 for all atoms; ``n_types`` to
    max(atom_types) + 1. Bad indices,
    shapes, repeated atoms in a term, or a pair listed both as exclusion and
    as 1-4 pair raise InputError."""
    if not isinstance(n_atoms, (int, np.integer)) or n_atoms <= 0:
        raise InputError(f"topology needs a positive number of atoms, got {n_atoms!r}")
    n_atoms = int(n_atoms)
    types = np.zeros(n_atoms, np.int32) if atom_types is None else np.asarray(atom_types)
    if types.shape != (n_atoms,):
        raise InputError(f"atom_types must have shape ({n_atoms},), got {types.shape}")
    if np.any(types < 0):
        raise InputError("atom_types must be non-negative type indices")
    types = types.astype(np.int32)
    nt = int(types.max()) + 1 if n_types is None else int(n_types)
    if nt < int(types.max()) + 1:
        raise InputError(f"n_types = {nt} but atom_types uses type {int(types.max())}")
    if combination_rule not in COMBINATION_RULES:
        raise InputError(f"unknown combination rule {combination_rule!r} (use one of {', '.join(COMBINATION_RULES)})")
    tors = _index_array("torsions", torsions, 4, n_atoms)
    if len(tors):
        if torsion_periodicity is None:
            raise InputError("torsions need torsion_periodicity (one integer n per row)")
        per = np.asarray(torsion_periodicity)
        if per.shape != (len(tors),):
            raise InputError(f"torsion_periodicity must have shape ({len(tors)},), got {per.shape}")
        if np.any(per != np.round(per)) or np.any(per < 0):
            raise InputError("torsion_periodicity must be non-negative integers")
        per = per.astype(np.int32)
    else:
        per = np.zeros(0, np.int32)
    cm = _cmap_array(cmap, n_atoms)
    if len(cm):
        if cmap_map is None:
            raise InputError("cmap torsions need cmap_map (the map index of each row)")
        cmi = np.asarray(cmap_map)
        if cmi.shape != (len(cm),) or np.any(cmi < 0):
            raise InputError(f"cmap_map must be ({len(cm)},) non-negative map indices")
        cmi = cmi.astype(np.int32)
    else:
        cmi = np.zeros(0, np.int32)
    excl = _index_array("exclusions", exclusions, 2, n_atoms)
    vs = _index_array("virtual_sites", virtual_sites, 3, n_atoms)
    if len(np.unique(vs[:, 0])) != len(vs):
        raise InputError("virtual_sites: an atom is the charge centre of more than one site")
    p14 = _index_array("pairs14", pairs14, 2, n_atoms)
    seen = {}
    for name, arr in (("exclusions", excl), ("pairs14", p14)):
        for a, b in arr.tolist():
            key = (min(a, b), max(a, b))
            if key in seen:
                raise InputError(f"pair {key} is listed twice ({seen[key]} and {name})")
            seen[key] = name
    if nbfix is None:
        nb = np.zeros((nt, nt), bool)
    else:
        nb = np.asarray(nbfix, dtype=bool)
        if nb.shape != (nt, nt):
            raise InputError(f"nbfix mask must have shape ({nt}, {nt}), got {nb.shape}")
        if not np.array_equal(nb, nb.T):
            raise InputError("nbfix mask must be symmetric")
    for name, s in (("coulomb14_scale", coulomb14_scale), ("lj14_scale", lj14_scale)):
        if not isinstance(s, numbers.Real) or isinstance(s, bool) or not np.isfinite(s):
            raise InputError(f"{name} must be a finite number, got {s!r}")
    return Topology(
        n_atoms=n_atoms, n_types=nt, atom_types=types,
        bonds=_index_array("bonds", bonds, 2, n_atoms),
        angles=_index_array("angles", angles, 3, n_atoms),
        urey_bradley=_index_array("urey_bradley", urey_bradley, 2, n_atoms),
        torsions=tors, torsion_periodicity=per,
        impropers=_index_array("impropers", impropers, 4, n_atoms),
        cmap=cm, cmap_map=cmi, exclusions=excl, pairs14=p14, nbfix=nb,
        coulomb14_scale=float(coulomb14_scale), lj14_scale=float(lj14_scale),
        combination_rule=combination_rule,
        quartic_morse_bonds=_index_array("quartic_morse_bonds", quartic_morse_bonds, 2, n_atoms),
        virtual_sites=vs,
    )


def _cmap_array(cmap, n_atoms):
    # the two dihedrals of a CMAP term share atoms, so only each half must be distinct
    if cmap is None or np.asarray(cmap).size == 0:
        return np.zeros((0, 8), np.int32)
    a = np.asarray(cmap)
    if a.ndim != 2 or a.shape[1] != 8:
        raise InputError(f"topology cmap must have shape (n, 8), got {a.shape}")
    _index_array("cmap (first dihedral)", a[:, :4], 4, n_atoms)
    _index_array("cmap (second dihedral)", a[:, 4:], 4, n_atoms)
    return a.astype(np.int32)


def exclusions_from_bonds(n_atoms: int, bonds):
    """(exclusions, pairs14) from a bond graph: 1-2 and 1-3 pairs are
    excluded, 1-4 pairs (three bonds apart, not closer) are scaled; the
    usual AMBER/CHARMM/OPLS convention. Each pair once as (i < j)."""
    bonds = _index_array("bonds", bonds, 2, n_atoms)
    nbr = [set() for _ in range(n_atoms)]
    for a, b in bonds.tolist():
        nbr[a].add(b)
        nbr[b].add(a)
    excl, p14 = set(), set()
    for i in range(n_atoms):
        dist = {i: 0}
        frontier = [i]
        for d in (1, 2, 3):
            nxt = []
            for a in frontier:
                for b in nbr[a]:
                    if b not in dist:
                        dist[b] = d
                        nxt.append(b)
            frontier = nxt
        for j, d in dist.items():
            if j > i:
                (excl if d <= 2 else p14).add((i, j))
    as_arr = lambda s: np.asarray(sorted(s), dtype=np.int32).reshape(-1, 2)
    return as_arr(excl), as_arr(p14)


@struct.dataclass
class ForceFieldParams:
    """Float parameters of a classical force field (a pytree; metal units).

    Any field may be None when the topology has no such term (then it is
    skipped). Shapes: bond_* (B,), angle_* (A,), ub_* (U,), torsion_* (D,),
    improper_* (I,), cmap_grids: tuple of (G, G) grids (eV, layout of
    :func:`cmap_energy`), charges (N,) e, lj_sigma/lj_epsilon (T,) A/eV per
    type, nbfix_sigma/nbfix_epsilon (T, T) (used where Topology.nbfix),
    pair14_chargeprod (P,) e^2, pair14_sigma (P,) A, pair14_epsilon (P,) eV
    (explicit 1-4 exceptions; when None the 1-4 pairs use the combined
    parameters times Topology.coulomb14_scale / lj14_scale),
    qmorse_depth/qmorse_alpha/qmorse_r0 (Q,) eV, 1/A, A (quartic Morse
    bonds), vsite_weights (V, 3) (virtual sites; each row sums to 1).
    """

    bond_k: Optional[jnp.ndarray] = None          # eV/A^2
    bond_r0: Optional[jnp.ndarray] = None         # A
    angle_k: Optional[jnp.ndarray] = None         # eV/rad^2
    angle_theta0: Optional[jnp.ndarray] = None    # rad
    ub_k: Optional[jnp.ndarray] = None            # eV/A^2
    ub_r0: Optional[jnp.ndarray] = None           # A
    torsion_k: Optional[jnp.ndarray] = None       # eV
    torsion_phase: Optional[jnp.ndarray] = None   # rad
    improper_k: Optional[jnp.ndarray] = None      # eV/rad^2
    improper_phi0: Optional[jnp.ndarray] = None   # rad
    cmap_grids: Optional[tuple] = None            # eV
    charges: Optional[jnp.ndarray] = None         # e
    lj_sigma: Optional[jnp.ndarray] = None        # A
    lj_epsilon: Optional[jnp.ndarray] = None      # eV
    nbfix_sigma: Optional[jnp.ndarray] = None     # A
    nbfix_epsilon: Optional[jnp.ndarray] = None   # eV
    pair14_chargeprod: Optional[jnp.ndarray] = None  # e^2
    pair14_sigma: Optional[jnp.ndarray] = None    # A
    pair14_epsilon: Optional[jnp.ndarray] = None  # eV
    qmorse_depth: Optional[jnp.ndarray] = None    # eV
    qmorse_alpha: Optional[jnp.ndarray] = None    # 1/A
    qmorse_r0: Optional[jnp.ndarray] = None       # A
    vsite_weights: Optional[jnp.ndarray] = None   # (V, 3), dimensionless


_TERM_FIELDS = (
    ("bonds", ("bond_k", "bond_r0")),
    ("angles", ("angle_k", "angle_theta0")),
    ("urey_bradley", ("ub_k", "ub_r0")),
    ("torsions", ("torsion_k", "torsion_phase")),
    ("impropers", ("improper_k", "improper_phi0")),
    ("quartic_morse_bonds", ("qmorse_depth", "qmorse_alpha", "qmorse_r0")),
)


def _float_array(name, x, shape, dtype):
    a = np.asarray(x, dtype=np.float64) if not isinstance(x, jax.Array) else x
    if tuple(a.shape) != tuple(shape):
        raise InputError(f"parameter {name} must have shape {tuple(shape)}, got {tuple(a.shape)}")
    if isinstance(a, np.ndarray) and not np.all(np.isfinite(a)):
        raise InputError(f"parameter {name} has non-finite values")
    return jnp.asarray(a, dtype=dtype)


def make_params(topology: Topology, *, dtype=jnp.float64, **fields) -> ForceFieldParams:
    """Validated :class:`ForceFieldParams` for a topology (metal units).

    Every bonded term present in the topology needs its parameters; LJ
    needs both lj_sigma and lj_epsilon (per type); NBFIX tables are needed
    when the topology's nbfix mask has a True entry; the explicit 1-4
    arrays come all three together or not at all. Unknown field names,
    wrong shapes, negative sigma/epsilon or non-finite values raise
    InputError."""
    known = set(ForceFieldParams.__dataclass_fields__)
    unknown = set(fields) - known
    if unknown:
        raise InputError(f"unknown force-field parameter(s): {', '.join(sorted(unknown))}")
    out = {}
    for term, names in _TERM_FIELDS:
        n = len(getattr(topology, term))
        for name in names:
            v = fields.get(name)
            if v is None:
                if n:
                    raise InputError(f"topology has {n} {term} but parameter {name} is missing")
                continue
            out[name] = _float_array(name, v, (n,), dtype)
    if len(topology.cmap):
        grids = fields.get("cmap_grids")
        if grids is None:
            raise InputError("topology has cmap torsions but parameter cmap_grids is missing")
        grids = tuple(jnp.asarray(g, dtype=dtype) for g in grids)
        for m, g in enumerate(grids):
            if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] < 2:
                raise InputError(f"cmap_grids[{m}] must be a square (G, G) grid with G >= 2, got {g.shape}")
        if int(topology.cmap_map.max()) >= len(grids):
            raise InputError(f"cmap_map uses map {int(topology.cmap_map.max())} but only {len(grids)} grids are given")
        out["cmap_grids"] = grids
    if fields.get("charges") is not None:
        out["charges"] = _float_array("charges", fields["charges"], (topology.n_atoms,), dtype)
    has_sig, has_eps = fields.get("lj_sigma") is not None, fields.get("lj_epsilon") is not None
    if has_sig != has_eps:
        raise InputError("Lennard-Jones needs both lj_sigma and lj_epsilon (per atom type)")
    if has_sig:
        for name in ("lj_sigma", "lj_epsilon"):
            out[name] = _float_array(name, fields[name], (topology.n_types,), dtype)
            if np.any(np.asarray(out[name]) < 0):
                raise InputError(f"{name} must be non-negative")
    if topology.nbfix.any():
        for name in ("nbfix_sigma", "nbfix_epsilon"):
            v = fields.get(name)
            if v is None:
                raise InputError(f"topology has NBFIX type pairs but {name} is missing")
            a = _float_array(name, v, (topology.n_types, topology.n_types), dtype)
            an = np.asarray(a)
            if not np.allclose(an[topology.nbfix], an.T[topology.nbfix]):
                raise InputError(f"{name} must be symmetric on the NBFIX type pairs")
            if np.any(an[topology.nbfix] < 0):
                raise InputError(f"{name} must be non-negative")
            out[name] = a
        if not has_sig:
            raise InputError("NBFIX tables need per-type lj_sigma and lj_epsilon as well")
    if len(topology.virtual_sites):
        if fields.get("vsite_weights") is None:
            raise InputError(f"topology has {len(topology.virtual_sites)} virtual_sites but parameter vsite_weights is missing")
        out["vsite_weights"] = _float_array("vsite_weights", fields["vsite_weights"],
                                            (len(topology.virtual_sites), 3), dtype)
    p14 = [fields.get(k) is not None for k in ("pair14_chargeprod", "pair14_sigma", "pair14_epsilon")]
    if any(p14):
        if not all(p14):
            raise InputError("explicit 1-4 parameters need pair14_chargeprod, pair14_sigma and pair14_epsilon together")
        for name in ("pair14_chargeprod", "pair14_sigma", "pair14_epsilon"):
            out[name] = _float_array(name, fields[name], (len(topology.pairs14),), dtype)
    return ForceFieldParams(**out)
