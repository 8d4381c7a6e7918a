"""Kernel methods on global descriptors: ``kind = "kernel"``.

A kernel model predicts the energy of a finite molecule or cluster (eV) as

    E(r) = E_offset(Z) + sum_k alpha_k  s^2 k(x(r), x_k),    x = (d(r) - mean) / scale

where d is a global descriptor of the positions r (A) and atomic numbers Z,
x_k are the (standardised) descriptors of the training structures, alpha_k
the regression weights (eV / s^2), s^2 the signal variance and k a kernel.
Forces are -dE/dr by autodiff through the kernel and the descriptor (no
hand-written derivatives), so the model runs MD like any other potential.

Descriptors (pure JAX, vmap-able, static shapes; atoms with Z = 0 are
padding and contribute exact zeros, which sort to the end):
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
- ``soap`` (local, not global): per-atom SOAP-like power spectra (see
  :func:`soap_power_spectrum`; ``cutoff`` A, ``n_max``, ``l_max``) with a
  GAP-style sparse GPR: E = offset + sum_i sum_m alpha_m delta(Z_i, Z_m)
  (p_i . p_m)^zeta over ``n_sparse`` representative environments
  (``kernel = "polynomial"``). Transferable across cluster sizes.

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

Kernels (``sigma`` in the units of the standardised descriptor; each
feature is shifted and scaled to zero mean and unit variance over the
training set when ``standardize = true``):
  gaussian  k = exp(-|x-y|_2^2 / (2 sigma^2))   (sklearn rbf, gamma = 1/(2 sigma^2))
  laplacian k = exp(-|x-y|_1 / sigma)            (sklearn laplacian, gamma = 1/sigma);
            not differentiable at x = y, so forces jump: not for MD
  linear    k = x . y                            (ridge regression in dual form)

Regression (float64, Cholesky): alpha = (s^2 K + lambda I)^-1 (E - E_offset)
with lambda = ``regularization`` (eV^2 when read as the GP noise variance;
with s^2 = 1 it is sklearn KernelRidge's ``alpha``). With ``gpr = true`` the
same solve is the Gaussian-process posterior mean; the Cholesky factor is
kept in the params for predictive variances, and
``optimize_hyperparameters`` maximises the log marginal likelihood over
(log sigma, log s^2, log lambda) with optax Adam.

``gradient_domain = true`` fits forces instead of energies (GDML-style, see
:func:`fit_kernel`): small molecules only, (n_train 3N)^2 memory.

Precision: the kernel sum cancels large terms (|alpha_k| up to ~1e4-1e5 eV
at small ``regularization``), so run kernel models in float64 (jaxpot's
default), not with ``[md] dtype = "float32"``.

Energy offset (``offset``): ``"per_element"`` (default) fits element
energies e_Z by least squares to the training energies (minimum-norm
solution, so a training set of one composition gets its mean energy spread
over the elements); ``"mean"`` uses one constant (the mean training energy).
The kernel part fits what is left.

Periodic cells are refused (InputError): these global descriptors are
defined for finite molecules and clusters only.
"""
from __future__ import annotations

import math
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from ..system import InputError, check_choice, positive_number, species_from_symbols
from .base import Potential, check_species, species_index_table

BOHR = 0.529177210903
"""1 Bohr in Angstrom (CODATA 2018)."""

DESCRIPTORS = ("coulomb_eigen", "coulomb_sorted", "bag_of_bonds", "overlap", "soap")
KERNELS = ("gaussian", "laplacian", "linear", "polynomial")
OFFSETS = ("per_element", "mean")

# keys of the potential configuration, with defaults (None: required or set by fit_kernel)
DEFAULTS = {
    "descriptor": "coulomb_eigen",
    "kernel": "gaussian",
    "sigma": None,              # kernel length scale (standardised descriptor units)
    "regularization": 1e-8,     # lambda: KRR ridge / GP noise variance (eV^2)
    "signal_variance": 1.0,     # s^2 (eV^2)
    "species": None,            # element symbols, e.g. ["H", "O"]
    "max_atoms": None,          # descriptor padding size
    "max_counts": None,         # bag_of_bonds: {element: max count}
    "orbitals": "s",            # overlap: "s" | "sp"
    "standardize": True,        # scale descriptor features to zero mean, unit variance
    "offset": "per_element",    # "per_element" | "mean"
    "gpr": False,               # keep the Cholesky factor for predictive variances
    "gradient_domain": False,   # fit forces with the Hessian kernel (sGDML-style), see fit_kernel
    # soap (local, GAP-style sparse GPR); ignored by the global descriptors
    "cutoff": 4.0,              # A
    "n_max": 6,                 # radial Gaussians
    "l_max": 4,                 # Legendre order
    "zeta": 2,                  # kernel (p_i . p_m)^zeta on normalised power spectra
    "n_sparse": None,           # sparse (representative) atomic environments, set by fit_kernel
    "n_train": None,            # number of training structures (shapes of params)
}
# keys only fit_kernel understands (they shape the fit, not the potential)
FIT_DEFAULTS = {
    "optimize_hyperparameters": False,
    "hyperparameter_steps": 200,
    "hyperparameter_learning_rate": 0.05,
    "baseline": None,           # a [potential] table: fit E_ref - E_baseline (Delta-learning)
}


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


# ---------------------------------------------------------------- kernels and regression

