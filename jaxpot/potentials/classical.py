"""Classical force-field terms: bonded terms, Lennard-Jones, Coulomb,
exclusions and scaled 1-4 pairs.

Units (metal): positions and lengths A, energies eV, angles rad, force
constants eV/A^2 (bonds, Urey-Bradley) and eV/rad^2 (angles, impropers),
charges e, CMAP grids eV.

Energy expressions follow OpenMM's conventions, so that an importer only
converts units and fills arrays:

  harmonic bond / Urey-Bradley  E = 1/2 k (r - r0)^2            (HarmonicBondForce)
  harmonic angle                E = 1/2 k (theta - theta0)^2    (HarmonicAngleForce)
  periodic torsion              E = k (1 + cos(n phi - phi0))   (PeriodicTorsionForce)
  harmonic improper             E = 1/2 k dphi^2, dphi = phi - phi0 wrapped to (-pi, pi]
                                (CHARMM impropers as a CustomTorsionForce)
  CMAP                          bicubic interpolation of a periodic (phi, psi) grid
                                (CMAPTorsionForce; MacKerell et al., JACS 126, 698 (2004))
  Lennard-Jones                 E = 4 eps ((sigma/r)^12 - (sigma/r)^6)  (NonbondedForce)
  Coulomb                       through :mod:`jaxpot.potentials.electrostatics`

Dihedral angles use the IUPAC sign convention (trans = pi), as OpenMM.

Data layout: a static :class:`Topology` (integer index arrays, held in the
potential's closure) and a float :class:`ForceFieldParams` pytree (trainable
with optax, savable), joined by :func:`classical_potential`.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .. import units
from ..space import minimum_image, times3, volume
from ..system import InputError, System
from ..clusters import ClusterNeighborList
from .base import Potential, esum, pairs, safe_norm

COMBINATION_RULES = ("lorentz-berthelot", "geometric")
COULOMB_METHODS = ("direct", "cutoff", "ewald", "pme")


# ---------------------------------------------------------------------------
# geometry (numerically safe: finite gradients for collinear atoms)
# ---------------------------------------------------------------------------

def _safe_atan2(y, x):
    """atan2 with a zero (not NaN) gradient where x = y = 0 (degenerate
    geometry: coincident or collinear atoms)."""
    bad = (x * x + y * y) == 0
    return jnp.where(bad, 0.0, jnp.arctan2(jnp.where(bad, 0.0, y), jnp.where(bad, 1.0, x)))


def minimum_image_vectors(dr, cell, periodic: bool, inv=None):
    """Minimum-image displacements (..., 3) A by rounding fractional
    coordinates (cell rows are lattice vectors); unchanged when not periodic.
    ``inv``: inv(cell) if already at hand (one inverse per energy call).

    Bonded terms use it so that molecules may be split across the box."""
    return minimum_image(dr, cell, inv) if periodic else dr


def bond_lengths(positions, idx, cell=None, periodic: bool = False, inv=None):
    """|r_b - r_a| (A) for index pairs ``idx`` (B, 2)."""
    d = minimum_image_vectors(positions[idx[:, 1]] - positions[idx[:, 0]], cell, periodic, inv)
    return safe_norm(d)


def angle_values(positions, idx, cell=None, periodic: bool = False, inv=None):
    """Angles a-b-c (rad, in [0, pi]) at vertex b for triples ``idx`` (A, 3).

    theta = atan2(|u x v|, u . v) is accurate near 0 and pi, unlike acos,
    and with a safe norm its gradient stays finite for collinear atoms."""
    u = minimum_image_vectors(positions[idx[:, 0]] - positions[idx[:, 1]], cell, periodic, inv)
    v = minimum_image_vectors(positions[idx[:, 2]] - positions[idx[:, 1]], cell, periodic, inv)
    return _safe_atan2(safe_norm(jnp.cross(u, v)), jnp.sum(u * v, axis=-1))


def dihedral_values(positions, idx, cell=None, periodic: bool = False, inv=None):
    """Dihedral angles a-b-c-d (rad, in (-pi, pi], IUPAC sign: trans = pi)
    for quadruples ``idx`` (D, 4).

    phi = atan2(|b2| b1 . (b2 x b3), (b1 x b2) . (b2 x b3)) with b1 = r_b - r_a,
    b2 = r_c - r_b, b3 = r_d - r_c (Blondel & Karplus, J. Comput. Chem. 17,
    1132 (1996)); no division, so collinear atoms give finite gradients."""
    b1 = minimum_image_vectors(positions[idx[:, 1]] - positions[idx[:, 0]], cell, periodic, inv)
    b2 = minimum_image_vectors(positions[idx[:, 2]] - positions[idx[:, 1]], cell, periodic, inv)
    b3 = minimum_image_vectors(positions[idx[:, 3]] - positions[idx[:, 2]], cell, periodic, inv)
    n1 = jnp.cross(b1, b2)
    n2 = jnp.cross(b2, b3)
    x = jnp.sum(n1 * n2, axis=-1)
    y = safe_norm(b2) * jnp.sum(b1 * n2, axis=-1)
    return _safe_atan2(y, x)


def wrap_angle(x):
    """Angle difference wrapped to (-pi, pi] (rad)."""
    return jnp.pi - jnp.remainder(jnp.pi - x, 2.0 * jnp.pi)


# ---------------------------------------------------------------------------
# term energies (per term, eV)
# ---------------------------------------------------------------------------

def harmonic_bond_energy(r, k, r0):
    """E = 1/2 k (r - r0)^2; r, r0 in A, k in eV/A^2 -> eV per bond."""
    return 0.5 * k * (r - r0) ** 2


def harmonic_angle_energy(theta, k, theta0):
    """E = 1/2 k (theta - theta0)^2; angles rad, k eV/rad^2 -> eV per angle."""
    return 0.5 * k * (theta - theta0) ** 2


def periodic_torsion_energy(phi, k, n, phase):
    """E = k (1 + cos(n phi - phase)); phi, phase rad, k eV, n integer -> eV."""
    return k * (1.0 + jnp.cos(n * phi - phase))


def harmonic_improper_energy(phi, k, phi0):
    """E = 1/2 k dphi^2 with dphi = phi - phi0 wrapped to (-pi, pi] (the
    CHARMM improper); rad, k eV/rad^2 -> eV."""
    return 0.5 * k * wrap_angle(phi - phi0) ** 2


def lj_energy(r, sigma, epsilon):
    """E = 4 eps ((sigma/r)^12 - (sigma/r)^6); r, sigma A, eps eV -> eV."""
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * (s6 * s6 - s6)


def switch_function(r, r_switch, r_cut):
    """OpenMM's LJ switching function (A -> dimensionless):
    S = 1 - 10 x^3 + 15 x^4 - 6 x^5, x = (r - r_switch)/(r_cut - r_switch),
    S = 1 below r_switch and 0 above r_cut. S, S' and S'' are continuous,
    so energy and force go smoothly to zero at the cutoff."""
    x = jnp.clip((r - r_switch) / (r_cut - r_switch), 0.0, 1.0)
    return 1.0 + x ** 3 * (-10.0 + x * (15.0 - 6.0 * x))


def combine_lj(sigma_a, eps_a, sigma_b, eps_b, rule: str):
    """Combined (sigma A, epsilon eV) for a pair of LJ types.

    lorentz-berthelot: sigma = (sa + sb)/2, eps = sqrt(ea eb);
    geometric (OPLS):  sigma = sqrt(sa sb), eps = sqrt(ea eb)."""
    if rule == "lorentz-berthelot":
        sig = 0.5 * (sigma_a + sigma_b)
    elif rule == "geometric":
        sig = _safe_sqrt(sigma_a * sigma_b)
    else:
        raise InputError(f"unknown combination rule {rule!r} (use one of {', '.join(COMBINATION_RULES)})")
    return sig, _safe_sqrt(eps_a * eps_b)


def _safe_sqrt(x):
    """sqrt with a zero gradient at 0 (epsilon = 0 types, e.g. TIP3P H)."""
    ok = x > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, x, 1.0)), 0.0)


def nbfix_from_ab(acoef, bcoef):
    """(sigma A, epsilon eV) tables from A/B coefficient tables of
    E = A/r^12 - B/r^6 (A in eV A^12, B in eV A^6), as in CHARMM NBFIX or
    OpenMM's CustomNonbondedForce acoef/bcoef: sigma = (A/B)^(1/6),
    eps = B^2/(4A). A = B = 0 gives eps = 0 (sigma set to 1 A, irrelevant).
    A purely repulsive entry (B <= 0 < A) cannot be written as LJ and is
    refused."""
    a = np.asarray(acoef, dtype=np.float64)
    b = np.asarray(bcoef, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"NBFIX A and B tables differ in shape: {a.shape} vs {b.shape}")
    zero = (a == 0) & (b == 0)
    if np.any(~zero & ((a <= 0) | (b <= 0))):
        raise InputError("NBFIX A/B entries must both be positive (or both zero) to map to LJ sigma/epsilon")
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.where(zero, 1.0, (a / np.where(zero, 1.0, b)) ** (1.0 / 6.0))
        eps = np.where(zero, 0.0, b * b / (4.0 * np.where(zero, 1.0, a)))
    return sigma, eps


# ---------------------------------------------------------------------------
# CMAP: periodic bicubic spline, as OpenMM's CMAPTorsionForce
# ---------------------------------------------------------------------------

def _circulant_spline_inverse(g: int) -> np.ndarray:
    """Inverse of the (g, g) circulant matrix tridiag(1, 4, 1) of the
    periodic cubic spline (a constant: grids change, the matrix does not)."""
    eye = np.eye(g)
    return np.linalg.inv(4.0 * eye + np.roll(eye, 1, axis=1) + np.roll(eye, -1, axis=1))


def _periodic_spline_slopes(y, h, axis):
    """First derivatives at the knots of the periodic cubic spline through
    the values ``y`` on a uniform grid of spacing h along ``axis``.

    Second derivatives M solve the circulant system
    M_{i-1} + 4 M_i + M_{i+1} = 6 (y_{i+1} - 2 y_i + y_{i-1}) / h^2 and the
    slope is y'_i = (y_{i+1} - y_i)/h - h (2 M_i + M_{i+1})/6. The periodic
    interpolating spline is unique, so these are the derivatives OpenMM's
    SplineFitter::createPeriodicSpline gives."""
    y = jnp.moveaxis(y, axis, -1)
    g = y.shape[-1]
    inv = jnp.asarray(_circulant_spline_inverse(g), dtype=y.dtype)   # symmetric
    nxt = jnp.roll(y, -1, axis=-1)
    rhs = 6.0 * (nxt - 2.0 * y + jnp.roll(y, 1, axis=-1)) / h ** 2
    m = rhs @ inv
    slope = (nxt - y) / h - h * (2.0 * m + jnp.roll(m, -1, axis=-1)) / 6.0
    return jnp.moveaxis(slope, -1, axis)


def cmap_energy(phi, psi, grid):
    """CMAP correction (eV) at dihedrals phi, psi (rad) from a periodic grid
    ``grid`` (G, G) eV with grid[a, b] = E(phi = a 2pi/G, psi = b 2pi/G).

    As OpenMM: derivatives at the knots from periodic cubic splines
    (dE/dphi along phi, dE/dpsi along psi, d2E/dphi dpsi as the phi-spline
    slope of dE/dpsi), then in each patch the unique bicubic polynomial
    matching value, both slopes and the cross derivative at its four
    corners (Numerical Recipes, 3rd ed., sec. 3.6), written here in the
    equivalent tensor-product Hermite form."""
    g = grid.shape[0]
    h = 2.0 * jnp.pi / g
    d1 = _periodic_spline_slopes(grid, h, 0)
    d2 = _periodic_spline_slopes(grid, h, 1)
    d12 = _periodic_spline_slopes(d2, h, 0)
    x = jnp.remainder(phi, 2.0 * jnp.pi) / h
    y = jnp.remainder(psi, 2.0 * jnp.pi) / h
    s0 = jnp.floor(jax.lax.stop_gradient(x))
    t0 = jnp.floor(jax.lax.stop_gradient(y))
    u = x - s0
    v = y - t0
    s = jnp.remainder(s0.astype(jnp.int32), g)
    t = jnp.remainder(t0.astype(jnp.int32), g)
    s1 = jnp.remainder(s + 1, g)
    t1 = jnp.remainder(t + 1, g)

    def hermite(w):
        # value at 0, value at 1, slope at 0, slope at 1 (unit interval)
        w2, w3 = w * w, w * w * w
        return (2 * w3 - 3 * w2 + 1, -2 * w3 + 3 * w2, w3 - 2 * w2 + w, w3 - w2)

    hu0, hu1, gu0, gu1 = hermite(u)
    hv0, hv1, gv0, gv1 = hermite(v)
    e = 0.0
    for (ia, fu, du) in ((s, hu0, gu0), (s1, hu1, gu1)):
        for (ib, fv, dv) in ((t, hv0, gv0), (t1, hv1, gv1)):
            e = e + (grid[ia, ib] * fu * fv + h * d1[ia, ib] * du * fv
                     + h * d2[ia, ib] * fu * dv + h * h * d12[ia, ib] * du * dv)
    return e


def cmap_grid_from_openmm(size: int, energy) -> np.ndarray:
    """A (G, G) grid in our layout from OpenMM's flat CMAP list, whose
    element i + size*j is the energy at (phi, psi) = (i, j) 2pi/size
    (energies keep their units; convert kJ/mol with jaxpot.units.KJ_MOL)."""
    e = np.asarray(energy, dtype=np.float64)
    if e.shape != (size * size,):
        raise InputError(f"CMAP map of size {size} needs {size * size} energies, got {e.size}")
    return e.reshape(size, size).T.copy()


# ---------------------------------------------------------------------------
# topology (static) and parameters (pytree)
# ---------------------------------------------------------------------------

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
                  combination_rule: str = "lorentz-berthelot") -> Topology:
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
    parameters times Topology.coulomb14_scale / lj14_scale).
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


_TERM_FIELDS = (
    ("bonds", ("bond_k", "bond_r0")),
    ("angles", ("angle_k", "angle_theta0")),
    ("urey_bradley", ("ub_k", "ub_r0")),
    ("torsions", ("torsion_k", "torsion_phase")),
    ("impropers", ("improper_k", "improper_phi0")),
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
    p14 = [fields.get(k) is not None for k in ("pair14_chargeprod", "pair14_sigma", "pair14_epsilon")]
    if any(p14):
        if not all(p14):
            raise InputError("explicit 1-4 parameters need pair14_chargeprod, pair14_sigma and pair14_epsilon together")
        for name in ("pair14_chargeprod", "pair14_sigma", "pair14_epsilon"):
            out[name] = _float_array(name, fields[name], (len(topology.pairs14),), dtype)
    return ForceFieldParams(**out)


# ---------------------------------------------------------------------------
# long-range dispersion correction
# ---------------------------------------------------------------------------

_GL_X, _GL_W = np.polynomial.legendre.leggauss(48)


def _switch_tail_integral(sigma, r_switch, r_cut):
    """I(sigma) = int_{rs}^{rc} r^2 (1 - S(r)) ((sigma/r)^12 - (sigma/r)^6) dr
    (A^3) by 48-point Gauss-Legendre (the integrand is smooth, so this is
    exact to rounding); OpenMM's evalIntegral gives the same in closed form."""
    half = 0.5 * (r_cut - r_switch)
    r = r_switch + half * (1.0 + jnp.asarray(_GL_X, dtype=sigma.dtype))
    w = half * jnp.asarray(_GL_W, dtype=sigma.dtype)
    s6 = (sigma[..., None] / r) ** 6
    f = r * r * (1.0 - switch_function(r, r_switch, r_cut)) * (s6 * s6 - s6)
    return jnp.sum(w * f, axis=-1)


