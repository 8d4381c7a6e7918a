"""Checks of the observables against analytic references: AR(1) variance of
the mean, ideal-gas and crystal radial distribution functions, ideal-gas
pressure, random-walk and ballistic mean-square displacements."""
import numpy as np
import pytest
from scipy.signal import lfilter

import jaxpot  # noqa: F401
from jaxpot.dynamics import observables as O
from jaxpot.system import InputError
from jaxpot.units import KB


# ---------------------------------------------------------------------------
# Block averaging
# ---------------------------------------------------------------------------

def _ar1(rng, phi, n, r):
    """r stationary AR(1) series x_t = phi x_{t-1} + e_t, e ~ N(0, 1)."""
    x = lfilter([1.0], [1.0, -phi], rng.normal(size=(r, n)), axis=1)
    x0 = rng.normal(size=r) / np.sqrt(1 - phi ** 2)
    return x + x0[:, None] * phi ** np.arange(1, n + 1)[None, :]


def _ar1_var_of_mean(phi, n):
    """Exact Var(mean) = (sigma_x^2/n^2) [n + 2 sum_k (n-k) phi^k],
    sigma_x^2 = 1/(1 - phi^2)."""
    k = np.arange(1, n)
    return (n + 2 * np.sum((n - k) * phi ** k)) / n ** 2 / (1 - phi ** 2)


def test_block_average_sem_matches_exact_ar1_variance_of_the_mean():
    """phi = 0.9 (integrated correlation time 19 samples): the naive SEM is
    low by sqrt((1-phi)/(1+phi)) = 0.23; blocking recovers the exact
    Var(mean). Over R = 100 series the mean of sem^2 has a relative
    standard error ~ sqrt(2 (1 + 2 rho)/n_blocks)/sqrt(R) ~ 1.5%; the test
    allows 4 of those plus 2% for the second-order (tau/B)^2 bias left by
    the first-order residual-correlation correction, and checks the 95% interval coverage binomially."""
    rng = np.random.default_rng(0)
    phi, n, R = 0.9, 2 ** 14, 100
    x = _ar1(rng, phi, n, R)
    var = _ar1_var_of_mean(phi, n)
    res = [O.blocking(xi) for xi in x]
    sem2 = np.array([r.sem ** 2 for r in res])
    rel_se = np.std(sem2) / np.sqrt(R) / var
    assert abs(sem2.mean() / var - 1) < 4 * rel_se + 0.02, (sem2.mean() / var, rel_se)
    naive = np.array([r.naive_sem for r in res])
    np.testing.assert_allclose(np.mean(naive ** 2) / var, (1 - phi) / (1 + phi), rtol=0.1)
    assert all(r.converged and r.block_size >= 16 for r in res)
    # coverage of mean +- 1.96 sem (true mean 0): 95% +- 4 binomial sigma
    cover = np.mean([abs(r.mean) < 1.96 * r.sem for r in res])
    assert abs(cover - 0.95) < 4 * np.sqrt(0.95 * 0.05 / R)
    m, s = O.block_average(x[0])
    assert m == res[0].mean and s == res[0].sem


def test_block_average_of_white_noise_keeps_single_samples():
    rng = np.random.default_rng(1)
    n, R = 5000, 100
    x = rng.normal(size=(R, n))
    res = [O.blocking(xi) for xi in x]
    sem2 = np.array([r.sem ** 2 for r in res])
    rel_se = np.std(sem2) / np.sqrt(R) * n
    assert abs(sem2.mean() * n - 1) < 4 * rel_se
    assert np.median([r.block_size for r in res]) == 1


def test_block_average_rejects_bad_input():
    with pytest.raises(InputError, match="1-D"):
        O.block_average(np.zeros((10, 2)))
    with pytest.raises(InputError, match="at least 4"):
        O.block_average([1.0, 2.0])
    with pytest.raises(InputError, match="non-finite"):
        O.block_average([1.0, np.nan, 2.0, 3.0])


# ---------------------------------------------------------------------------
# Radial distribution function
# ---------------------------------------------------------------------------