@partial(jax.jit, static_argnames=("kernel", "batch_size"))
def _distance_matrix(x, y, kernel: str, batch_size: int = 64):
    """Squared Euclidean (gaussian) or L1 (laplacian) distances, (n, m)."""
    x, y = jnp.asarray(x), jnp.asarray(y)

    def row(xi):
        d = y - xi
        return jnp.sum(d * d, axis=-1) if kernel == "gaussian" else jnp.sum(jnp.abs(d), axis=-1)

    return jax.lax.map(row, x, batch_size=batch_size)


def _kernel_from_distance(d, kernel: str, sigma):
    if kernel == "gaussian":
        return jnp.exp(-d / (2.0 * sigma ** 2))
    return jnp.exp(-d / sigma)


def kernel_matrix(x, y, kernel: str, sigma: float = 1.0, signal_variance: float = 1.0):
    """s^2 k(x_i, y_j), (n, m), for descriptor rows x (n, D) and y (m, D)."""
    if kernel == "linear":
        return signal_variance * jnp.asarray(x) @ jnp.asarray(y).T
    return signal_variance * _kernel_from_distance(_distance_matrix(x, y, kernel), kernel, sigma)


def _cholesky(k, regularization):
    n = k.shape[0]
    chol = jnp.linalg.cholesky(k + regularization * jnp.eye(n, dtype=k.dtype))
    if not bool(jnp.all(jnp.isfinite(chol))):
        raise InputError("kernel matrix is not positive definite: increase 'regularization'")
    return chol


def _cho_solve(chol, y):
    return jax.scipy.linalg.cho_solve((chol, True), y)


def krr_fit(k, y, regularization: float):
    """Kernel ridge regression weights alpha = (K + lambda I)^-1 y (Cholesky).

    Units: y in eV, lambda in the units of K (eV^2 for a GP kernel)."""
    return _cho_solve(_cholesky(jnp.asarray(k), regularization), jnp.asarray(y))


def ridge_fit(x, y, regularization: float):
    """Linear ridge regression without intercept, closed form (primal):
    w = (X^T X + lambda I)^-1 X^T y; predictions x . w (units of y)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    return _cho_solve(_cholesky(x.T @ x, regularization), x.T @ y)


def gp_predict(k_train, y, k_cross, k_diag, noise: float):
    """Gaussian-process posterior of the latent function at test points.

    k_train (n, n), k_cross (m, n) = k(test, train), k_diag (m,) = k(test,
    test) (eV^2), y (n,) eV, noise variance (eV^2). Returns (mean (m,) eV,
    variance (m,) eV^2)."""
    chol = _cholesky(jnp.asarray(k_train), noise)
    mean = jnp.asarray(k_cross) @ _cho_solve(chol, jnp.asarray(y))
    v = jax.scipy.linalg.solve_triangular(chol, jnp.asarray(k_cross).T, lower=True)
    return mean, jnp.maximum(jnp.asarray(k_diag) - jnp.sum(v * v, axis=0), 0.0)


def gp_log_marginal_likelihood(log_hypers, dist, y, kernel: str, gram=None):
    """log p(y | X, theta) = -y^T alpha / 2 - sum log L_ii - n log(2 pi) / 2.

    log_hypers = (log sigma, log s^2, log lambda); ``dist`` the (n, n)
    distance matrix of :func:`_distance_matrix` (or, for the linear kernel,
    ``gram`` = X X^T and ``dist`` unused). y in eV."""
    log_sigma, log_s2, log_noise = log_hypers[0], log_hypers[1], log_hypers[2]
    base = gram if kernel == "linear" else _kernel_from_distance(dist, kernel, jnp.exp(log_sigma))
    n = y.shape[0]
    chol = jnp.linalg.cholesky(jnp.exp(log_s2) * base + jnp.exp(log_noise) * jnp.eye(n, dtype=y.dtype))
    alpha = _cho_solve(chol, y)
    return (-0.5 * y @ alpha - jnp.sum(jnp.log(jnp.diagonal(chol)))
            - 0.5 * n * jnp.log(2.0 * jnp.pi))


def _adam():
    import optax
    return optax.scale_by_adam()


_ADAM = _adam()


@partial(jax.jit, static_argnames=("kernel",))
def _lml_adam_step(h, state, dist, gram, y, kernel, learning_rate):
    """One Adam step on -log p(y)/n in (log sigma, log s^2, log lambda)."""
    neg = lambda hh: -gp_log_marginal_likelihood(hh, dist, y, kernel, gram) / y.shape[0]
    loss, g = jax.value_and_grad(neg)(h)
    # the linear kernel has no length scale: freeze it
    freeze = jnp.asarray([0.0 if kernel == "linear" else 1.0, 1.0, 1.0], dtype=h.dtype)
    g = jnp.where(jnp.isfinite(g), g, 0.0) * freeze
    upd, state = _ADAM.update(g, state, h)
    return h - learning_rate * upd, state, loss


def optimize_gp_hyperparameters(x, y, kernel: str, sigma: float, signal_variance: float,
                                noise: float, steps: int = 200, learning_rate: float = 0.05):
    """Maximise the GP log marginal likelihood over (log sigma, log s^2,
    log noise) with optax Adam, from the given start (descriptor units,
    eV^2, eV^2). Returns ((sigma, signal_variance, noise), history of the
    log-likelihood); the best point seen is returned."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    dist = None if kernel == "linear" else _distance_matrix(x, x, kernel)
    gram = x @ x.T if kernel == "linear" else None
    h = jnp.log(jnp.asarray([sigma, signal_variance, noise], dtype=y.dtype))
    state = _ADAM.init(h)
    neg = lambda hh: -gp_log_marginal_likelihood(hh, dist, y, kernel, gram) / y.shape[0]

    def step(h, state):
        return _lml_adam_step(h, state, dist, gram, y, kernel, learning_rate)

    best, best_loss, history = h, np.inf, []
    for _ in range(int(steps)):
        h_new, state, loss = step(h, state)
        loss = float(loss)
        if np.isfinite(loss):
            history.append(-loss * y.shape[0])
            if loss < best_loss:
                best, best_loss = h, loss
        h = h_new
    final = float(neg(h))
    if np.isfinite(final):
        history.append(-final * y.shape[0])
        if final < best_loss:
            best = h
    vals = np.exp(np.asarray(best))
    return (float(vals[0]), float(vals[1]), float(vals[2])), np.asarray(history)