def dispersion_correction_energy(cell, counts, sigma_table, eps_table, r_cut, r_switch=None):
    """Long-range LJ correction (eV) for a homogeneous fluid, as OpenMM's
    NonbondedForce computes it (Shirts et al., J. Phys. Chem. B 111, 13052
    (2007); Allen & Tildesley eq. 2.144):

      E = 8 pi N^2 / V * < eps_ab [ sigma_ab^12/(9 rc^9) - sigma_ab^6/(3 rc^3)
                                   + I_ab ] >

    the tail 2 pi N^2/V int_rc^inf r^2 u(r) dr of u = 4 eps (...), plus with
    switching I_ab = int_rs^rc r^2 (1 - S)(sigma^12/r^12 - sigma^6/r^6) dr.
    < . > averages over all N(N+1)/2 atom pairs by type: weight
    n_a n_b for a != b and n_a (n_a + 1)/2 for a = b (OpenMM's counting).
    counts (T,) atoms per type, sigma_table/eps_table (T, T) A/eV, cell A.
    E ~ 1/V, so the correction contributes -E/V to each diagonal stress
    element (derived by autodiff through the cell)."""
    n = np.asarray(counts, dtype=np.float64)
    n_tot = n.sum()
    weight = 0.5 * (np.outer(n, n) + np.diag(n)) / (0.5 * n_tot * (n_tot + 1.0))
    weight = jnp.asarray(weight, dtype=sigma_table.dtype)
    s6 = sigma_table ** 6
    term = s6 * s6 / (9.0 * r_cut ** 9) - s6 / (3.0 * r_cut ** 3)
    if r_switch is not None:
        term = term + _switch_tail_integral(sigma_table, r_switch, r_cut)
    avg = jnp.sum(weight * eps_table * term)
    return 8.0 * jnp.pi * n_tot ** 2 * avg / volume(cell)


