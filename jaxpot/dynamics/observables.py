"""Observables: block averages with standard errors, radial distribution
functions, pressure, mean-square displacement, kinetic temperature.

Units (metal): lengths A, energies eV, volumes A^3, pressures eV/A^3
(times :data:`EV_A3_TO_BAR` or :data:`EV_A3_TO_GPA`), temperatures K.

Statistics (block averages) run on the host in numpy; the structural
observables are jnp functions that vectorise over frames. ``pressure`` and
``kinetic_temperature`` are the formulas of :mod:`jaxpot.dynamics.quantity`
(``quantity.pressure``, ``quantity.temperature``), re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..space import perpendicular_widths
from ..system import InputError
from ..units import EV_A3_TO_GPA
from .quantity import pressure
from .quantity import temperature as kinetic_temperature

EV_A3_TO_BAR = EV_A3_TO_GPA * 1.0e4
"""1 eV/A^3 in bar (1 GPa = 1e4 bar)."""

__all__ = [
    "BlockingResult", "blocking", "block_average", "radial_distribution",
    "coordination_number", "pressure", "kinetic_temperature",
    "mean_square_displacement", "EV_A3_TO_BAR", "EV_A3_TO_GPA",
]


# ---------------------------------------------------------------------------
# Block averaging
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BlockingResult:
    """Outcome of :func:`blocking` (same units as the data).

    mean, sem: the average and its standard error; block_size (samples per
    block) and n_blocks at the chosen level; level (number of halvings);
    sems: the plain blocking SEM at every level, sem_errors their standard
    errors sem / sqrt(2 (n_blocks - 1)); naive_sem: the level-0 estimate
    that ignores correlations; converged: whether the automatic test found
    a level with uncorrelated blocks (False means the series is too short:
    the SEM is then a lower bound)."""
    mean: float
    sem: float
    block_size: int
    n_blocks: int
    level: int
    sems: np.ndarray
    sem_errors: np.ndarray
    naive_sem: float
    converged: bool


def blocking(x, confidence: float = 0.99) -> BlockingResult:
    """Standard error of the mean of a correlated time series by blocking.

    Flyvbjerg & Petersen, JCP 91, 461 (1989): repeatedly average adjacent
    pairs; once blocks are longer than the correlation time, the naive
    variance of the block means over (n_blocks - 1) estimates the variance
    of the mean. The level is chosen automatically with the test of Jonsson,
    PRE 98, 043304 (2018): at level k the lag-1 autocorrelation rho_k of the
    block means satisfies n_k rho_k^2 ~ chi^2(1) once blocks are
    uncorrelated, so the first level j with
    M_j = sum_{k >= j} n_k rho_k^2 below the chi^2(d - j) quantile at
    ``confidence`` is taken (d = number of levels). Odd lengths drop the
    last sample at that level. ``x``: 1-D array, any units.

    Residual-correlation correction: blocks longer than the correlation
    time are still correlated with their neighbours through the common
    boundary (lag-1 only, as the correlation decays within a block), which
    biases the plain blocking SEM low by O(tau/B) (~10% at the level the
    test picks for an AR(1) series with phi = 0.9). With rho_1 the lag-1
    autocorrelation of the chosen block means, Var(mean) =
    (sigma_B^2 / n_b)(1 + 2 rho_1), so the reported SEM is the blocking SEM
    times sqrt(1 + 2 (rho_1_hat + 1/n_b)) (1/n_b removes the leading bias
    of the sample autocorrelation), the factor clipped to [1/2, 2] against
    noise with few blocks. ``sems`` keeps the uncorrected per-level values."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise InputError(f"block averaging needs a 1-D time series, got shape {x.shape}")
    if x.size < 4:
        raise InputError(f"block averaging needs at least 4 samples, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise InputError("the time series contains non-finite values")
    from scipy.stats import chi2

    mean = float(np.mean(x))
    var, rho, sizes, nb = [], [], [], []
    y, size = x, 1
    while y.size >= 2:
        n = y.size
        mu = y.mean()
        d = y - mu
        s2 = float(np.mean(d * d))
        g = float(np.sum(d[:-1] * d[1:]) / n)
        var.append(s2)
        rho.append(g / s2 if s2 > 0 else 0.0)
        sizes.append(size)
        nb.append(n)
        m = n - (n % 2)
        y = 0.5 * (y[0:m:2] + y[1:m:2])
        size *= 2
    var, rho, nb = np.array(var), np.array(rho), np.array(nb)
    sems = np.sqrt(var / (nb - 1))
    errs = sems / np.sqrt(2.0 * (nb - 1))
    d = len(var)
    stat = np.cumsum((nb * rho ** 2)[::-1])[::-1]          # M_j
    quant = chi2.ppf(confidence, df=np.arange(d, 0, -1))   # df = d - j
    ok = np.nonzero(stat < quant)[0]
    converged = ok.size > 0
    level = int(ok[0]) if converged else d - 1
    factor = float(np.clip(1.0 + 2.0 * (rho[level] + 1.0 / nb[level]), 0.5, 2.0))
    return BlockingResult(
        mean=mean, sem=float(sems[level] * np.sqrt(factor)), block_size=int(sizes[level]),
        n_blocks=int(nb[level]), level=level, sems=sems, sem_errors=errs,
        naive_sem=float(sems[0]), converged=bool(converged),
    )


def block_average(x):
    """``(mean, sem)`` of a correlated time series by automatic blocking
    (see :func:`blocking`, which also gives the block size and count)."""
    r = blocking(x)
    return r.mean, r.sem


# ---------------------------------------------------------------------------
# Radial distribution function
# ---------------------------------------------------------------------------

def _image_grid(cell, r_max):
    """Lattice translations n (integer, fractional units) that can bring a
    minimum-image vector within r_max: with |f_k| <= 1/2 after rounding and
    |(f + n)_k| <= r_max / w_k (w_k the face-to-face width), |n_k| <=
    floor(r_max / w_k + 1/2). Exact for any triclinic cell."""
    w = perpendicular_widths(cell)
    n = np.floor(r_max / w + 0.5).astype(int)
    g = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij"), -1)
    return g.reshape(-1, 3).astype(np.float64)


def radial_distribution(frames, cell, species=None, pair=None, r_max=None, n_bins=100):
    """Radial distribution function g(r) of a periodic system.

    frames: (F, N, 3) or (N, 3) positions, A. cell: (3, 3) A, lattice
    vectors as rows (orthorhombic or triclinic, fixed over the frames).
    species: (N,) atomic numbers; pair=(Z1, Z2) selects the partial g_12
    (None: all atoms). r_max (A; default half the smallest face-to-face
    width) and n_bins. Returns bin centres r (n_bins,) A and g (n_bins,).

    Every periodic image within r_max counts, so r_max may exceed half the
    box width: a pair then contributes at several distances, and beyond
    the shortest lattice vector an atom also meets its own images (the
    periodic crystal's true neighbour shells). Normalisation: counts of
    ordered pairs (i in set 1, j in set 2, j != i unless an image),
    divided by F * n_pairs / V * (4 pi / 3)(r_hi^3 - r_lo^3) with
    n_pairs = N1 N2 - (atoms in both sets), so an ideal gas gives g = 1
    (below the shortest lattice vector) and the running coordination
    number is rho * integral g 4 pi r^2 dr with rho = n_pairs / (N1 V)
    (see :func:`coordination_number`). Frames are vmapped in batches."""
    frames = jnp.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[-1] != 3:
        raise InputError(f"frames must have shape (F, N, 3) in A, got {frames.shape}")
    n_atoms = frames.shape[1]
    try:
        cell = np.asarray(cell, dtype=np.float64)
    except Exception:
        raise InputError("the RDF needs a concrete (3, 3) cell, not a traced one") from None
    if cell.shape != (3, 3):
        raise InputError(f"cell must have shape (3, 3) in A, got {cell.shape}")
    vol = abs(np.linalg.det(cell))
    if vol < 1e-9:
        raise InputError("the RDF needs a periodic cell with nonzero volume")
    if pair is None:
        sel1 = sel2 = np.arange(n_atoms)
    else:
        if species is None:
            raise InputError("pair=(Z1, Z2) needs the species (atomic numbers)")
        species = np.asarray(species)
        if species.shape != (n_atoms,):
            raise InputError(f"species must have shape ({n_atoms},), got {species.shape}")
        if len(pair) != 2:
            raise InputError(f"pair must be two atomic numbers, got {pair!r}")
        sel1 = np.nonzero(species == pair[0])[0]
        sel2 = np.nonzero(species == pair[1])[0]
        if sel1.size == 0 or sel2.size == 0:
            raise InputError(f"no atoms of species {pair[0] if sel1.size == 0 else pair[1]} for the RDF")
    if r_max is None:
        r_max = 0.5 * float(perpendicular_widths(cell).min())
    r_max = float(r_max)
    if not r_max > 0:
        raise InputError(f"r_max must be positive (A), got {r_max}")
    n_bins = int(n_bins)
    if n_bins < 1:
        raise InputError(f"n_bins must be a positive integer, got {n_bins}")

    dtype = frames.dtype
    shifts = jnp.asarray(_image_grid(cell, r_max), dtype=dtype)             # (M, 3)
    zero_shift = jnp.all(shifts == 0, axis=-1)                               # (M,)
    same = jnp.asarray(sel1[:, None] == sel2[None, :])                       # (N1, N2)
    cell_j = jnp.asarray(cell, dtype=dtype)
    inv = jnp.asarray(np.linalg.inv(cell), dtype=dtype)
    dr_bin = r_max / n_bins
    i1, i2 = jnp.asarray(sel1), jnp.asarray(sel2)
    exclude = same[:, :, None] & zero_shift[None, None, :]                  # i == j, no image

    def histogram(pos):
        d = pos[i2][None, :, :] - pos[i1][:, None, :]                       # (N1, N2, 3)
        f = d @ inv
        f = f - jnp.round(f)
        v = (f[:, :, None, :] + shifts[None, None]) @ cell_j                 # (N1, N2, M, 3)
        r = jnp.sqrt(jnp.sum(v * v, axis=-1))
        b = jnp.floor(r / dr_bin).astype(jnp.int32)
        b = jnp.where((r < r_max) & ~exclude, b, n_bins)
        return jnp.bincount(b.reshape(-1), length=n_bins + 1)[:n_bins]

    per_frame = sel1.size * sel2.size * shifts.shape[0]
    batch = int(max(1, min(frames.shape[0], 2 ** 24 // max(per_frame, 1))))
    counts = jax.lax.map(histogram, frames, batch_size=batch)
    counts = jnp.sum(counts, axis=0).astype(jnp.result_type(float))

    edges = np.arange(n_bins + 1) * dr_bin
    shell = 4.0 * np.pi / 3.0 * (edges[1:] ** 3 - edges[:-1] ** 3)
    n_pairs = sel1.size * sel2.size - int(np.intersect1d(sel1, sel2).size)
    ideal = frames.shape[0] * n_pairs / vol * shell
    r = 0.5 * (edges[1:] + edges[:-1])
    return jnp.asarray(r), counts / jnp.asarray(ideal)


def coordination_number(r, g, density, r_cut):
    """Running coordination number n(r_cut) = density * sum over bins with
    centre < r_cut of g 4 pi r^2 dr (exact shell volumes of uniform bins).

    r (A) bin centres and g from :func:`radial_distribution`; density
    (A^-3) = n_pairs / (N1 V) as defined there (for like pairs (N - 1)/V)."""
    r = np.asarray(r, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    dr = r[1] - r[0] if r.size > 1 else 2.0 * r[0]
    lo, hi = r - 0.5 * dr, r + 0.5 * dr
    shell = 4.0 * np.pi / 3.0 * (hi ** 3 - lo ** 3)
    return float(density * np.sum((g * shell)[r < r_cut]))


# ---------------------------------------------------------------------------
# Mean-square displacement
# ---------------------------------------------------------------------------

def mean_square_displacement(frames, max_lag=None):
    """MSD(m) = < |r_i(t + m) - r_i(t)|^2 >, A^2, averaged over atoms and
    all time origins, for lags m = 0 .. max_lag - 1 frames (default F).

    frames: (F, N, 3) *unwrapped* positions, A (jaxpot integrators never
    wrap). O(F log F) by FFT (Calandrini et al., Collection SFN 12, 201
    (2011)): MSD(m) = S1(m) - 2 S2(m), S2 the position autocorrelation and
    S1(m) = (sum_{k < F-m} |r_k|^2 + sum_{k >= m} |r_k|^2) / (F - m).
    Positions are first centred per atom (MSD is shift invariant) to avoid
    cancellation in float32."""
    x = jnp.asarray(frames)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise InputError(f"frames must have shape (F, N, 3) in A, got {x.shape}")
    F = x.shape[0]
    if F < 1:
        raise InputError("need at least one frame for the MSD")
    max_lag = F if max_lag is None else int(max_lag)
    if not 1 <= max_lag <= F:
        raise InputError(f"max_lag must be between 1 and the number of frames {F}, got {max_lag}")
    x = x - jnp.mean(x, axis=0, keepdims=True)
    d2 = jnp.sum(x * x, axis=-1)                                              # (F, N)
    prefix = jnp.concatenate([jnp.zeros((1, d2.shape[1]), d2.dtype), jnp.cumsum(d2, axis=0)])
    m = jnp.arange(F)
    count = (F - m)[:, None].astype(d2.dtype)
    s1 = (prefix[F - m] + (prefix[F] - prefix[m])) / count
    nfft = 1 << int(np.ceil(np.log2(2 * F)))
    fx = jnp.fft.rfft(x, n=nfft, axis=0)
    ac = jnp.fft.irfft(jnp.sum(fx * jnp.conj(fx), axis=-1), n=nfft, axis=0)[:F]
    s2 = ac.astype(d2.dtype) / count
    msd = jnp.mean(s1 - 2.0 * s2, axis=1)
    return msd[:max_lag]