def median_distance(x, kernel: str, max_samples: int = 1000, seed: int = 0) -> float:
    """Median pairwise distance (L2 for gaussian, L1 for laplacian) of up to
    ``max_samples`` descriptor rows: the default kernel length scale."""
    x = np.asarray(x)
    if len(x) > max_samples:
        x = x[np.random.default_rng(seed).choice(len(x), max_samples, replace=False)]
    d = np.asarray(_distance_matrix(x, x, "laplacian" if kernel == "laplacian" else "gaussian"))
    d = d[np.triu_indices(len(x), k=1)]
    d = np.sqrt(d) if kernel != "laplacian" else d
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 1.0



# ---------------------------------------------------------------- SOAP (local) + GAP-style sparse GPR

def soap_power_spectrum(positions, species, max_atoms: int, species_z, cutoff: float,
                        n_max: int, l_max: int):
    """(max_atoms, P) SOAP-like power spectra of every atom's neighbourhood,
    each row normalised to unit length (zero rows for padding atoms).

    Neighbour density of element Z around atom i: delta functions at the
    neighbours j != i within ``cutoff`` (A), weighted by f_c(r) = (cos(pi r /
    r_c) + 1)/2, expanded in radial Gaussians g_n(r) = exp(-(r - r_n)^2 /
    (2 w^2)), r_n = n r_c/(n_max - 1), w = r_c/n_max, and real spherical
    harmonics. The rotational invariant p^{Z Z'}_{n n' l} = sum_m c^Z_{nlm}
    c^Z'_{n'lm} follows from the addition theorem without any Y_lm:
      p^{Z Z'}_{n n' l}(i) = (2l+1)/(4 pi) sum_{j in Z, k in Z'} g_n(r_ij) f_c(r_ij)
                             g_n'(r_ik) f_c(r_ik) P_l(cos theta_jik)
    (Bartok, Kondor, Csanyi, PRB 87, 184115 (2013), with delta rather than
    Gaussian-smeared atomic densities). Output P = n_Z^2 n_max^2 (l_max+1),
    ordered (l, n, Z, n', Z') with Z over ``species_z``."""
    pos, z = _pad(positions, species, max_atoms)
    n = max_atoms
    real = z > 0
    nb = real[:, None] & real[None, :] & ~jnp.eye(n, dtype=bool)
    dr = pos[None, :, :] - pos[:, None, :]                          # r_j - r_i, (i, j, 3)
    r2 = jnp.sum(dr * dr, axis=-1)
    r = jnp.sqrt(jnp.where(nb, r2, 1.0))
    inside = nb & (r < cutoff)
    fc = jnp.where(inside, 0.5 * (jnp.cos(jnp.pi * jnp.minimum(r, cutoff) / cutoff) + 1.0), 0.0)
    unit = jnp.where(nb[..., None], dr / r[..., None], 0.0)
    rn = jnp.linspace(0.0, cutoff, n_max)
    w = cutoff / n_max
    g = jnp.exp(-(r[..., None] - rn) ** 2 / (2.0 * w * w)) * fc[..., None]   # (i, j, n)
    elem = jnp.stack([(z == zz) for zz in species_z], axis=-1).astype(pos.dtype)  # (j, Z)
    gz = g[:, :, :, None] * elem[None, :, None, :]                    # (i, j, n, Z)
    cos = jnp.clip(jnp.einsum("ijx,ikx->ijk", unit, unit), -1.0, 1.0)  # (i, j, k)
    legendre = [jnp.ones_like(cos), cos]
    for l in range(1, l_max):
        legendre.append(((2 * l + 1) * cos * legendre[l] - l * legendre[l - 1]) / (l + 1))
    out = []
    for l in range(l_max + 1):
        pl = jnp.einsum("ijna,ijk,ikmb->inamb", gz, legendre[l], gz) * (2 * l + 1) / (4 * jnp.pi)
        out.append(pl.reshape(n, -1))
    p = jnp.concatenate(out, axis=1)
    norm2 = jnp.sum(p * p, axis=1)
    ok = real & (norm2 > 0)
    return jnp.where(ok[:, None], p / jnp.sqrt(jnp.where(ok, norm2, 1.0))[:, None], 0.0)


def _soap_fn(cfg):
    z = tuple(int(v) for v in species_from_symbols(cfg["species"]))
    return partial(soap_power_spectrum, max_atoms=int(cfg["max_atoms"]), species_z=z,
                   cutoff=float(cfg["cutoff"]), n_max=int(cfg["n_max"]), l_max=int(cfg["l_max"]))


def _soap_size(cfg):
    return len(cfg["species"]) ** 2 * int(cfg["n_max"]) ** 2 * (int(cfg["l_max"]) + 1)