# ---------------------------------------------------------------------------
# the potential
# ---------------------------------------------------------------------------

# Exclusions of bonded neighbours almost always join atoms a few indices
# apart (a residue is tens of atoms), so each atom's excluded partners at
# index offsets 1..D are a bit mask of D bits: one gather per listed pair
# instead of a row of an (N, max_excl) table (which dominated the pair loop
# of a solvated protein: ~30 int32 per pair).
_EXCLUSION_BITS_MAX = 256


def exclusion_bitmask(n_atoms: int, excluded) -> tuple[np.ndarray, int] | None:
    """(masks (N, W) uint32, D) with bit (d - 1) of atom a's mask set when
    the pair (a, a + d) is excluded (d = 1..D, W = ceil(D / 32)); None when
    some excluded pair is more than ``_EXCLUSION_BITS_MAX`` indices apart
    (then :func:`exclusion_lookup` searches sorted keys) or there is no exclusion."""
    excluded = np.asarray(excluded, np.int64).reshape(-1, 2)
    if len(excluded) == 0:
        return None
    lo, hi = excluded.min(axis=1), excluded.max(axis=1)
    d = hi - lo
    if np.any(d <= 0):
        raise InputError("an exclusion pairs an atom with itself")
    dmax = int(d.max())
    if dmax > _EXCLUSION_BITS_MAX:
        return None
    words = -(-dmax // 32)
    masks = np.zeros((n_atoms, words), np.uint32)
    b = d - 1
    np.bitwise_or.at(masks, (lo, b // 32), (np.uint32(1) << (b % 32).astype(np.uint32)).astype(np.uint32))
    return masks, dmax


def excluded_pairs_lookup(bitmask, i, j):
    """True where (i, j) is excluded, for the masks of :func:`exclusion_bitmask`."""
    masks, dmax = bitmask
    lo, hi = jnp.minimum(i, j), jnp.maximum(i, j)
    d = hi - lo
    b = jnp.clip(d - 1, 0, dmax - 1)
    word = masks[lo, b // 32]
    bit = jnp.right_shift(word, (b % 32).astype(jnp.uint32)) & jnp.uint32(1)
    return (d >= 1) & (d <= dmax) & (bit == 1)


def exclusion_lookup(n_atoms: int, excluded):
    """A jit-able ``(i, j) -> bool``, True for the unordered pairs in
    ``excluded`` (E, 2) with indices < ``n_atoms``; any pair with index
    ``n_atoms`` (padding) is False.

    Bit masks over index offsets (:func:`exclusion_bitmask`) when all
    excluded pairs lie within 256 indices (bonded exclusions almost always
    do), else a binary search of sorted pair keys. Padding needs no test:
    no listed pair reaches index N, and the keys i (N + 1) + j cannot collide."""
    excluded = np.asarray(excluded, np.int64).reshape(-1, 2)
    if len(excluded) == 0:
        return lambda i, j: jnp.zeros(jnp.broadcast_shapes(jnp.shape(i), jnp.shape(j)), bool)
    bits = exclusion_bitmask(n_atoms, excluded)
    if bits is not None:
        # one zero row more, for the padding index
        table = (jnp.asarray(np.concatenate([bits[0], np.zeros((1, bits[0].shape[1]), np.uint32)])), bits[1])
        return lambda i, j: excluded_pairs_lookup(table, i, j)
    lo, hi = excluded.min(axis=1), excluded.max(axis=1)
    keys = jnp.asarray(np.unique(lo * (n_atoms + 1) + hi))

    def lookup_sorted(i, j):
        k = jnp.minimum(i, j).astype(jnp.int64) * (n_atoms + 1) + jnp.maximum(i, j)
        return keys[jnp.clip(jnp.searchsorted(keys, k), 0, keys.shape[0] - 1)] == k
    return lookup_sorted


def _lj_tables(topology: Topology, p: ForceFieldParams):
    """(T, T) sigma (A) and epsilon (eV) tables: combination rule, with the
    NBFIX entries replacing it where the topology's mask says so."""
    sig, eps = combine_lj(p.lj_sigma[:, None], p.lj_epsilon[:, None],
                          p.lj_sigma[None, :], p.lj_epsilon[None, :], topology.combination_rule)
    if topology.nbfix.any():
        mask = jnp.asarray(topology.nbfix)
        sig = jnp.where(mask, p.nbfix_sigma, sig)
        eps = jnp.where(mask, p.nbfix_epsilon, eps)
    return sig, eps


def _check_number(name, v, *, positive=False, allow_none=False):
    if v is None and allow_none:
        return None
    if not isinstance(v, numbers.Real) or isinstance(v, bool) or not np.isfinite(v):
        raise InputError(f"{name} must be a finite number, got {v!r}")
    if positive and v <= 0:
        raise InputError(f"{name} must be positive, got {v!r}")
    return float(v)


def classical_potential(topology: Topology, params: ForceFieldParams, *, cutoff: Optional[float] = None,
                        coulomb: Optional[str] = "ewald", lj_cutoff: Optional[float] = None,
                        switch_distance: Optional[float] = None, lj_shift: bool = False,
                        dispersion_correction: bool = False, cell=None, accuracy: float = 1e-5,
                        coulomb_options: Optional[dict] = None, name: str = "classical",
                        config: Optional[dict] = None) -> Potential:
    """A classical force field as a :class:`Potential` (energies eV, A).

    topology: static :class:`Topology`; params: :class:`ForceFieldParams`
    (returned by ``init`` and trainable).
    cutoff (A): real-space Coulomb cutoff and default LJ cutoff. With
        ``coulomb == "direct"``, or for a cluster (cell None) with neither
        cutoff nor lj_cutoff, every pair is summed and no neighbor list is
        used (LJ without cutoff unless lj_cutoff is given).
    coulomb: "direct" (all pairs, no cutoff, clusters), "cutoff", "ewald", "pme"
        (through :func:`jaxpot.potentials.electrostatics.make_coulomb`), or
        None for no electrostatics.
    lj_cutoff (A): LJ cutoff (default ``cutoff``; None with "direct" means
        no LJ cutoff). switch_distance (A): OpenMM switch between it and the
        LJ cutoff; lj_shift: subtract u(rc) instead (not both).
    dispersion_correction: add :func:`dispersion_correction_energy`
        (periodic only; it corrects the truncation, not the shift).
    cell (3, 3) A: the periodic cell (rows = lattice vectors) used to set
        up Ewald/PME and to decide that bonded terms use minimum images;
        None for non-periodic systems.
    accuracy, coulomb_options: passed to ``make_coulomb`` (e.g.
        ``{"cutoff_scheme": "reaction_field", "dielectric": 78.3}`` for
        OpenMM's CutoffPeriodic/CutoffNonPeriodic electrostatics).

    Nonbonded pairs come from ``context.neighbors`` (half list with image
    shifts); a listed pair is excluded only at its minimum image, so
    molecules split across the boundary are handled and interactions with
    farther images of excluded partners are kept. 1-4 pairs are computed
    without cutoff, switch or shift, with the minimum image, as OpenMM's
    exceptions."""
    if not isinstance(topology, Topology):
        raise InputError("classical_potential needs a Topology (see make_topology)")
    if not isinstance(params, ForceFieldParams):
        raise InputError("classical_potential needs ForceFieldParams (see make_params)")
    if coulomb is not None and coulomb not in COULOMB_METHODS:
        raise InputError(f"unknown coulomb method {coulomb!r} (use one of {', '.join(COULOMB_METHODS)} or None)")
    has_lj = params.lj_sigma is not None
    cutoff = _check_number("cutoff", cutoff, positive=True, allow_none=True)
    lj_cutoff = _check_number("lj_cutoff", lj_cutoff, positive=True, allow_none=True)
    # "direct" Coulomb, or a cluster with no cutoff at all, sums every pair
    # (no neighbor list); everything else reads the context's neighbor list
    all_pairs = coulomb == "direct" or (cell is None and cutoff is None and lj_cutoff is None)
    if lj_cutoff is None and not all_pairs:
        if cutoff is None and (has_lj or coulomb is not None):
            raise InputError("classical_potential needs a cutoff (A) for its nonbonded terms")
        lj_cutoff = cutoff
    switch_distance = _check_number("switch_distance", switch_distance, allow_none=True)
    if switch_distance is not None:
        if lj_cutoff is None:
            raise InputError("switch_distance needs an LJ cutoff")
        if not 0 <= switch_distance < lj_cutoff:
            raise InputError(f"switch_distance must satisfy 0 <= r_switch < lj_cutoff = {lj_cutoff}, got {switch_distance}")
        if lj_shift:
            raise InputError("use either lj_shift or switch_distance, not both")
    if lj_shift and lj_cutoff is None:
        raise InputError("lj_shift needs an LJ cutoff")
    periodic = cell is not None
    if periodic:
        cell_np = np.asarray(cell, dtype=np.float64)
        if cell_np.shape != (3, 3) or abs(np.linalg.det(cell_np)) < 1e-9:
            raise InputError("cell must be a non-degenerate (3, 3) matrix of lattice vectors (rows, A)")
        if all_pairs:
            raise InputError("coulomb='direct' sums all pairs without images: use it for clusters (cell=None)")
    if coulomb in ("ewald", "pme") and not periodic:
        raise InputError(f"coulomb={coulomb!r} needs a periodic cell")
    if dispersion_correction and not periodic:
        raise InputError("the dispersion correction needs a periodic cell")
    if dispersion_correction and lj_cutoff is None:
        raise InputError("the dispersion correction needs an LJ cutoff")
    if coulomb is not None and params.charges is None:
        raise InputError(f"coulomb={coulomb!r} needs charges in the parameters")
    if dispersion_correction and not has_lj:
        raise InputError("the dispersion correction needs LJ parameters")

    n = topology.n_atoms
    excl_all = np.concatenate([topology.exclusions, topology.pairs14]).astype(np.int32)
    excluded = exclusion_lookup(n, excl_all)
    types = jnp.asarray(topology.atom_types)
    type_counts = np.bincount(topology.atom_types, minlength=topology.n_types)
    per = jnp.asarray(topology.torsion_periodicity)
    cmap_groups = [(m, np.nonzero(topology.cmap_map == m)[0]) for m in np.unique(topology.cmap_map)]
    # every dihedral of every term in one batch (one small graph to compile):
    # rows [0, D) torsions, [D, D+I) impropers, then first and second CMAP dihedrals
    n_tor, n_imp, n_cm = len(topology.torsions), len(topology.impropers), len(topology.cmap)
    all_dihedrals = np.concatenate([topology.torsions, topology.impropers,
                                    topology.cmap[:, :4], topology.cmap[:, 4:]]).astype(np.int32)
    n_bond = len(topology.bonds)
    all_bonds = np.concatenate([topology.bonds, topology.urey_bradley]).astype(np.int32)
    if all_pairs:
        tri_i, tri_j = np.triu_indices(n, 1)
        excl_set = {(min(a, b), max(a, b)) for a, b in excl_all.tolist()}
        tri_keep = np.asarray([(a, b) not in excl_set for a, b in zip(tri_i, tri_j)], bool)
        tri_i, tri_j, tri_keep = (jnp.asarray(x) for x in (tri_i, tri_j, tri_keep))

    coul = None
    if coulomb is not None:
        from .electrostatics import make_coulomb
        coul = make_coulomb(coulomb, None if cell is None else np.asarray(cell, np.float64),
                            cutoff, accuracy=accuracy, **dict(coulomb_options or {}))

    # cluster-pair lists (jaxpot.clusters): the same nonbonded sum in dense C x C tiles
    cluster_ok = periodic and not all_pairs and (has_lj or coulomb is not None)
    nb_cut = max(c for c in (cutoff, lj_cutoff) if c is not None) if cluster_ok else 0.0
    use_nbfix = bool(topology.nbfix.any())

    def cluster_pair_fn(r2, fi, fj, shared):
        r = jnp.sqrt(r2)
        u = jnp.zeros(r2.shape, r2.dtype)
        k = 0
        if coul is not None:
            uc = units.KE * fi[0] * fj[0] * coul.pair_kernel(r)
            if cutoff is not None and cutoff < nb_cut:
                uc = jnp.where(r2 < cutoff * cutoff, uc, 0.0)
            u = u + uc
            k = 1
        if has_lj:
            if use_nbfix:
                sig_t, eps_t = shared
                ti, tj = fi[k].astype(jnp.int32), fj[k].astype(jnp.int32)
                sig, eps = sig_t[ti, tj], eps_t[ti, tj]
            elif topology.combination_rule == "lorentz-berthelot":
                sig, eps = fi[k] + fj[k], fi[k + 1] * fj[k + 1]      # sigma/2 and sqrt(eps) per atom
            else:
                sig, eps = fi[k] * fj[k], fi[k + 1] * fj[k + 1]      # sqrt(sigma) and sqrt(eps)
            ul = lj_energy(r, sig, eps)
            if switch_distance is not None:
                ul = ul * switch_function(r, switch_distance, lj_cutoff)
            elif lj_shift:
                ul = ul - lj_energy(jnp.asarray(lj_cutoff, r.dtype), sig, eps)
            if lj_cutoff < nb_cut:
                ul = jnp.where(r2 < lj_cutoff * lj_cutoff, ul, 0.0)
            u = u + ul
        return u

    if cluster_ok:
        from ..clusters import cluster_pair_sum
        cluster_sum = cluster_pair_sum(cluster_pair_fn, nb_cut)

    def cluster_nonbonded(p, positions, c, nbl):
        """Energy (eV) of the nonbonded pairs of a cluster-pair list."""
        from ..clusters import gather_slots
        dtype = positions.dtype
        nc, cs = nbl.n_clusters, nbl.cluster_size

        def per_slot(v, fill=0.0):
            return gather_slots(jnp.asarray(v, dtype), nbl.slots, nc, cs, fill)
        xc = per_slot(positions - times3(nbl.wrap.astype(dtype), c))
        feats, shared = [], ()
        if coul is not None:
            feats.append(per_slot(p.charges))
        if has_lj:
            if use_nbfix:
                feats.append(per_slot(types.astype(dtype)))
                shared = _lj_tables(topology, p)
            else:
                # per-atom factors of the combination rule, so a pair costs no sqrt
                sig_a = p.lj_sigma[types]
                sig_f = 0.5 * sig_a if topology.combination_rule == "lorentz-berthelot" else _safe_sqrt(sig_a)
                feats += [per_slot(sig_f, 1.0), per_slot(_safe_sqrt(p.lj_epsilon[types]))]
        return cluster_sum(xc, times3(nbl.shifts.astype(dtype), c), tuple(feats), shared,
                           nbl.pair_a, nbl.pair_b, nbl.pair_mask)

    def nonbonded_pairs(positions, context, inv):
        if all_pairs:
            dr = positions[tri_j] - positions[tri_i]
            return tri_i, tri_j, dr, tri_keep
        i, j, dr, mask = pairs(positions, context)
        listed = excluded(i, j)
        if periodic:
            f = times3(dr, inv)
            at_min_image = jnp.all(jnp.abs(f) < 0.5, axis=-1)
            listed = listed & at_min_image
        return i, j, dr, mask & ~listed

    def energy(params, positions, context):
        dtype = positions.dtype
        p = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
        c = context.cell.astype(dtype)
        inv = jnp.linalg.inv(c) if periodic else None
        e = jnp.zeros((), jnp.float64)
        top = topology
        if len(all_bonds):
            r = bond_lengths(positions, all_bonds, c, periodic, inv)
            if n_bond:
                e += esum(harmonic_bond_energy(r[:n_bond], p.bond_k, p.bond_r0))
            if len(top.urey_bradley):
                e += esum(harmonic_bond_energy(r[n_bond:], p.ub_k, p.ub_r0))
        if len(top.angles):
            e += esum(harmonic_angle_energy(angle_values(positions, top.angles, c, periodic, inv), p.angle_k, p.angle_theta0))
        if len(all_dihedrals):
            phi = dihedral_values(positions, all_dihedrals, c, periodic, inv)
            if n_tor:
                e += esum(periodic_torsion_energy(phi[:n_tor], p.torsion_k, per, p.torsion_phase))
            if n_imp:
                e += esum(harmonic_improper_energy(phi[n_tor:n_tor + n_imp], p.improper_k, p.improper_phi0))
            cm_phi = phi[n_tor + n_imp:n_tor + n_imp + n_cm]
            cm_psi = phi[n_tor + n_imp + n_cm:]
            for m, rows in cmap_groups:
                e += esum(cmap_energy(cm_phi[rows], cm_psi[rows], p.cmap_grids[int(m)]))

        if not has_lj and coul is None:
            return e
        if has_lj:
            sig_t, eps_t = _lj_tables(top, p)
        clustered = isinstance(context.neighbors, ClusterNeighborList)
        if clustered:
            if not cluster_ok:
                raise InputError(f"{name}: this potential cannot read a cluster-pair neighbor list")
            e += cluster_nonbonded(p, positions, c, context.neighbors)
            i = j = jnp.zeros(0, jnp.int32)
            dr, mask = jnp.zeros((0, 3), dtype), jnp.zeros(0, bool)
        else:
            i, j, dr, mask = nonbonded_pairs(positions, context, inv)
        r = safe_norm(dr)
        if has_lj and not clustered:
            ti, tj = types[i], types[j]
            sig, eps = sig_t[ti, tj], eps_t[ti, tj]
            lj_mask = mask if lj_cutoff is None else mask & (r < lj_cutoff)
            r_lj = jnp.where(lj_mask, r, 1.0e3)   # keep masked pairs finite
            u = lj_energy(r_lj, sig, eps)
            if switch_distance is not None:
                u = u * switch_function(r_lj, switch_distance, lj_cutoff)
            elif lj_shift:
                u = u - lj_energy(jnp.asarray(lj_cutoff, dtype), sig, eps)
            e += esum(jnp.where(lj_mask, u, 0.0))
        if has_lj:
            if dispersion_correction:
                e += dispersion_correction_energy(c, type_counts, sig_t, eps_t, lj_cutoff,
                                                  switch_distance).astype(jnp.float64)
        if coul is not None:
            q = p.charges
            kw = {}
            if len(excl_all):
                ei, ej = jnp.asarray(excl_all[:, 0]), jnp.asarray(excl_all[:, 1])
                edr = minimum_image_vectors(positions[ej] - positions[ei], c, periodic, inv)
                kw = dict(excl_i=ei, excl_j=ej, excl_dr=edr, excl_scale=jnp.zeros(len(excl_all), dtype))
            cmask = mask if (all_pairs or cutoff is None) else mask & (r < cutoff)
            e += jnp.asarray(coul.energy(positions, q, c, i, j, dr, cmask, **kw), jnp.float64)
        if len(top.pairs14):
            a, b = top.pairs14[:, 0], top.pairs14[:, 1]
            r14 = safe_norm(minimum_image_vectors(positions[b] - positions[a], c, periodic, inv))
            if p.pair14_chargeprod is not None:
                qq, s14, e14 = p.pair14_chargeprod, p.pair14_sigma, p.pair14_epsilon
            else:
                qq = None if p.charges is None else top.coulomb14_scale * p.charges[a] * p.charges[b]
                if has_lj:
                    s14 = sig_t[types[a], types[b]]
                    e14 = top.lj14_scale * eps_t[types[a], types[b]]
                else:
                    s14 = e14 = None
            if s14 is not None:
                e += esum(lj_energy(r14, s14, e14))
            if qq is not None and coul is not None:
                e += esum(units.KE * qq / r14)
        return e

    def init(key, system):
        if int(system.positions.shape[0]) != n:
            raise InputError(f"the force field is for {n} atoms but the system has {system.positions.shape[0]}")
        return params

    if all_pairs or not (has_lj or coulomb is not None):
        pot_cutoff = 0.0
    else:
        pot_cutoff = max(c for c in (cutoff, lj_cutoff) if c is not None)
    if config is None:
        config = {"kind": "classical", "coulomb": coulomb if coulomb is not None else "none",
                  "lj_shift": bool(lj_shift), "dispersion_correction": bool(dispersion_correction)}
        for k, v in (("cutoff", cutoff), ("lj_cutoff", lj_cutoff), ("switch_distance", switch_distance)):
            if v is not None:
                config[k] = v
    def charges_fn(params, positions, context):
        """Fixed force-field charges (N,) e."""
        return params.charges

    return Potential(energy=energy, init=init, cutoff=float(pot_cutoff), name=name, config=dict(config),
                     charges=charges_fn if coul is not None else None,
                     cluster_exclusions=excl_all.reshape(-1, 2) if cluster_ok else None)


# ---------------------------------------------------------------------------
# registry kinds: "lj" and "harmonic"
# ---------------------------------------------------------------------------

def _check_keys(kind, config, allowed):
    unknown = set(config) - set(allowed) - {"kind"}
    if unknown:
        raise InputError(f"unknown key(s) for potential kind {kind!r}: {', '.join(sorted(unknown))}")


def _lj_pair_params(where, table):
    if not isinstance(table, dict):
        raise InputError(f"{where} must be a table {{epsilon = ..., sigma = ...}}")
    _check_keys(where, table, ("epsilon", "sigma"))
    for k in ("epsilon", "sigma"):
        if k not in table:
            raise InputError(f"{where} is missing {k}")
    eps = _check_number(f"{where} epsilon", table["epsilon"])
    sig = _check_number(f"{where} sigma", table["sigma"], positive=True)
    if eps < 0:
        raise InputError(f"{where} epsilon must be non-negative, got {eps}")
    return sig, eps


def lj_from_config(config: dict, system: System) -> Potential:
    """Potential kind "lj" (metal units): Lennard-Jones over a neighbor list.

    Keys: either ``epsilon`` (eV) and ``sigma`` (A) for all atoms, or
    ``elements = {Ar = {epsilon, sigma}, ...}`` with ``combination_rule``
    ("lorentz-berthelot" default, or "geometric"), and/or an explicit
    ``pairs = {"Ar-Kr" = {epsilon, sigma}, ...}`` table (overrides the rule;
    alone it must cover every element pair of the system).
    ``cutoff`` A (default 2.5 x largest sigma), ``shift`` (false),
    ``switch_distance`` A (optional), ``dispersion_correction`` (false,
    periodic systems only)."""
    from ase.data import atomic_numbers, chemical_symbols

    config = dict(config)
    config.pop("kind", None)
    _check_keys("lj", config, ("epsilon", "sigma", "elements", "pairs", "combination_rule", "cutoff",
                                "shift", "switch_distance", "dispersion_correction"))
    z = np.asarray(system.species)
    present = sorted(set(int(x) for x in z))
    sym = [chemical_symbols[k] for k in present]
    rule = config.get("combination_rule", "lorentz-berthelot")
    if rule not in COMBINATION_RULES:
        raise InputError(f"unknown combination_rule {rule!r} (use one of {', '.join(COMBINATION_RULES)})")
    single = "epsilon" in config or "sigma" in config
    if single and ("elements" in config or "pairs" in config):
        raise InputError("lj: give either epsilon/sigma for all atoms or elements/pairs tables, not both")
    resolved = {"kind": "lj"}
    if single:
        sig, eps = _lj_pair_params("lj", {k: config[k] for k in ("epsilon", "sigma") if k in config})
        types = np.zeros(len(z), np.int32)
        lj_s, lj_e = np.array([sig]), np.array([eps])
        nbfix = None
        resolved.update(epsilon=eps, sigma=sig)
        sig_max = sig
    else:
        if "elements" not in config and "pairs" not in config:
            raise InputError("lj needs epsilon and sigma, or an elements table, or a pairs table")
        elements = config.get("elements", {})
        pair_tab = config.get("pairs", {})
        if not isinstance(elements, dict) or not isinstance(pair_tab, dict):
            raise InputError("lj elements and pairs must be tables")
        for el in elements:
            if el not in atomic_numbers:
                raise InputError(f"lj elements: unknown element {el!r}")
        types = np.asarray([present.index(int(x)) for x in z], np.int32)
        nt = len(present)
        lj_s, lj_e = np.ones(nt), np.zeros(nt)
        el_params = {}
        for el, tab in elements.items():
            el_params[el] = _lj_pair_params(f"lj elements.{el}", tab)
        pair_params = {}
        for key, tab in pair_tab.items():
            parts = str(key).split("-")
            if len(parts) != 2 or any(p not in atomic_numbers for p in parts):
                raise InputError(f"lj pairs key {key!r} must be 'A-B' with two element symbols")
            sp = _lj_pair_params(f"lj pairs.{key}", tab)
            pair_params[(parts[0], parts[1])] = sp
            pair_params[(parts[1], parts[0])] = sp
        nbfix = np.zeros((nt, nt), bool)
        nb_s, nb_e = np.ones((nt, nt)), np.zeros((nt, nt))
        missing = [s for s in sym if s not in el_params]
        for a, sa in enumerate(sym):
            if sa in el_params:
                lj_s[a], lj_e[a] = el_params[sa]
            for b, sb in enumerate(sym):
                if (sa, sb) in pair_params:
                    nbfix[a, b] = True
                    nb_s[a, b], nb_e[a, b] = pair_params[(sa, sb)]
                elif sa in missing or sb in missing:
                    if not pair_params:
                        raise InputError(f"lj has no parameters for element {sb if sb in missing else sa}: "
                                         "add it to elements")
                    raise InputError(f"lj has no parameters for the pair {sa}-{sb}: add it to pairs "
                                     "or give both elements in elements")
        sig_max = max([s for s, _ in el_params.values()] + [s for s, _ in pair_params.values()])
        resolved["combination_rule"] = rule
        if elements:
            resolved["elements"] = {el: {"epsilon": e_, "sigma": s_} for el, (s_, e_) in el_params.items()}
        if pair_tab:
            resolved["pairs"] = {str(k): {"epsilon": pair_params[tuple(str(k).split("-"))][1],
                                          "sigma": pair_params[tuple(str(k).split("-"))][0]}
                                 for k in pair_tab}
    cutoff = _check_number("lj cutoff", config.get("cutoff", 2.5 * sig_max), positive=True)
    shift = config.get("shift", False)
    disp = config.get("dispersion_correction", False)
    for k, v in (("shift", shift), ("dispersion_correction", disp)):
        if not isinstance(v, bool):
            raise InputError(f"lj {k} must be true or false, got {v!r}")
    sw = config.get("switch_distance")
    resolved.update(cutoff=cutoff, shift=shift, dispersion_correction=disp)
    if sw is not None:
        resolved["switch_distance"] = _check_number("lj switch_distance", sw)
    topo = make_topology(len(z), atom_types=types, n_types=len(lj_s), nbfix=nbfix, combination_rule=rule)
    kw = dict(lj_sigma=lj_s, lj_epsilon=lj_e)
    if nbfix is not None and nbfix.any():
        kw.update(nbfix_sigma=nb_s, nbfix_epsilon=nb_e)
    params = make_params(topo, dtype=system.positions.dtype, **kw)
    return classical_potential(topo, params, cutoff=cutoff, coulomb=None, lj_shift=shift,
                               switch_distance=resolved.get("switch_distance"),
                               dispersion_correction=disp,
                               cell=np.asarray(system.cell) if system.periodic else None,
                               name="lj", config=resolved)


def harmonic_from_config(config: dict, system: System) -> Potential:
    """Potential kind "harmonic": each atom tied to its starting position,
    E = 1/2 k sum_i |r_i - r_i(0)|^2 (k in eV/A^2, minimum image in
    periodic cells). An external field: ``translation_invariant=False``.
    Params: {"k": k} (trainable)."""
    config = dict(config)
    config.pop("kind", None)
    _check_keys("harmonic", config, ("k",))
    if "k" not in config:
        raise InputError("potential kind 'harmonic' needs k (eV/A^2)")
    k = _check_number("harmonic k", config["k"])
    if k < 0:
        raise InputError(f"harmonic k must be non-negative, got {k}")
    ref = np.asarray(system.positions, dtype=np.float64)
    periodic = system.periodic
    n = len(ref)

    def init(key, sys):
        if int(sys.positions.shape[0]) != n:
            raise InputError(f"the harmonic tether is for {n} atoms but the system has {sys.positions.shape[0]}")
        return {"k": jnp.asarray(k, dtype=sys.positions.dtype)}

    def energy(params, positions, context):
        d = positions - jnp.asarray(ref, positions.dtype)
        d = minimum_image_vectors(d, context.cell.astype(positions.dtype), periodic)
        return esum(0.5 * params["k"] * jnp.sum(d * d, axis=-1))

    return Potential(energy=energy, init=init, cutoff=0.0, name="harmonic",
                     translation_invariant=False, config={"kind": "harmonic", "k": k})
