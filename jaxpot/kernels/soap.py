"""SOAP-like local descriptor and GAP-style sparse GPR (``descriptor =
"soap"`` of the kernel kind): per-atom power spectra (``cutoff`` A,
``n_max``, ``l_max``) with E = offset + sum_i sum_m alpha_m delta(Z_i, Z_m)
(p_i . p_m)^zeta over ``n_sparse`` representative environments
(``kernel = "polynomial"``). Transferable across cluster sizes. Energies eV,
lengths A.

Bartok, Kondor, Csanyi, PRB 87, 184115 (2013) (the power spectrum, here with
delta rather than Gaussian-smeared atomic densities); Bartok, Payne, Kondor,
Csanyi, PRL 104, 136403 (2010) (GAP, sparse GPR).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..system import species_from_symbols
from .descriptors import _pad
from .regression import krr_fit


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