def _soap_local_energy(cfg, params, p, z):
    """sum_i sum_m alpha_m delta(Z_i, Z_m) (p_i . p_m)^zeta for one structure (eV)."""
    k = (p @ params["sparse"].T) ** int(cfg["zeta"])                     # (N, M)
    same = (z[:, None] == params["sparse_species"][None, :]) & (z[:, None] > 0)
    return jnp.sum(jnp.where(same, k, 0.0) @ params["alpha"])


def _fit_soap(cfg, pos, z, y, seed: int = 0):
    """GAP-style sparse GPR (subset of regressors): structure energies are
    sums of local energies; alpha = (lambda K_MM + K_MN K_NM)^-1 K_MN y, with
    M sparse environments drawn at random (seeded) from the training atoms
    and lambda = ``regularization`` (the noise variance relative to the
    prior, eV^2). Returns (params pieces, n_sparse)."""
    fn = jax.jit(jax.vmap(_soap_fn(cfg)))
    p = np.concatenate([np.asarray(fn(jnp.asarray(pos[i:i + 128]), jnp.asarray(z[i:i + 128])))
                        for i in range(0, len(pos), 128)])                 # (B, N, P)
    atoms_idx = np.argwhere(z > 0)
    m = cfg["n_sparse"] if cfg["n_sparse"] is not None else min(500, len(atoms_idx))
    m = min(int(m), len(atoms_idx))
    pick = np.random.default_rng(seed).choice(len(atoms_idx), m, replace=False)
    sel = atoms_idx[np.sort(pick)]
    sparse, sparse_z = p[sel[:, 0], sel[:, 1]], z[sel[:, 0], sel[:, 1]]
    zeta = int(cfg["zeta"])
    k_atoms = np.einsum("bnp,mp->bnm", p, sparse) ** zeta
    k_atoms *= (z[:, :, None] == sparse_z[None, None, :]) & (z[:, :, None] > 0)
    k_nm = k_atoms.sum(axis=1)                                             # (B, M)
    k_mm = (sparse @ sparse.T) ** zeta * (sparse_z[:, None] == sparse_z[None, :])
    a = cfg["regularization"] * k_mm + k_nm.T @ k_nm
    # jitter: K_MM is singular when two sparse environments coincide (symmetry-equivalent atoms)
    alpha = krr_fit(a, k_nm.T @ y, 1e-10 * float(np.trace(a)) / m)
    return {"sparse": jnp.asarray(sparse), "sparse_species": jnp.asarray(sparse_z.astype(np.int32)),
            "alpha": alpha}, m


# ---------------------------------------------------------------- the potential

def _resolve(config: dict, allowed) -> dict:
    unknown = set(config) - set(allowed) - {"kind"}
    if unknown:
        raise InputError(f"unknown key(s) for potential kind 'kernel': {', '.join(sorted(unknown))}")
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
    check_choice("kernel descriptor", cfg["descriptor"], DESCRIPTORS)
    check_choice("kernel", cfg["kernel"], KERNELS)
    check_choice("kernel offset", cfg["offset"], OFFSETS)
    check_choice("overlap orbitals", cfg["orbitals"], ("s", "sp"))
    for key in ("standardize", "gpr", "gradient_domain"):
        if not isinstance(cfg[key], bool):
            raise InputError(f"kernel '{key}' must be true or false, got {cfg[key]!r}")
    cfg["regularization"] = positive_number("kernel regularization", cfg["regularization"], "eV^2")
    cfg["signal_variance"] = positive_number("kernel signal_variance", cfg["signal_variance"], "eV^2")
    if cfg["sigma"] is not None:
        cfg["sigma"] = positive_number("kernel sigma", cfg["sigma"], "descriptor units")
    if cfg["descriptor"] == "soap":
        if "kernel" not in config:
            cfg["kernel"] = "polynomial"
        if cfg["kernel"] != "polynomial" or cfg["gpr"] or cfg["gradient_domain"]:
            raise InputError("kernel descriptor 'soap' uses kernel = 'polynomial' ((p.q)^zeta, GAP-style "
                             "sparse GPR) without gpr or gradient_domain")
        cfg["cutoff"] = positive_number("kernel soap cutoff", cfg["cutoff"], "A")
        for key, lo in (("n_max", 2), ("l_max", 0), ("zeta", 1)):
            v = cfg[key]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise InputError(f"kernel soap {key!r} must be an integer >= {lo}, got {v!r}")
            cfg[key] = int(v)
        if cfg["n_sparse"] is not None and (isinstance(cfg["n_sparse"], bool) or not isinstance(
                cfg["n_sparse"], (int, np.integer)) or cfg["n_sparse"] < 1):
            raise InputError(f"kernel 'n_sparse' must be a positive integer, got {cfg['n_sparse']!r}")
    elif cfg["kernel"] == "polynomial":
        raise InputError("kernel = 'polynomial' is for descriptor = 'soap'")
    if cfg["gradient_domain"] and (cfg["gpr"] or cfg["kernel"] == "laplacian"):
        raise InputError("kernel gradient_domain = true needs a differentiable kernel (gaussian or "
                         "linear) and gpr = false")
    return cfg


