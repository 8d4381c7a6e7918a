"""Ring-polymer normal modes and the free ring-polymer propagators.

Units: positions A, momenta amu A/fs, masses amu, kT eV, time fs,
frequencies 1/fs.

The spring term of the ring-polymer Hamiltonian (i-PI convention,
Ceriotti et al., JCP 133, 124104 (2010)) is diagonal in the real-DFT
normal modes, with frequencies w_k = 2 w_P sin(k pi / P), w_P = P kT / hbar.
Each mode is propagated exactly (a rotation in phase space) or with the
Cayley approximation (Korol, Bou-Rabee & Miller, JCP 151, 124103 (2019);
JCP 152, 104102 (2020)).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ...system import InputError
from ...units import HBAR

PROPAGATORS = ("exact", "cayley")
NM_METHODS = ("auto", "matrix", "fft")

# Above this bead number the FFT transform (P log P) replaces the dense
# real-DFT matrix (P^2); below it the matmul is faster on every backend.
_FFT_FROM_BEADS = 64


def ring_polymer_frequency(n_beads: int, kT):
    """w_P = P kT / hbar, 1/fs (kT in eV)."""
    return n_beads * kT / HBAR


def normal_mode_frequencies(n_beads: int, kT):
    """Free ring-polymer normal-mode frequencies w_k = 2 w_P sin(k pi / P),
    k = 0..P-1, 1/fs, in the ordering of :func:`normal_mode_matrix` (mode k
    and mode P-k are the cosine and sine partners of one frequency)."""
    k = jnp.arange(n_beads)
    return 2.0 * ring_polymer_frequency(n_beads, kT) * jnp.sin(k * jnp.pi / n_beads)


def normal_mode_matrix(n_beads: int) -> np.ndarray:
    """Orthogonal real-DFT matrix C (P, P), float64: q_nm[k] = sum_j C[j, k] q[j].

    Columns: k = 0, the centroid mode 1/sqrt(P); 1 <= k < P/2,
    sqrt(2/P) cos(2 pi j k / P); k = P/2 (P even), (-1)^j / sqrt(P);
    P/2 < k < P, sqrt(2/P) sin(2 pi j k / P). Each column is an eigenvector
    of the ring's spring matrix with eigenvalue w_k^2 / w_P^2 = 4 sin^2(k pi/P)
    (sin(k pi/P) = sin((P-k) pi/P), so sine partners share the frequency).
    The bead q_nm[0] = sqrt(P) * centroid.
    """
    if int(n_beads) < 1:
        raise InputError(f"n_beads must be >= 1, got {n_beads}")
    P = int(n_beads)
    j = np.arange(P)[:, None]
    k = np.arange(P)[None, :]
    arg = 2.0 * np.pi * j * k / P
    C = np.where(2 * k < P, np.sqrt(2.0 / P) * np.cos(arg), np.sqrt(2.0 / P) * np.sin(arg))
    C[:, 0] = 1.0 / np.sqrt(P)
    if P % 2 == 0:
        C[:, P // 2] = (-1.0) ** np.arange(P) / np.sqrt(P)
    return C


def _resolve_method(method: str, n_beads: int) -> str:
    if method not in NM_METHODS:
        raise InputError(f"unknown normal-mode method {method!r}: use one of {NM_METHODS}")
    if method == "auto":
        return "fft" if n_beads > _FFT_FROM_BEADS else "matrix"
    return method


def to_normal_modes(x, method: str = "auto"):
    """Cartesian bead array (P, ...) -> normal-mode array (P, ...), same units.

    ``method``: "matrix" (dense real DFT, :func:`normal_mode_matrix`),
    "fft" (``jnp.fft.rfft`` along the bead axis, same result), or "auto"."""
    P = x.shape[0]
    method = _resolve_method(method, P)
    if method == "matrix":
        C = jnp.asarray(normal_mode_matrix(P), dtype=x.dtype)
        return jnp.einsum("jk,j...->k...", C, x)
    # rfft: F_k = sum_j x_j exp(-2 pi i j k / P), so Re F_k = sum cos,
    # Im F_k = -sum sin; column P-k of C is -sqrt(2/P) sin(2 pi j k/P).
    F = jnp.fft.rfft(x, axis=0)
    half = (P - 1) // 2                       # number of cos/sin pairs
    parts = [F[:1].real / np.sqrt(P)]
    if half:
        parts.append(np.sqrt(2.0 / P) * F[1:half + 1].real)
    if P % 2 == 0:
        parts.append(F[P // 2:P // 2 + 1].real / np.sqrt(P))
    if half:
        parts.append(np.sqrt(2.0 / P) * F[1:half + 1].imag[::-1])
    return jnp.concatenate(parts, axis=0).astype(x.dtype)


def from_normal_modes(x_nm, method: str = "auto"):
    """Normal-mode array (P, ...) -> Cartesian bead array; inverse (and
    transpose) of :func:`to_normal_modes`."""
    P = x_nm.shape[0]
    method = _resolve_method(method, P)
    if method == "matrix":
        C = jnp.asarray(normal_mode_matrix(P), dtype=x_nm.dtype)
        return jnp.einsum("jk,k...->j...", C, x_nm)
    half = (P - 1) // 2
    re = [x_nm[:1] * np.sqrt(P)]
    im = [jnp.zeros_like(x_nm[:1])]
    if half:
        re.append(x_nm[1:half + 1] * np.sqrt(P / 2.0))
        im.append(x_nm[P - half:][::-1] * np.sqrt(P / 2.0))
    if P % 2 == 0:
        re.append(x_nm[P // 2:P // 2 + 1] * np.sqrt(P))
        im.append(jnp.zeros_like(x_nm[:1]))
    F = jnp.concatenate(re, axis=0) + 1j * jnp.concatenate(im, axis=0)
    return jnp.fft.irfft(F, n=P, axis=0).astype(x_nm.dtype)


# --------------------------------------------------------------------------
# Free ring-polymer propagation
# --------------------------------------------------------------------------

def _free_coefficients(w, dt, fraction: float, propagator: str):
    """cos(theta), sin(theta)/w and w sin(theta) for each mode (arrays like w).

    A harmonic mode H = p^2/2m + m w^2 q^2/2 evolves as the rotation
    q' = cos(th) q + sin(th)/(m w) p,  p' = -m w sin(th) q + cos(th) p,
    with th = w t (exact). The Cayley transform of the full step,
    cay(dt L) = (1 - dt L/2)^-1 (1 + dt L/2), is the same rotation with
    th = 2 arctan(w dt / 2) (Korol et al., JCP 151, 124103 (2019)); it is a
    one-parameter family in th, so the half step sqrt(cay(dt L)) used by
    BCOCB (Korol et al., JCP 152, 104102 (2020)) has th = arctan(w dt / 2).
    ``fraction`` is the part of the full step dt this drift covers (1 or 1/2).
    Both keep |th| < pi for any dt with Cayley, hence strong stability.
    The centroid (w = 0) is a free particle: sin(th)/w -> fraction * dt.
    """
    if propagator == "exact":
        theta = fraction * w * dt
    else:
        theta = fraction * 2.0 * jnp.arctan(0.5 * w * dt)
    safe_w = jnp.where(w > 0, w, 1.0)
    s_over_w = jnp.where(w > 0, jnp.sin(theta) / safe_w, fraction * dt)
    return jnp.cos(theta), s_over_w, w * jnp.sin(theta)


def _rotate(q_nm, p_nm, masses, coef):
    """Apply the per-mode rotation of :func:`_free_coefficients` to
    normal-mode positions (A) and momenta (amu A/fs), shapes (P, N, 3)."""
    c, s_over_w, w_s = (a[:, None, None] for a in coef)
    m = masses[None, :, None]
    q_new = c * q_nm + s_over_w * p_nm / m
    p_new = c * p_nm - m * w_s * q_nm
    return q_new, p_new


def free_ring_polymer_step(positions, momenta, masses, kT, dt, *, propagator: str = "exact",
                           fraction: float = 1.0, method: str = "auto"):
    """Evolve a free ring polymer (springs only, no physical potential).

    positions (P, N, 3) A, momenta (P, N, 3) amu A/fs, masses (N,) amu,
    kT eV (physical temperature, springs at w_P = P kT/hbar), dt fs.
    ``propagator="exact"`` advances by ``fraction * dt`` exactly;
    ``"cayley"`` applies cay(dt L)^fraction (fraction 1 or 1/2).
    Returns (positions, momenta) in the same units."""
    if propagator not in PROPAGATORS:
        raise InputError(f"unknown propagator {propagator!r}: use one of {PROPAGATORS}")
    P = positions.shape[0]
    w = normal_mode_frequencies(P, jnp.asarray(kT, positions.dtype)).astype(positions.dtype)
    coef = _free_coefficients(w, dt, fraction, propagator)
    q_nm, p_nm = _rotate(to_normal_modes(positions, method), to_normal_modes(momenta, method),
                         masses, coef)
    return from_normal_modes(q_nm, method), from_normal_modes(p_nm, method)
