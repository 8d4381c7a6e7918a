"""Bonded terms: geometry (bond lengths, angles, dihedrals; numerically
safe, minimum image for molecules split across the box), the energy of each
bonded term, and CMAP.

Units (metal): lengths A, energies eV, angles rad, force constants eV/A^2
(bonds, Urey-Bradley) and eV/rad^2 (angles, impropers), CMAP grids eV.

Energy expressions follow OpenMM's conventions, so that an importer only
converts units and fills arrays:

  harmonic bond / Urey-Bradley  E = 1/2 k (r - r0)^2            (HarmonicBondForce)
  quartic Morse bond            E = D [x^2 - x^3 + 7/12 x^4], x = a (r - r0)
                                (q-TIP4P/F O-H: Habershon, Markland, Manolopoulos,
                                JCP 131, 024501 (2009))
  harmonic angle                E = 1/2 k (theta - theta0)^2    (HarmonicAngleForce)
  periodic torsion              E = k (1 + cos(n phi - phi0))   (PeriodicTorsionForce)
  harmonic improper             E = 1/2 k dphi^2, dphi = phi - phi0 wrapped to (-pi, pi]
                                (CHARMM impropers as a CustomTorsionForce)
  CMAP                          bicubic interpolation of a periodic (phi, psi) grid
                                (CMAPTorsionForce; MacKerell et al., JACS 126, 698 (2004))

Dihedral angles use the IUPAC sign convention (trans = pi), as OpenMM.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..space import minimum_image
from ..system import InputError
from ..potentials.base import safe_norm


# ---------------------------------------------------------------------------
# geometry (numerically safe: finite gradients for collinear atoms)
# ---------------------------------------------------------------------------

def _safe_atan2(y, x):
    """atan2 with a zero (not NaN) gradient where x = y = 0 (degenerate
    geometry: coincident or collinear atoms)."""
    bad = (x * x + y * y) == 0
    return jnp.where(bad, 0.0, jnp.arctan2(jnp.where(bad, 0.0, y), jnp.where(bad, 1.0, x)))


def _vectors(positions, a, b, cell, periodic: bool, inv):
    """r_b - r_a (..., 3) A, at the minimum image (:func:`jaxpot.space.minimum_image`)
    when periodic, so that molecules may be split across the box."""
    dr = positions[b] - positions[a]
    return minimum_image(dr, cell, inv) if periodic else dr


def bond_lengths(positions, idx, cell=None, periodic: bool = False, inv=None):
    """|r_b - r_a| (A) for index pairs ``idx`` (B, 2)."""
    d = _vectors(positions, idx[:, 0], idx[:, 1], cell, periodic, inv)
    return safe_norm(d)


def angle_values(positions, idx, cell=None, periodic: bool = False, inv=None):
    """Angles a-b-c (rad, in [0, pi]) at vertex b for triples ``idx`` (A, 3).

    theta = atan2(|u x v|, u . v) is accurate near 0 and pi, unlike acos,
    and with a safe norm its gradient stays finite for collinear atoms."""
    u = _vectors(positions, idx[:, 1], idx[:, 0], cell, periodic, inv)
    v = _vectors(positions, idx[:, 1], idx[:, 2], cell, periodic, inv)
    return _safe_atan2(safe_norm(jnp.cross(u, v)), jnp.sum(u * v, axis=-1))


def dihedral_values(positions, idx, cell=None, periodic: bool = False, inv=None):
    """Dihedral angles a-b-c-d (rad, in (-pi, pi], IUPAC sign: trans = pi)
    for quadruples ``idx`` (D, 4).

    phi = atan2(|b2| b1 . (b2 x b3), (b1 x b2) . (b2 x b3)) with b1 = r_b - r_a,
    b2 = r_c - r_b, b3 = r_d - r_c (Blondel & Karplus, J. Comput. Chem. 17,
    1132 (1996)); no division, so collinear atoms give finite gradients."""
    b1 = _vectors(positions, idx[:, 0], idx[:, 1], cell, periodic, inv)
    b2 = _vectors(positions, idx[:, 1], idx[:, 2], cell, periodic, inv)
    b3 = _vectors(positions, idx[:, 2], idx[:, 3], cell, periodic, inv)
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


def quartic_morse_bond_energy(r, depth, alpha, r0):
    """E = D [x^2 - x^3 + (7/12) x^4], x = a (r - r0): the Morse potential
    D (1 - exp(-x))^2 expanded to fourth order (q-TIP4P/F). r, r0 A, D eV,
    a 1/A -> eV per bond."""
    x = alpha * (r - r0)
    return depth * (x ** 2 - x ** 3 + (7.0 / 12.0) * x ** 4)


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