def _check_sizes(cfg):
    for key in ("species", "max_atoms", "n_train", "sigma"):
        if cfg[key] is None:
            raise InputError(f"potential kind 'kernel' needs {key!r} (written by fit_kernel into model.toml)")
    sp = cfg["species"]
    if not isinstance(sp, (list, tuple)) or not sp:
        raise InputError("kernel 'species' must be a non-empty list of element symbols")
    cfg["species"] = [str(s) for s in sp]
    species_from_symbols(cfg["species"])
    for key in ("max_atoms", "n_train"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"kernel {key!r} must be a positive integer, got {v!r}")
        cfg[key] = int(v)
    if cfg["descriptor"] == "bag_of_bonds":
        mc = cfg["max_counts"]
        if not isinstance(mc, dict) or set(mc) != set(cfg["species"]):
            raise InputError("kernel descriptor 'bag_of_bonds' needs 'max_counts', a table with a "
                             "maximum atom count for every element of 'species'")
        for s, v in mc.items():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= cfg["max_atoms"]:
                raise InputError(f"kernel max_counts[{s!r}] must be an integer in [0, max_atoms], got {v!r}")
        cfg["max_counts"] = {s: int(mc[s]) for s in cfg["species"]}
    else:
        cfg["max_counts"] = None
    return cfg


_SOAP_KEYS = ("cutoff", "n_max", "l_max", "zeta", "n_sparse")


def _toml_config(cfg):
    """TOML cannot store None: drop unset optional keys (and the SOAP keys
    of global-descriptor models, whose defaults rebuild them)."""
    drop = () if cfg["descriptor"] == "soap" else _SOAP_KEYS
    return {"kind": "kernel", **{k: v for k, v in cfg.items() if v is not None and k not in drop}}


def _check_system(cfg, system):
    if system is None:
        return
    if system.periodic:
        raise InputError("potential kind 'kernel' is for finite molecules and clusters: its global "
                         "descriptors are undefined in a periodic cell")
    check_species(system, cfg["species"], "kernel")
    if system.n_atoms > cfg["max_atoms"]:
        raise InputError(f"kernel model was built for at most {cfg['max_atoms']} atoms, "
                         f"the system has {system.n_atoms}")
    if cfg["descriptor"] == "bag_of_bonds":
        sym = system.symbols
        for s in cfg["species"]:
            if sym.count(s) > cfg["max_counts"][s]:
                raise InputError(f"kernel bag_of_bonds model holds at most {cfg['max_counts'][s]} "
                                 f"{s} atoms, the system has {sym.count(s)}")


def _template(cfg):
    n, d, ns = cfg["n_train"], descriptor_size(cfg), len(cfg["species"])
    if cfg["descriptor"] == "soap":
        if cfg["n_sparse"] is None:
            raise InputError("potential kind 'kernel' with descriptor 'soap' needs 'n_sparse'")
        m = cfg["n_sparse"]
        return {"sparse": jnp.zeros((m, d)), "sparse_species": jnp.zeros((m,), jnp.int32),
                "alpha": jnp.zeros((m,)), "element_energies": jnp.zeros((ns,)),
                "energy_shift": jnp.zeros(())}
    p = {"descriptors": jnp.zeros((n, d)),
         **({"directions": jnp.zeros((n, d))} if cfg["gradient_domain"] else {"alpha": jnp.zeros((n,))}),
         "mean": jnp.zeros((d,)), "scale": jnp.ones((d,)),
         "element_energies": jnp.zeros((ns,)), "energy_shift": jnp.zeros(())}
    if cfg["gpr"]:
        p["cholesky"] = jnp.zeros((n, n))
    return p


def _kernel_vector(cfg, params, x):
    """s^2 k(x, x_k) for one standardised descriptor x (D,) -> (n_train,)."""
    xt = params["descriptors"]
    if cfg["kernel"] == "linear":
        k = xt @ x
    else:
        diff = xt - x
        if cfg["kernel"] == "gaussian":
            k = jnp.exp(-jnp.sum(diff * diff, axis=-1) / (2.0 * cfg["sigma"] ** 2))
        else:
            k = jnp.exp(-jnp.sum(jnp.abs(diff), axis=-1) / cfg["sigma"])
    return cfg["signal_variance"] * k


def _pair_kernel(cfg):
    """s^2 k(x, x') for two standardised descriptors (gaussian or linear)."""
    s2, sigma = cfg["signal_variance"], cfg["sigma"]
    if cfg["kernel"] == "linear":
        return lambda x, xp: s2 * (x @ xp)
    return lambda x, xp: s2 * jnp.exp(-jnp.sum((x - xp) ** 2) / (2.0 * sigma ** 2))


def _energy_fn(cfg):
    """``(params, positions (N,3) A, species (N,)) -> eV`` of a resolved config.

    Energy-domain models: offset + sum_k alpha_k s^2 k(x, x_k).
    Gradient-domain models: offset + sum_k d/de s^2 k(x, x_k + e w_k)|_{e=0},
    the derivative of the kernel along w_k = J_k beta_k (J_k the descriptor
    Jacobian at training structure k), i.e. sum_k beta_k . grad_{r'} k(x(r),
    x(r'))|_{r'=r_k}; both derivatives by autodiff (jvp)."""
    d_fn = descriptor_fn(cfg)
    table = species_index_table(cfg["species"])
    pair = _pair_kernel(cfg) if cfg["gradient_domain"] else None
    soap = cfg["descriptor"] == "soap"

    def energy(params, positions, species):
        idx = table[species]
        e0 = jnp.sum(jnp.where(idx >= 0, params["element_energies"][jnp.maximum(idx, 0)], 0.0))
        if soap:
            z = _pad(positions, species, int(cfg["max_atoms"]))[1]
            return e0 + params["energy_shift"] + _soap_local_energy(cfg, params, d_fn(positions, species), z)
        x = (d_fn(positions, species) - params["mean"]) / params["scale"]
        if pair is None:
            e = _kernel_vector(cfg, params, x) @ params["alpha"]
        else:
            def term(xk, wk):
                return jax.jvp(lambda xp: pair(x, xp), (xk,), (wk,))[1]
            e = jnp.sum(jax.vmap(term)(params["descriptors"], params["directions"]))
        return e0 + params["energy_shift"] + e

    return energy