def _shortest_lattice_vector(cell):
    g = np.stack(np.meshgrid(*[np.arange(-3, 4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    g = g[np.any(g != 0, axis=1)]
    return np.min(np.linalg.norm(g @ cell, axis=1))


def test_rdf_of_ideal_gas_is_one_in_triclinic_cell_beyond_half_box():
    """Uniform random points in a skewed cell: g = 1 in every bin. r_max is
    beyond half the face-to-face width (several images of one pair count)
    but below the shortest lattice vector (no self images). Pair
    displacements of uniform points on a torus are pairwise independent,
    so the unordered pair count per bin is binomial with mean mu and g has
    standard error ~ 1/sqrt(mu): chi^2 over bins must be n_bins within
    4 sqrt(2 n_bins)."""
    from jaxpot.space import perpendicular_widths

    rng = np.random.default_rng(2)
    cell = np.array([[10.0, 0.0, 0.0], [3.0, 9.0, 0.0], [2.0, 1.5, 8.5]])
    n, F, n_bins = 120, 30, 60
    r_max = 0.95 * _shortest_lattice_vector(cell)
    assert r_max > 0.5 * perpendicular_widths(cell).min()
    frames = rng.uniform(size=(F, n, 3)) @ cell
    r, g = O.radial_distribution(frames, cell, r_max=r_max, n_bins=n_bins)
    r, g = np.asarray(r), np.asarray(g)
    edges = np.linspace(0, r_max, n_bins + 1)
    shell = 4 * np.pi / 3 * np.diff(edges ** 3)
    mu = F * n * (n - 1) / 2 / abs(np.linalg.det(cell)) * shell
    keep = mu > 5
    chi2 = np.sum(((g - 1) ** 2 * mu)[keep])
    k = keep.sum()
    assert abs(chi2 - k) < 4 * np.sqrt(2 * k), (chi2, k)
    np.testing.assert_allclose(r, 0.5 * (edges[1:] + edges[:-1]))


@pytest.mark.parametrize("reps", [(3, 3, 3), (1, 1, 1)])
def test_rdf_of_fcc_crystal_integrates_to_12_and_18_neighbours(reps):
    """fcc: 12 nearest neighbours at a/sqrt(2), 6 more at a. The primitive
    (triclinic) 3x3x3 cell with r_max beyond half its width, and the
    4-atom conventional cell whose second shell consists of each atom's own
    periodic images (r = a = box length): both must count 12 and 18."""
    from ase.build import bulk

    a = 3.6
    atoms = bulk("Cu", "fcc", a=a, cubic=reps == (1, 1, 1)).repeat(reps)
    rng = np.random.default_rng(3)
    frames = atoms.positions[None] + 0.03 * rng.normal(size=(4, len(atoms), 3))
    r, g = O.radial_distribution(frames, atoms.cell.array, atoms.numbers, pair=(29, 29),
                                 r_max=1.15 * a, n_bins=230)
    rho = (len(atoms) - 1) / atoms.get_volume()
    assert O.coordination_number(r, g, rho, 0.85 * a) == pytest.approx(12.0, abs=1e-9)
    assert O.coordination_number(r, g, rho, 1.1 * a) == pytest.approx(18.0, abs=1e-9)


def test_partial_rdf_of_rocksalt_counts_unlike_and_like_neighbours():
    """NaCl: each Na has 6 Cl at a/2 and 12 Na at a/sqrt(2)."""
    from ase.build import bulk

    a = 5.64
    atoms = bulk("NaCl", "rocksalt", a=a).repeat((2, 2, 2))
    v = atoms.get_volume()
    n_na = int(np.sum(atoms.numbers == 11))
    r, g = O.radial_distribution(atoms.positions, atoms.cell.array, atoms.numbers,
                                 pair=(11, 17), r_max=0.6 * a, n_bins=120)
    assert O.coordination_number(r, g, n_na / v, 0.6 * a) == pytest.approx(6.0, abs=1e-9)
    r, g = O.radial_distribution(atoms.positions, atoms.cell.array, atoms.numbers,
                                 pair=(11, 11), r_max=0.8 * a, n_bins=160)
    assert O.coordination_number(r, g, (n_na - 1) / v, 0.8 * a) == pytest.approx(12.0, abs=1e-9)
    with pytest.raises(InputError, match="no atoms of species"):
        O.radial_distribution(atoms.positions, atoms.cell.array, atoms.numbers, pair=(11, 8))
    with pytest.raises(InputError, match="nonzero volume"):
        O.radial_distribution(atoms.positions, np.zeros((3, 3)))


# ---------------------------------------------------------------------------
# Pressure
# ---------------------------------------------------------------------------

def test_ideal_gas_pressure_and_units():
    """P V = N kB T for K = (3/2) N kB T and zero virial; 1 eV/A^3 =
    e * 1e30 Pa = 1.602176634e6 bar = 160.2176634 GPa (SI 2019)."""
    n, T, vol = 1000, 300.0, 1.0e5
    K = 1.5 * n * KB * T
    p = float(O.pressure(K, np.zeros((3, 3)), vol))
    assert p == pytest.approx(n * KB * T / vol, rel=1e-12)
    assert O.EV_A3_TO_BAR == pytest.approx(1.602176634e6, rel=1e-6)
    assert O.EV_A3_TO_GPA == pytest.approx(160.2176634, rel=1e-6)
    # a volume-dependent energy U = A / V: W = -dU/d(eps) = (A/V) * I and
    # P = -dU/dV = A / V^2
    A = 3.0e4
    W = (A / vol) * np.eye(3)
    assert float(O.pressure(0.0, W, vol)) == pytest.approx(A / vol ** 2, rel=1e-12)


# ---------------------------------------------------------------------------
# Mean-square displacement
# ---------------------------------------------------------------------------

def test_msd_matches_brute_force_and_random_walk_law():
    """Gaussian random walk with per-component step sigma: MSD(m) = 3 sigma^2 m
    exactly in expectation; the FFT result equals the direct average."""
    rng = np.random.default_rng(4)
    F, n, sigma = 200, 400, 0.1
    x = np.cumsum(rng.normal(scale=sigma, size=(F, n, 3)), axis=0) + 50.0
    msd = np.asarray(O.mean_square_displacement(x, max_lag=50))
    direct = [np.mean(np.sum((x[m:] - x[:F - m]) ** 2, -1)) for m in range(50)]
    np.testing.assert_allclose(msd, direct, rtol=1e-10, atol=1e-12)
    # per-atom time-averaged MSD at lag m scatters across atoms; n atoms
    # are independent: standard error from their spread
    m = 10
    per_atom = np.mean(np.sum((x[m:] - x[:F - m]) ** 2, -1), axis=0)
    assert abs(msd[m] - 3 * sigma ** 2 * m) < 4 * per_atom.std() / np.sqrt(n)


def test_msd_of_ballistic_motion_is_quadratic():
    rng = np.random.default_rng(5)
    v = rng.normal(size=(10, 3))
    t = np.arange(30)[:, None, None]
    x = 1.0 + v[None] * t
    msd = np.asarray(O.mean_square_displacement(x))
    np.testing.assert_allclose(msd, np.mean(np.sum(v ** 2, -1)) * np.arange(30) ** 2, rtol=1e-9, atol=1e-9)
    with pytest.raises(InputError, match="max_lag"):
        O.mean_square_displacement(x, max_lag=31)
