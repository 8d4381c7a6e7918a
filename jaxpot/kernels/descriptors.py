"""Global descriptors of finite molecules and clusters (pure JAX, vmap-able,
static shapes; atoms with Z = 0 are padding and contribute exact zeros, which
sort to the end). Positions in A, atomic numbers Z.

- ``coulomb_eigen``: eigenvalues of the Coulomb matrix (Rupp, Tkatchenko,
  Mueller, von Lilienfeld, PRL 108, 058301 (2012)), sorted by descending
  |value|, padded with zeros to ``max_atoms``.
- ``coulomb_sorted``: the Coulomb matrix with rows and columns permuted by
  descending row norm (Montavon et al., NJP 15, 095003 (2013)), upper
  triangle (diagonal included) flattened. Not smooth where two row norms
  cross (e.g. the two H of a nearly symmetric water): avoid it for MD.
- ``bag_of_bonds``: (Hansen et al., JPCL 6, 2326 (2015)) one bag per element
  with 0.5 Z^2.4 and one bag per element pair with Z_i Z_j / r_ij, each
  sorted descending and padded with zeros to the bag sizes implied by
  ``max_counts`` (per-element maximum atom counts of the training set):
  n_a for element a, n_a (n_a - 1)/2 for a-a pairs, n_a n_b for a-b pairs.
- ``overlap``: eigenvalues of the overlap matrix of normalised Gaussian
  orbitals on every atom (Sadeghi, Ghasemi, Schaefer, Mohr, Lill, Goedecker,
  JCP 139, 184118 (2013)), sorted descending, padded to ``max_atoms`` x (1 or
  4). Orbital exponent a_i = 1 / (2 r_cov,i^2) (1/A^2), i.e. exp(-r^2 /
  (2 r_cov^2)): the Gaussian's standard deviation is the covalent radius
  (ase.data.covalent_radii, A). ``orbitals = "sp"`` adds p orbitals.

The local SOAP descriptor is in :mod:`jaxpot.kernels.soap`; the descriptor
of a kernel configuration (dispatch, batching) in
:mod:`jaxpot.kernels.featurize`.

Coulomb-matrix convention (Coulomb eigen/sorted and bag of bonds): atomic
units as in Rupp et al.: M_ii = 0.5 Z_i^2.4, M_ij = Z_i Z_j / r_ij with r_ij
in Bohr (r[A] / 0.529177210903), so M is in Hartree and literature kernel
widths carry over.

Normalised Gaussians and their overlaps, centre A (exponent a), centre B
(exponent b), R = B - A, p = a + b, mu = a b / p (derived by completing the
square; the integrals factorise into 1D Gaussian moments):
  s(r)   = (2a/pi)^(3/4) exp(-a |r-A|^2)
  p_k(r) = (2a/pi)^(3/4) 2 sqrt(a) (r-A)_k exp(-a |r-A|^2)
  <s_A|s_B>     = S = (2 sqrt(ab)/p)^(3/2) exp(-mu R^2)
  <s_A|p_B,k>   = -2 a sqrt(b) R_k / p * S
  <p_A,k|s_B>   = +2 b sqrt(a) R_k / p * S
  <p_A,k|p_B,l> = 4 sqrt(ab) [delta_kl / (2p) - a b R_k R_l / p^2] * S

Eigenvalue derivatives: ``jnp.linalg.eigh``'s JVP divides by eigenvalue
gaps and yields inf/NaN at degenerate eigenvalues (symmetric molecules).
:func:`eigvalsh` has a custom JVP that uses only the diagonal of V^T dA V
(Hellmann-Feynman, exact for non-degenerate eigenvalues) and averages it
over (numerically) degenerate groups: basis independent, exact for any
symmetric function of a degenerate group, and equal to the central finite
difference of the sorted eigenvalues of a doubly degenerate pair.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

BOHR = 0.529177210903
"""1 Bohr in Angstrom (CODATA 2018)."""


# ---------------------------------------------------------------- eigenvalues

@jax.custom_jvp
def eigvalsh(a):
    """Eigenvalues (ascending) of a symmetric matrix, with a JVP that stays
    finite at degenerate eigenvalues (see the module docstring)."""
    return jnp.linalg.eigh(a)[0]


@eigvalsh.defjvp
def _eigvalsh_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    w, v = jnp.linalg.eigh(a)
    da = 0.5 * (da + jnp.swapaxes(da, -1, -2))
    d = jnp.einsum("...ij,...ik,...kj->...j", v, da, v)        # diag(V^T dA V)
    tol = 1e-9 * jnp.maximum(jnp.max(jnp.abs(w), axis=-1, keepdims=True), 1.0)
    same = (jnp.abs(w[..., :, None] - w[..., None, :]) <= tol[..., None]).astype(w.dtype)
    d = jnp.einsum("...ij,...j->...i", same, d) / jnp.sum(same, axis=-1)
    return w, d


# ---------------------------------------------------------------- descriptors

def _pad(positions, species, max_atoms: int):
    """Positions and species brought to exactly ``max_atoms`` rows: zero
    padding appended, or, for longer (padded) inputs, the real atoms moved
    to the front (stable order) and the rest cut. Real atoms beyond
    ``max_atoms`` are cut too: the factories refuse such systems up front."""
    n = positions.shape[0]
    if n > max_atoms:
        order = jnp.argsort(species <= 0, stable=True)[:max_atoms]
        return positions[order], species[order]
    if n < max_atoms:
        positions = jnp.concatenate([positions, jnp.zeros((max_atoms - n, 3), positions.dtype)])
        species = jnp.concatenate([species, jnp.zeros((max_atoms - n,), species.dtype)])
    return positions, species


def coulomb_matrix(positions, species, max_atoms: int):
    """(max_atoms, max_atoms) Coulomb matrix in Hartree: M_ii = 0.5 Z^2.4,
    M_ij = Z_i Z_j / r_ij with r_ij in Bohr; positions (N, 3) A, species
    (N,) atomic numbers (0 = padding: zero row and column)."""
    pos, z = _pad(positions, species, max_atoms)
    zf = z.astype(pos.dtype)
    real = z > 0
    off = real[:, None] & real[None, :] & ~jnp.eye(max_atoms, dtype=bool)
    dr = pos[:, None, :] - pos[None, :, :]
    r2 = jnp.sum(dr * dr, axis=-1)
    r = jnp.sqrt(jnp.where(off, r2, 1.0)) / BOHR
    m = jnp.where(off, zf[:, None] * zf[None, :] / r, 0.0)
    return m + jnp.diag(jnp.where(real, 0.5 * zf ** 2.4, 0.0))


def coulomb_eigen(positions, species, max_atoms: int):
    """(max_atoms,) Coulomb-matrix eigenvalues (Hartree), descending |value|."""
    w = eigvalsh(coulomb_matrix(positions, species, max_atoms))
    order = jnp.argsort(-jax.lax.stop_gradient(jnp.abs(w)), stable=True)
    return w[order]


def coulomb_sorted(positions, species, max_atoms: int):
    """(max_atoms (max_atoms+1)/2,) row-norm-sorted Coulomb matrix (Hartree),
    upper triangle with diagonal, row by row."""
    m = coulomb_matrix(positions, species, max_atoms)
    norms = jnp.sum(jax.lax.stop_gradient(m) ** 2, axis=1)
    order = jnp.argsort(-norms, stable=True)
    p = m[order][:, order]
    iu = np.triu_indices(max_atoms)
    return p[iu]


def bag_sizes(species_z, max_counts):
    """[(za, zb, size)] for the bags of bag of bonds, in a fixed order:
    element bags (za == zb, size n_a, diagonal entries) are marked with
    zb = -za; then pair bags for za <= zb by atomic number."""
    zs = sorted(int(z) for z in species_z)
    bags = [(z, -z, int(max_counts[z])) for z in zs]
    for i, za in enumerate(zs):
        for zb in zs[i:]:
            na, nb = int(max_counts[za]), int(max_counts[zb])
            size = na * (na - 1) // 2 if za == zb else na * nb
            if size > 0:
                bags.append((za, zb, size))
    return bags


def bag_of_bonds(positions, species, max_atoms: int, bags):
    """Bag-of-bonds vector (Hartree; ``bags`` from :func:`bag_sizes`): each
    bag sorted descending and zero-padded; elements outside the bags are
    ignored, and a bag with more entries than its size keeps the largest."""
    m = coulomb_matrix(positions, species, max_atoms)
    _, z = _pad(positions, species, max_atoms)
    upper = jnp.asarray(np.triu(np.ones((max_atoms, max_atoms), bool), k=1))
    out = []
    for za, zb, size in bags:
        if zb < 0:
            vals = jnp.where(z == za, jnp.diagonal(m), 0.0)
        else:
            pair = ((z[:, None] == za) & (z[None, :] == zb)) | ((z[:, None] == zb) & (z[None, :] == za))
            vals = jnp.where(pair & upper, m, 0.0).reshape(-1)
        if size > vals.shape[0]:
            vals = jnp.concatenate([vals, jnp.zeros(size - vals.shape[0], vals.dtype)])
        out.append(jax.lax.top_k(vals, size)[0])
    return jnp.concatenate(out)


_RCOV = None


def _covalent_radii():
    global _RCOV
    if _RCOV is None:
        from ase.data import covalent_radii
        r = np.asarray(covalent_radii, dtype=np.float64).copy()
        r[0] = 1.0   # padding atoms: any positive radius (their rows are zeroed)
        _RCOV = r
    return _RCOV


def overlap_matrix(positions, species, max_atoms: int, orbitals: str = "s"):
    """Overlap matrix of normalised Gaussian orbitals (dimensionless),
    (max_atoms, max_atoms) for ``"s"``, (4 max_atoms, 4 max_atoms) for
    ``"sp"`` with orbitals ordered (s, px, py, pz) per atom; exponents
    a = 1/(2 r_cov^2) (1/A^2), positions in A. Padding atoms give zero rows."""
    pos, z = _pad(positions, species, max_atoms)
    real = z > 0
    pair = real[:, None] & real[None, :]
    a = 1.0 / (2.0 * jnp.asarray(_covalent_radii(), pos.dtype)[z] ** 2)
    ai, aj = a[:, None], a[None, :]
    p = ai + aj
    rvec = pos[None, :, :] - pos[:, None, :]                 # R_ij = r_j - r_i
    r2 = jnp.sum(rvec * rvec, axis=-1)
    sss = jnp.where(pair, (2.0 * jnp.sqrt(ai * aj) / p) ** 1.5 * jnp.exp(-ai * aj / p * r2), 0.0)
    if orbitals == "s":
        return sss
    sp = (-2.0 * ai * jnp.sqrt(aj) / p * sss)[..., None] * rvec          # <s_i|p_j,k>
    ps = (2.0 * aj * jnp.sqrt(ai) / p * sss)[..., None] * rvec           # <p_i,k|s_j>
    eye3 = jnp.eye(3, dtype=pos.dtype)
    pp = (4.0 * jnp.sqrt(ai * aj) * sss)[..., None, None] * (
        eye3 / (2.0 * p[..., None, None])
        - (ai * aj / p ** 2)[..., None, None] * rvec[..., :, None] * rvec[..., None, :])
    top = jnp.concatenate([sss[..., None], sp], axis=-1)                  # (N, N, 4): (s_i | s/p_j)
    bottom = jnp.concatenate([ps[..., None], pp], axis=-1)                # (N, N, 3, 4)
    t = jnp.concatenate([top[:, :, None, :], bottom], axis=2)             # (N, N, 4 (i), 4 (j))
    n = max_atoms
    return jnp.transpose(t, (0, 2, 1, 3)).reshape(4 * n, 4 * n)


def overlap_eigen(positions, species, max_atoms: int, orbitals: str = "s"):
    """Overlap-matrix eigenvalues (dimensionless), descending, zero-padded."""
    return eigvalsh(overlap_matrix(positions, species, max_atoms, orbitals))[::-1]