def kernel_from_config(config: dict, system) -> Potential:
    """``kind = "kernel"``: a trained kernel model (energies eV, positions A).

    Keys (defaults in :data:`DEFAULTS`): descriptor, kernel, sigma,
    regularization (eV^2), signal_variance (eV^2), species, max_atoms,
    max_counts (bag_of_bonds), orbitals (overlap), standardize, offset, gpr,
    gradient_domain, n_train, and for soap cutoff (A), n_max, l_max, zeta,
    n_sparse. :func:`fit_kernel` writes them all; ``init`` returns an
    all-zero template of the parameters (descriptors (n_train, D), alpha
    (n_train,) eV/s^2, mean and scale (D,), element_energies (n_species,) eV,
    energy_shift eV, and with gpr the (n_train, n_train) Cholesky factor of
    s^2 K + lambda I; gradient-domain models hold directions (n_train, D)
    instead of alpha; soap models hold sparse (n_sparse, P), sparse_species
    and alpha (n_sparse,) with no mean/scale), filled from params.msgpack by
    ``kind = "model"``."""
    cfg = _check_sizes(_resolve(config, DEFAULTS))
    _check_system(cfg, system)
    efn = _energy_fn(cfg)

    def init(key, system_):
        return _template(cfg)

    def energy(params, positions, context):
        return efn(params, positions, context.species)

    return Potential(energy=energy, init=init, cutoff=0.0, name="kernel", config=_toml_config(cfg))


def kernel_predict(config: dict, params, atoms_list, *, variance: bool = False, batch_size: int = 256):
    """Energies (B,) eV of a kernel model for a list of ase.Atoms, and with
    ``variance=True`` (gpr models) also the GP latent variances (B,) eV^2.
    ``config`` is the kernel potential configuration (not a sum)."""
    cfg = _check_sizes(_resolve(config, DEFAULTS))
    pos, z = pad_structures(atoms_list, cfg["max_atoms"])
    if cfg["gradient_domain"] or cfg["descriptor"] == "soap":
        if variance:
            raise InputError("predictive variances need a model fitted with gpr = true")
        efn = jax.jit(jax.vmap(_energy_fn(cfg), in_axes=(None, 0, 0)))
        return np.concatenate([np.asarray(efn(params, jnp.asarray(pos[i:i + batch_size]),
                                                  jnp.asarray(z[i:i + batch_size])))
                               for i in range(0, len(pos), batch_size)])
    x = (compute_descriptors(cfg, pos, z, batch_size) - np.asarray(params["mean"])) / np.asarray(params["scale"])
    xt = np.asarray(params["descriptors"])
    k = np.asarray(kernel_matrix(x, xt, cfg["kernel"], cfg["sigma"], cfg["signal_variance"]))
    table = np.asarray(species_index_table(cfg["species"]))
    idx = table[z]
    ee = np.asarray(params["element_energies"])
    e0 = np.where(idx >= 0, ee[np.maximum(idx, 0)], 0.0).sum(axis=1) + float(params["energy_shift"])
    e = e0 + k @ np.asarray(params["alpha"])
    if not variance:
        return e
    if "cholesky" not in params:
        raise InputError("predictive variances need a model fitted with gpr = true")
    if cfg["kernel"] == "linear":
        kdiag = cfg["signal_variance"] * np.sum(x * x, axis=1)
    else:
        kdiag = np.full(len(x), cfg["signal_variance"])
    v = jax.scipy.linalg.solve_triangular(jnp.asarray(params["cholesky"]), jnp.asarray(k).T, lower=True)
    return e, np.maximum(kdiag - np.asarray(jnp.sum(v * v, axis=0)), 0.0)


# ---------------------------------------------------------------- training

def _fit_gradient_domain(cfg, x, mean, scale, pos, z, forces):
    """Directions w_k = J_k beta_k (n, D) of a gradient-domain fit (see
    :func:`fit_kernel`); forces a list of (N_k, 3) eV/A."""
    n, m = pos.shape[0], pos.shape[1]
    f = np.zeros((n, m, 3))
    for k, fk in enumerate(forces):
        fk = np.asarray(fk, dtype=np.float64)
        if fk.ndim != 2 or fk.shape[1] != 3 or not np.all(np.isfinite(fk)):
            raise InputError(f"forces of training structure {k} must be finite (N, 3) eV/A")
        nk = int(np.sum(z[k] > 0))
        if fk.shape[0] != nk:
            raise InputError(f"training structure {k} has {nk} atoms but {fk.shape[0]} force rows")
        f[k, :nk] = fk
    if len(forces) != n:
        raise InputError(f"kernel fit got {n} structures but {len(forces)} force arrays")
    d_fn = descriptor_fn(cfg)
    mean_j, scale_j = jnp.asarray(mean), jnp.asarray(scale)
    phi = lambda r, zz: (d_fn(r, zz) - mean_j) / scale_j
    jac = jax.jit(jax.vmap(jax.jacfwd(phi)))(jnp.asarray(pos), jnp.asarray(z))       # (n, D, m, 3)
    jac = jac.reshape(n, jac.shape[1], 3 * m)
    pair = _pair_kernel(cfg)
    kxx = jax.jacfwd(jax.grad(pair, argnums=0), argnums=1)                          # (D, D)
    xj = jnp.asarray(x)
    blocks = jax.jit(jax.vmap(lambda xl: jax.vmap(lambda xk: kxx(xl, xk))(xj)))(xj)  # (n, n, D, D)
    h = jnp.einsum("ldp,lkde,keq->lpkq", jac, blocks, jac).reshape(n * 3 * m, n * 3 * m)
    real = np.repeat(z > 0, 3, axis=1).reshape(-1)
    sel = np.flatnonzero(real)
    hs = h[np.ix_(sel, sel)]
    beta = np.zeros(n * 3 * m)
    beta[sel] = -np.asarray(krr_fit(hs, jnp.asarray(f.reshape(-1)[sel]), cfg["regularization"]))
    return jnp.einsum("kdp,kp->kd", jac, jnp.asarray(beta.reshape(n, 3 * m)))


def potential_energies(config: dict, atoms_list):
    """Energies (eV) of any jaxpot potential configuration for a list of
    ase.Atoms (the Delta-learning baseline); one build per composition."""
    from . import build_potential
    from ..neighbors import neighbor_list
    from ..system import from_ase
    from .base import Context

    cache, out, resolved = {}, [], None
    for at in atoms_list:
        system = from_ase(at)
        key = (tuple(at.numbers), tuple(at.pbc), tuple(np.round(at.cell.array, 8).ravel()))
        if key not in cache:
            pot = build_potential(dict(config), system)
            params = pot.init(jax.random.PRNGKey(0), system)
            nbr = None
            if pot.cutoff > 0:
                nbr = neighbor_list(pot.cutoff, np.asarray(system.cell), system.periodic, skin=0.0,
                                    images=pot.neighbor_images)
            cache[key] = (pot, params, nbr, jax.jit(pot.energy))
            resolved = resolved or pot.config
        pot, params, nbr, efn = cache[key]
        pos = jnp.asarray(at.get_positions())
        nl = nbr.allocate(pos, system.cell) if nbr is not None else None
        ctx = Context(species=system.species, cell=system.cell, neighbors=nl, charges=system.charges)
        out.append(float(efn(params, pos, ctx)))
    return np.asarray(out), resolved, cache


def fit_kernel(config: dict, atoms_list, energies, forces=None):
    """Fit a kernel model to reference energies; returns
    ``(potential_config, params)`` ready for
    :func:`jaxpot.potentials.saved.save_model`.

    ``config``: the ``[model]`` table (``kind = "kernel"`` optional): the
    potential keys of :data:`DEFAULTS` (``sigma`` defaults to the median
    pairwise descriptor distance, L2 for gaussian and L1 for laplacian, 1.0
    for linear; ``species``, ``max_atoms`` and ``max_counts`` default to the
    training set's; ``signal_variance`` defaults to 1 eV^2, or with ``gpr``
    to the variance of the fitted energies) plus the fit keys of
    :data:`FIT_DEFAULTS`: ``optimize_hyperparameters`` (maximise the GP
    log marginal likelihood, for any regressor), ``hyperparameter_steps``,
    ``hyperparameter_learning_rate``, and ``baseline``, a ``[potential]``
    table: the kernel model then fits E_ref - E_baseline and the returned
    configuration is ``{kind = "sum", terms = [baseline, kernel]}`` with
    params (baseline params, kernel params).

    ``atoms_list``: ase.Atoms (finite, non-periodic); ``energies`` (eV);
    ``forces``: list of (N_k, 3) eV/A, used only with ``gradient_domain =
    true``, which fits the forces instead of the energies (Chmiela et al.,
    Sci. Adv. 3, e1603015 (2017), GDML, without its permutational
    symmetrisation: the global descriptors are already invariant). The model
    E(r) = sum_k beta_k . grad_{r'} k(x(r), x(r'))|_{r'=r_k} has forces
    F(r_l) = -sum_k H(r_l, r_k) beta_k with the Hessian kernel H = grad_r
    grad_{r'}^T k, built here by autodiff (descriptor Jacobians and
    jacfwd(grad) of the kernel); beta = -(H + lambda I)^-1 F over the real
    atoms' coordinates ((n 3N)^2 memory: small molecules). The energy offset
    is then fitted to E_ref - E_kernel. Energy-domain fits ignore forces."""
    allowed = set(DEFAULTS) | set(FIT_DEFAULTS)
    if not isinstance(config, dict):
        raise InputError("kernel fit configuration must be a table")
    if config.get("kind", "kernel") != "kernel":
        raise InputError(f"fit_kernel fits kind 'kernel', got {config.get('kind')!r}")
    cfg = _resolve(config, allowed)
    fit = {**FIT_DEFAULTS, **{k: v for k, v in config.items() if k in FIT_DEFAULTS}}
    if not isinstance(fit["optimize_hyperparameters"], bool):
        raise InputError("kernel 'optimize_hyperparameters' must be true or false")
    if cfg["gradient_domain"]:
        if forces is None:
            raise InputError("kernel gradient_domain = true needs reference forces")
        if fit["baseline"] is not None or fit["optimize_hyperparameters"]:
            raise InputError("kernel gradient_domain = true does not support 'baseline' or "
                             "'optimize_hyperparameters' yet")
    atoms_list = list(atoms_list)
    y_ref = np.asarray(energies, dtype=np.float64).reshape(-1)
    if len(atoms_list) == 0:
        raise InputError("kernel fit needs at least one training structure")
    if len(y_ref) != len(atoms_list):
        raise InputError(f"kernel fit got {len(atoms_list)} structures but {len(y_ref)} energies")
    if not np.all(np.isfinite(y_ref)):
        raise InputError("kernel fit got non-finite reference energies")
    for k, at in enumerate(atoms_list):
        if any(at.pbc):
            raise InputError(f"training structure {k} is periodic: kernel descriptors are for "
                             "finite molecules and clusters only")

    # defaults from the training set
    symbols = sorted({s for at in atoms_list for s in at.get_chemical_symbols()},
                     key=lambda s: species_from_symbols([s])[0])
    if cfg["species"] is None:
        cfg["species"] = symbols
    if cfg["max_atoms"] is None:
        cfg["max_atoms"] = max(len(at) for at in atoms_list)
    if cfg["descriptor"] == "bag_of_bonds" and cfg["max_counts"] is None:
        cfg["max_counts"] = {s: max(at.get_chemical_symbols().count(s) for at in atoms_list)
                             for s in cfg["species"]}
    cfg["n_train"] = len(atoms_list)
    cfg["sigma"] = cfg["sigma"] if cfg["sigma"] is not None else 1.0   # placeholder until data is seen
    cfg = _check_sizes(cfg)
    sigma_given = "sigma" in config and config["sigma"] is not None
    for k, at in enumerate(atoms_list):
        from ..system import from_ase
        try:
            _check_system(cfg, from_ase(at))
        except InputError as err:
            raise InputError(f"training structure {k}: {err}") from None

    # Delta-learning: fit the residual of the baseline
    base_cfg, base_params = None, None
    y = y_ref.copy()
    if fit["baseline"] is not None:
        if not isinstance(fit["baseline"], dict):
            raise InputError("kernel 'baseline' must be a [potential] table")
        e_base, base_cfg, cache = potential_energies(fit["baseline"], atoms_list)
        base_params = next(iter(cache.values()))[1]
        y = y - e_base

    # energy offset
    species = cfg["species"]
    comp = np.asarray([[at.get_chemical_symbols().count(s) for s in species] for at in atoms_list], float)
    if cfg["offset"] == "per_element":
        e_el = np.linalg.lstsq(comp, y, rcond=None)[0]
        shift = 0.0
    else:
        e_el, shift = np.zeros(len(species)), float(np.mean(y))
    resid = y - comp @ e_el - shift

    # descriptors
    pos, z = pad_structures(atoms_list, cfg["max_atoms"])
    if cfg["descriptor"] == "soap":
        if fit["optimize_hyperparameters"]:
            raise InputError("kernel descriptor 'soap' does not support optimize_hyperparameters yet")
        pieces, cfg["n_sparse"] = _fit_soap(cfg, pos, z, resid)
        params = {**pieces, "element_energies": jnp.asarray(e_el), "energy_shift": jnp.asarray(shift)}
        pot_cfg = _toml_config(cfg)
        if base_cfg is not None:
            return {"kind": "sum", "terms": [base_cfg, pot_cfg]}, (base_params, params)
        return pot_cfg, params
    d = compute_descriptors(cfg, pos, z)
    if cfg["standardize"]:
        mean, scale = d.mean(axis=0), d.std(axis=0)
        scale = np.where(scale > 1e-12 * max(1.0, float(np.abs(d).max())), scale, 1.0)
    else:
        mean, scale = np.zeros(d.shape[1]), np.ones(d.shape[1])
    x = (d - mean) / scale
    if not sigma_given:
        cfg["sigma"] = 1.0 if cfg["kernel"] == "linear" else median_distance(x, cfg["kernel"])
    if cfg["gpr"] and "signal_variance" not in config:
        cfg["signal_variance"] = float(max(np.var(resid), 1e-12))
    if cfg["gradient_domain"]:
        directions = _fit_gradient_domain(cfg, x, mean, scale, pos, z, forces)
        params = {"descriptors": jnp.asarray(x), "directions": directions, "mean": jnp.asarray(mean),
                  "scale": jnp.asarray(scale), "element_energies": jnp.zeros(len(species)),
                  "energy_shift": jnp.zeros(())}
        e_kernel = np.asarray(jax.jit(jax.vmap(_energy_fn(cfg), in_axes=(None, 0, 0)))(
            params, jnp.asarray(pos), jnp.asarray(z)))
        r = y - e_kernel
        if cfg["offset"] == "per_element":
            params["element_energies"] = jnp.asarray(np.linalg.lstsq(comp, r, rcond=None)[0])
        else:
            params["energy_shift"] = jnp.asarray(float(np.mean(r)))
        return _toml_config(cfg), params
    if fit["optimize_hyperparameters"]:
        (cfg["sigma"], cfg["signal_variance"], cfg["regularization"]), _ = optimize_gp_hyperparameters(
            x, resid, cfg["kernel"], cfg["sigma"], cfg["signal_variance"], cfg["regularization"],
            steps=int(fit["hyperparameter_steps"]),
            learning_rate=float(fit["hyperparameter_learning_rate"]))

    k = kernel_matrix(x, x, cfg["kernel"], cfg["sigma"], cfg["signal_variance"])
    chol = _cholesky(k, cfg["regularization"])
    alpha = _cho_solve(chol, jnp.asarray(resid))
    params = {"descriptors": jnp.asarray(x), "alpha": alpha, "mean": jnp.asarray(mean),
              "scale": jnp.asarray(scale), "element_energies": jnp.asarray(e_el),
              "energy_shift": jnp.asarray(shift)}
    if cfg["gpr"]:
        params["cholesky"] = chol
    pot_cfg = _toml_config(cfg)
    if base_cfg is not None:
        return {"kind": "sum", "terms": [base_cfg, pot_cfg]}, (base_params, params)
    return pot_cfg, params
