"""Ring-polymer path-integral molecular dynamics: PIMD, RPMD and TRPMD.

Units: positions A, momenta amu A/fs, forces eV/A, energies eV, time fs,
kT eV, masses amu, frequencies 1/fs.

The ring polymer (i-PI convention, Ceriotti et al., JCP 133, 124104 (2010)):
P replicas ("beads") of the N-atom system carry *physical* masses m_i and are
sampled at P times the physical temperature, beta_P = beta / P, with

    H_P = sum_j [ sum_i p_ij^2 / (2 m_i) + V(q_j) ]
          + sum_i sum_j (1/2) m_i w_P^2 |q_ij - q_i,j+1|^2,   w_P = P kT / hbar.

The physical potential V is mapped over the bead axis (state arrays have
shape (P, N, 3); ``vmap`` on accelerators, bead by bead on CPU, see
:func:`bead_energy_and_forces`); the spring term is quadratic and diagonal in the ring-polymer
normal modes (frequencies w_k = 2 w_P sin(k pi / P)), so it is propagated
exactly (or with the Cayley approximation, Korol, Bou-Rabee & Miller,
JCP 151, 124103 (2019); JCP 152, 104102 (2020)) and never as a force.

Unit bookkeeping: kinetic energy (eV) = p^2 / (2 m) * MVV2E, so a force
F (eV/A) changes momenta at dp/dt = F / MVV2E (amu A/fs^2), and Maxwell-
Boltzmann momenta at temperature P kT have variance m P kT / MVV2E.

Time-step conventions (dt is the full MD step):
  - ``splitting="baoab"`` (default): B(dt/2) A(dt/2) O(dt) A(dt/2) B(dt/2),
    Leimkuhler & Matthews, Appl. Math. Res. Express 2013, 34 (2013); in the
    O step c1 = exp(-gamma dt).
  - ``splitting="obabo"``: O(dt/2) B(dt/2) A(dt) B(dt/2) O(dt/2), Bussi &
    Parrinello, PRE 75, 056707 (2007) (i-PI's default); c1 = exp(-gamma dt/2).
  B: kick by the physical forces; A: free ring-polymer evolution in normal
  modes; O: thermostat acting on normal-mode momenta.

Why BAOAB is the default: OBABO samples the stiff internal modes' positions
with an O(dt^2) bias that grows with w_k, which biases the primitive kinetic
energy estimator low (about 5% at P = 32 for a stiff oscillator, as seen
with i-PI); BAOAB's configurational sampling is much closer to exact,
because the noise is injected between the two half drifts. For an isotropic
oscillator with beta hbar w = 8, P = 32, dt = 0.5 fs, the exact stationary
distributions of the discrete schemes (tests/test_pimd.py) give primitive
estimator biases of -6.1% (OBABO), -1.4% (BAOAB, exact drift) and 0
(BAOAB with sqrt-Cayley drifts, "BCOCB", exact for any harmonic system).

Design notes:
  - The force evaluation is one function ``force_fn(positions (P,N,3), **kw)
    -> (energies (P,), forces (P,N,3))``, built by mapping a one-bead
    energy function over the beads by default; ring-polymer contraction
    (:func:`contracted_energy_and_forces`, ``[md] contraction``) replaces it
    without touching the integrator, as multiple time stepping could.
  - Keyword arguments of ``init_fn``/``step_fn`` (e.g. ``neighbors=nbr``)
    pass through to the energy function and are shared by all beads; build
    such neighbor lists from the centroids with a skin that covers the
    ring-polymer spread (see ``radius_of_gyration`` in :func:`estimators`).
  - Beads and independent replicas are plain array axes; :func:`shard_beads`
    places them on a device mesh and XLA inserts the collectives that the
    normal-mode transform needs (one program, no explicit communication).
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ..system import InputError, check_choice, positive_number
from ..units import HBAR, KB, MVV2E

SPLITTINGS = ("baoab", "obabo")
PROPAGATORS = ("exact", "cayley")
THERMOSTATS = ("pile_l", "pile_g", "langevin", "none")
NM_METHODS = ("auto", "matrix", "fft")

# Above this bead number the FFT transform (P log P) replaces the dense
# real-DFT matrix (P^2); below it the matmul is faster on every backend.
_FFT_FROM_BEADS = 64


def _acc_dtype():
    """float64 for accumulated energies when x64 is enabled, else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------

@struct.dataclass
class PIMDState:
    """Ring-polymer state (a pytree).

    positions: (P, N, 3) A; momenta: (P, N, 3) amu A/fs; forces: (P, N, 3)
    eV/A from the physical potential only (no springs); energies: (P,) eV,
    physical potential of each bead; masses: (N,) amu; key: PRNG key;
    heat: scalar eV, total kinetic energy the thermostat has *added* to the
    ring polymer since init (so H_P - heat is conserved); kT: scalar eV,
    the physical temperature.
    """

    positions: jnp.ndarray
    momenta: jnp.ndarray
    forces: jnp.ndarray
    energies: jnp.ndarray
    masses: jnp.ndarray
    key: jnp.ndarray
    heat: jnp.ndarray
    kT: jnp.ndarray

    @property
    def n_beads(self) -> int:
        return int(self.positions.shape[-3])

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[-2])


# --------------------------------------------------------------------------
# Normal modes
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Forces
# --------------------------------------------------------------------------

def bead_energy_and_forces(energy_fn: Callable, *, bead_batch: int = 0, groups: int = 1) -> Callable:
    """From a one-bead ``energy_fn(positions (N,3) A, **kw) -> eV`` build
    ``force_fn(positions (P,N,3), **kw) -> (energies (P,) eV, forces (P,N,3) eV/A)``;
    keyword arguments (neighbor lists, ...) are shared by all beads. Forces
    are -grad, by autodiff.

    ``bead_batch``: beads vmapped together in each step of a sequential map
    over the bead axis (0: one at a time on CPU when a ``neighbors`` keyword
    is passed, all at once otherwise and on other backends);
    ``groups``: equal bead groups vmapped side by side (one per device when
    beads are sharded). See :func:`jaxpot.mapping.map_leading` for why."""
    from ..mapping import check_batch, map_leading

    vg = jax.value_and_grad(energy_fn)
    bead_batch = check_batch("bead_batch", bead_batch)
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise InputError(f"groups must be an integer >= 1, got {groups!r}")

    def force_fn(positions, **kwargs):
        # a neighbor list means gathers, which XLA:CPU runs faster bead by bead
        e, g = map_leading(lambda x: vg(x, **kwargs), positions, batch=bead_batch, groups=groups,
                           gathers=kwargs.get("neighbors") is not None)
        return e, -g

    return force_fn


def contraction_matrix(n_beads: int, n_contracted: int) -> np.ndarray:
    """Ring-polymer contraction matrix T (P', P), float64: q' = T q.

    The P' contracted beads are the P-bead path's Fourier series, truncated
    to its P' lowest-frequency normal modes (the centroid, the cosine/sine
    pairs with m < P'/2, and for even P' the cosine of m = P'/2), evaluated
    at the imaginary times k'/P' (i-PI's ring-polymer contraction,
    Markland & Manolopoulos, JCP 129, 024105 (2008)). P' = P gives the
    identity and P' = 1 the centroid; every row sums to 1."""
    P, Pc = int(n_beads), int(n_contracted)
    if P < 1 or not 1 <= Pc <= P:
        raise InputError(f"contracted bead number must be between 1 and {P}, got {n_contracted}")
    C = normal_mode_matrix(P)
    tau = np.arange(Pc)[:, None] / Pc                       # new imaginary times, in units of beta hbar
    E = np.zeros((Pc, P))
    E[:, 0] = 1.0 / np.sqrt(P)
    for m in range(1, Pc // 2 + 1):
        if 2 * m == P:                                       # Nyquist of the full ring (P' = P even)
            E[:, m] = np.cos(np.pi * P * tau[:, 0]) / np.sqrt(P)
            continue
        E[:, m] = np.sqrt(2.0 / P) * np.cos(2.0 * np.pi * m * tau[:, 0])
        if 2 * m < Pc:                                       # the sine partner (not at P'/2):
            # column P - m of C is sin(2 pi (P - m) j / P) = -sin(2 pi m j / P)
            E[:, P - m] = -np.sqrt(2.0 / P) * np.sin(2.0 * np.pi * m * tau[:, 0])
    return E @ C.T


def contracted_energy_and_forces(terms, n_beads: int, *, bead_batch: int = 0, groups: int = 1) -> Callable:
    """Ring-polymer contraction: ``force_fn`` for a potential that is a sum
    of terms, each evaluated on its own number of beads.

    terms: sequence of ``(energy_fn, P_t)``, ``energy_fn(positions (N,3) A,
    **kw) -> eV`` for one bead and P_t contracted beads (0 or P: every bead).
    The ring-polymer potential is sum_t (P / P_t) sum_k' V_t(q'_k'), q' =
    T_t q (:func:`contraction_matrix`); its forces on the P beads are
    -(P / P_t) T_t^T dV_t/dq' (autodiff forces of each term, chained through
    the linear contraction). Each bead's energy gets the contracted terms'
    mean over their beads, so bead sums and means of ``energies`` are the
    contracted ring-polymer potential and its estimate of <V>. Expensive,
    smooth terms (long-range electrostatics, intermolecular forces) on few
    beads, stiff cheap ones (bonds) on all: the cost drops roughly by P/P_t
    for the contracted terms."""
    from ..mapping import check_batch, map_leading

    P = int(n_beads)
    bead_batch = check_batch("bead_batch", bead_batch)
    plan = []
    for energy_fn, pt in terms:
        pt = P if int(pt) == 0 else int(pt)
        T = None if pt == P else jnp.asarray(contraction_matrix(P, pt))
        plan.append((jax.value_and_grad(energy_fn), pt, T))

    def force_fn(positions, **kwargs):
        gathers = kwargs.get("neighbors") is not None
        e_tot = jnp.zeros(positions.shape[0], _acc_dtype())
        f_tot = jnp.zeros_like(positions)
        for vg, pt, T in plan:
            q = positions if T is None else jnp.einsum("kj,jnd->knd", T.astype(positions.dtype), positions)
            g_groups = groups if pt % groups == 0 else 1
            e, g = map_leading(lambda x: vg(x, **kwargs), q, batch=bead_batch, groups=g_groups, gathers=gathers)
            if T is None:
                e_tot = e_tot + e.astype(e_tot.dtype)
                f_tot = f_tot - g.astype(f_tot.dtype)
            else:
                e_tot = e_tot + jnp.mean(e.astype(e_tot.dtype))
                f_tot = f_tot - (P / pt) * jnp.einsum("kj,knd->jnd", T.astype(g.dtype), g).astype(f_tot.dtype)
        return e_tot, f_tot

    return force_fn


# --------------------------------------------------------------------------
# Thermostat pieces
# --------------------------------------------------------------------------

def _kinetic(p, masses):
    """sum p^2 / (2 m) * MVV2E, eV, accumulated in float64 (when enabled)."""
    acc = _acc_dtype()
    return jnp.sum((p.astype(acc) ** 2) / (2.0 * masses.astype(acc)[..., :, None])) * MVV2E


def _kinetic_change(p_old, p_new, masses):
    """K(p_new) - K(p_old), eV, as sum (p'-p)(p'+p)/2m to avoid cancellation."""
    acc = _acc_dtype()
    a, b = p_old.astype(acc), p_new.astype(acc)
    return jnp.sum((b - a) * (b + a) / (2.0 * masses.astype(acc)[:, None])) * MVV2E


def _langevin_o(p_nm, masses, c1, kT_P, key):
    """Exact Ornstein-Uhlenbeck step on normal-mode momenta (P, N, 3):
    p <- c1_k p + sqrt(m kT_P (1 - c1_k^2) / MVV2E) xi, c1_k = exp(-gamma_k h)
    (PILE, Ceriotti et al., JCP 133, 124104 (2010), Eq. 27 with our
    h = dt (BAOAB) or dt/2 (OBABO)). The normal-mode transform is orthogonal,
    so the noise may be drawn directly in normal modes."""
    xi = jax.random.normal(key, p_nm.shape, p_nm.dtype)
    sigma = jnp.sqrt(masses[None, :, None] * kT_P / MVV2E * (1.0 - c1[:, None, None] ** 2))
    return c1[:, None, None] * p_nm + sigma * xi


def _csvr_scale(kinetic, n_dof: int, kT_P, h, tau, key):
    """Bussi-Donadio-Parrinello stochastic velocity rescaling factor
    (JCP 126, 014101 (2007), Eq. A7): the kinetic energy K of n_dof degrees
    of freedom is resampled as

        K' = c K + (1 - c) Kbar/Nf (R1^2 + S) + 2 R1 sqrt(c (1 - c) K Kbar / Nf),

    c = exp(-h/tau), Kbar = Nf kT_P / 2, R1 ~ N(0,1), S ~ chi^2(Nf - 1);
    momenta are scaled by alpha = sqrt(K'/K) with the sign of
    R1 + sqrt(c Nf K / ((1 - c) Kbar)) (time-reversible choice, Bussi's code)."""
    k1, k2 = jax.random.split(key)
    dtype = kinetic.dtype
    c = jnp.exp(-h / tau).astype(dtype)
    kbar = 0.5 * n_dof * kT_P
    r1 = jax.random.normal(k1, (), dtype)
    if n_dof > 1:
        s = 2.0 * jax.random.gamma(k2, 0.5 * (n_dof - 1), (), dtype)
    else:
        s = jnp.zeros((), dtype)
    k_safe = jnp.where(kinetic > 0, kinetic, 1.0)
    k_new = (c * k_safe + (1.0 - c) * kbar / n_dof * (r1 ** 2 + s)
             + 2.0 * r1 * jnp.sqrt(c * (1.0 - c) * k_safe * kbar / n_dof))
    alpha = jnp.sqrt(k_new / k_safe)
    sign = jnp.where(r1 + jnp.sqrt(c * n_dof * k_safe / ((1.0 - c) * kbar)) < 0, -1.0, 1.0)
    return jnp.where(kinetic > 0, sign * alpha, 1.0)


def _remove_centroid_com(p_nm, masses):
    """Zero the total momentum. Internal modes sum to zero over beads, so the
    whole ring polymer's momentum is sqrt(P) * sum_i p_nm[0, i]; subtract
    the mass-weighted share from each atom's centroid mode."""
    m = masses[:, None]
    v_com = jnp.sum(p_nm[0], axis=0) / jnp.sum(masses)
    return p_nm.at[0].add(-m * v_com[None, :])


# --------------------------------------------------------------------------
# The integrator
# --------------------------------------------------------------------------

def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def pimd(energy_fn: Optional[Callable], dt: float, kT: float, n_beads: int, *,
         thermostat: str = "pile_l", tau: float = 100.0, pile_lambda: float = 0.5,
         splitting: str = "baoab", propagator: str = "exact", centroid_thermostat: bool = True,
         remove_com: bool = False, force_fn: Optional[Callable] = None,
         nm_method: str = "auto", sample_internal_modes: bool = False,
         bead_batch: int = 0, bead_groups: int = 1):
    """Ring-polymer MD (JAX MD style): returns ``(init_fn, step_fn)``.

    energy_fn: ``(positions (N,3) A, **kw) -> eV`` for one bead (mapped
        over beads); may be None if ``force_fn`` is given.
    dt: time step, fs. kT: physical temperature, eV (beads run at P kT).
    n_beads: P >= 1 (P = 1 is classical Langevin/NVE MD).
    thermostat: "pile_l" (Langevin on every normal mode, gamma_0 = 1/tau,
        gamma_k = 2 pile_lambda w_k), "pile_g" (CSVR on the centroid's
        kinetic energy with time constant tau, Langevin as PILE-L on the
        internal modes), "langevin" (gamma = 1/tau on every mode) or "none"
        (NVE ring polymer, RPMD).
    tau: centroid thermostat time constant, fs. pile_lambda: PILE scaling.
    centroid_thermostat: False leaves the centroid unthermostatted
        (PILE-L with it False is TRPMD).
    splitting: "baoab" (default) or "obabo"; propagator: "exact" or
        "cayley" (BCOCB with sqrt-Cayley half steps for BAOAB, Cayley full
        step for OBABO). See the module docstring for the dt conventions.
    remove_com: zero the total momentum at init and after each thermostat
        step (the heat this removes is booked in ``heat``).
    force_fn: ``(positions (P,N,3), **kw) -> (energies (P,) eV, forces
        (P,N,3) eV/A)`` to replace the default mapped autodiff forces
        (ring-polymer contraction, multiple time stepping).
    nm_method: "auto" | "matrix" | "fft" normal-mode transform.
    bead_batch, bead_groups: how the default force function maps the bead
        axis (see :func:`bead_energy_and_forces`; 0 = automatic by backend).
    sample_internal_modes: when ``init_fn`` gets (N,3) positions, draw the
        internal normal modes from the free ring polymer's Boltzmann
        distribution at P kT (variance P kT / (m w_k^2 MVV2E)) instead of
        starting all beads on top of each other.

    ``init_fn(key, positions (N,3) or (P,N,3), masses (N,), **kw) -> PIMDState``
    draws Maxwell-Boltzmann momenta at P kT. ``step_fn(state, **kw)`` takes
    one step; ``kT=`` among its keywords changes the temperature (eV), all
    other keywords go to the energy function.
    """
    dt = positive_number("dt", dt, "fs")
    kT = positive_number("kT", kT, "eV")
    if isinstance(n_beads, bool) or not isinstance(n_beads, (int, np.integer)) or n_beads < 1:
        raise InputError(f"n_beads must be an integer >= 1, got {n_beads!r}")
    P = int(n_beads)
    check_choice("thermostat", thermostat, THERMOSTATS)
    check_choice("splitting", splitting, SPLITTINGS)
    check_choice("propagator", propagator, PROPAGATORS)
    _resolve_method(nm_method, P)
    if thermostat != "none":
        tau = positive_number("tau", tau, "fs")
        pile_lambda = positive_number("pile_lambda", pile_lambda, "dimensionless")
    if force_fn is None:
        if energy_fn is None or not callable(energy_fn):
            raise InputError("pimd needs an energy function energy_fn(positions, **kwargs) -> eV")
        force_fn = bead_energy_and_forces(energy_fn, bead_batch=bead_batch, groups=bead_groups)

    h_o = dt if splitting == "baoab" else 0.5 * dt   # duration of one O step
    a_fraction = 0.5 if splitting == "baoab" else 1.0
    tnm = lambda x: to_normal_modes(x, nm_method)
    fnm = lambda x: from_normal_modes(x, nm_method)

    def gammas(w):
        """Friction of each normal mode, 1/fs (PILE: Ceriotti 2010, Eq. 36)."""
        if thermostat == "langevin":
            g = jnp.full_like(w, 1.0 / tau)
        else:
            g = 2.0 * pile_lambda * w
            g = g.at[0].set(1.0 / tau if thermostat == "pile_l" else 0.0)
        if not centroid_thermostat:
            g = g.at[0].set(0.0)
        return g

    def thermostat_o(p_nm, masses, kT_now, key):
        """O step of duration h_o on normal-mode momenta; returns (p_nm, dK eV)."""
        if thermostat == "none":
            return p_nm, jnp.zeros((), _acc_dtype())
        p_old = p_nm
        kT_P = P * kT_now
        w = normal_mode_frequencies(P, kT_now)
        c1 = jnp.exp(-gammas(w) * h_o).astype(p_nm.dtype)
        k_lang, k_csvr = jax.random.split(key)
        p_nm = _langevin_o(p_nm, masses, c1, kT_P.astype(p_nm.dtype), k_lang)
        if thermostat == "pile_g" and centroid_thermostat:
            n_dof = 3 * masses.shape[0] - (3 if remove_com else 0)
            if n_dof > 0:
                kc = _kinetic(p_nm[0], masses)
                alpha = _csvr_scale(kc, n_dof, kT_P.astype(kc.dtype), h_o, tau, k_csvr)
                p_nm = p_nm.at[0].multiply(alpha.astype(p_nm.dtype))
        if remove_com:
            p_nm = _remove_centroid_com(p_nm, masses)
        return p_nm, _kinetic_change(p_old, p_nm, masses)

    def kick(p, f, h):
        return p + (h / MVV2E) * f

    def init_fn(key, positions, masses, **kwargs):
        positions = jnp.asarray(positions)
        if not jnp.issubdtype(positions.dtype, jnp.floating):
            positions = positions.astype(_acc_dtype())
        dtype = positions.dtype
        masses = jnp.asarray(masses, dtype)
        if positions.ndim == 2:
            if positions.shape[-1] != 3:
                raise InputError(f"positions must have shape (N, 3) or (P, N, 3), got {positions.shape}")
            positions = jnp.broadcast_to(positions[None], (P,) + positions.shape)
            spread = sample_internal_modes and P > 1
        elif positions.ndim == 3:
            if positions.shape[0] != P or positions.shape[-1] != 3:
                raise InputError(
                    f"bead positions must have shape (P={P}, N, 3), got {positions.shape}")
            spread = False
        else:
            raise InputError(f"positions must have shape (N, 3) or (P, N, 3), got {positions.shape}")
        n = positions.shape[1]
        if masses.shape != (n,):
            raise InputError(f"masses must have shape ({n},) to match positions, got {masses.shape}")
        # value checks only on concrete inputs, so init_fn stays jit/vmap-able
        if _concrete(positions) and not bool(jnp.all(jnp.isfinite(positions))):
            raise InputError("positions contain non-finite values")
        if _concrete(masses) and not bool(jnp.all(jnp.isfinite(masses) & (masses > 0))):
            raise InputError("masses must be positive and finite (amu)")
        kT_arr = jnp.asarray(kT, dtype)
        key, k_p, k_q = jax.random.split(key, 3)
        if spread:
            w = normal_mode_frequencies(P, kT_arr)
            safe_w = jnp.where(w > 0, w, 1.0)
            std = jnp.sqrt(P * kT_arr / (masses[None, :, None] * safe_w[:, None, None] ** 2 * MVV2E))
            dq = jnp.where((w > 0)[:, None, None], std * jax.random.normal(k_q, positions.shape, dtype), 0.0)
            positions = positions + fnm(dq)
        std_p = jnp.sqrt(masses[None, :, None] * P * kT_arr / MVV2E)
        momenta = std_p * jax.random.normal(k_p, positions.shape, dtype)
        if remove_com:
            momenta = fnm(_remove_centroid_com(tnm(momenta), masses))
        energies, forces = force_fn(positions, **kwargs)
        return PIMDState(positions=positions, momenta=momenta, forces=forces.astype(dtype),
                         energies=energies, masses=masses, key=key,
                         heat=jnp.zeros((), _acc_dtype()), kT=kT_arr)

    def step_fn(state: PIMDState, **kwargs) -> PIMDState:
        kT_now = kwargs.pop("kT", None)
        dtype = state.positions.dtype
        kT_now = state.kT if kT_now is None else jnp.asarray(kT_now, dtype)
        m = state.masses
        w = normal_mode_frequencies(P, kT_now).astype(dtype)
        coef = _free_coefficients(w, dt, a_fraction, propagator)
        key, k1, k2 = jax.random.split(state.key, 3)
        q, p, heat = state.positions, state.momenta, state.heat

        if splitting == "baoab":
            p = kick(p, state.forces, 0.5 * dt)
            q_nm, p_nm = tnm(q), tnm(p)
            q_nm, p_nm = _rotate(q_nm, p_nm, m, coef)
            p_nm, dk = thermostat_o(p_nm, m, kT_now, k1)
            q_nm, p_nm = _rotate(q_nm, p_nm, m, coef)
            q, p = fnm(q_nm), fnm(p_nm)
            heat = heat + dk
            energies, forces = force_fn(q, **kwargs)
            forces = forces.astype(dtype)
            p = kick(p, forces, 0.5 * dt)
        else:
            if thermostat != "none":
                p_nm, dk = thermostat_o(tnm(p), m, kT_now, k1)
                p, heat = fnm(p_nm), heat + dk
            p = kick(p, state.forces, 0.5 * dt)
            q_nm, p_nm = _rotate(tnm(q), tnm(p), m, coef)
            q, p = fnm(q_nm), fnm(p_nm)
            energies, forces = force_fn(q, **kwargs)
            forces = forces.astype(dtype)
            p = kick(p, forces, 0.5 * dt)
            if thermostat != "none":
                p_nm, dk = thermostat_o(tnm(p), m, kT_now, k2)
                p, heat = fnm(p_nm), heat + dk

        return state.replace(positions=q, momenta=p, forces=forces, energies=energies,
                             key=key, heat=heat, kT=kT_now)

    return init_fn, step_fn


# --------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------

def centroid(state: PIMDState):
    """Ring-polymer centroids (N, 3), A: the bead average of each atom."""
    return jnp.mean(state.positions, axis=-3)


def spring_energy(positions, masses, kT):
    """Ring-polymer spring energy per physical system, eV:
    (1/P) sum_j sum_i (1/2) m_i w_P^2 |q_ij - q_i,j+1|^2 * MVV2E, which is
    the term the primitive estimator subtracts (i-PI's "spring")."""
    acc = _acc_dtype()
    P = positions.shape[0]
    q = positions.astype(acc)
    d = q - jnp.roll(q, -1, axis=0)
    w_p = ring_polymer_frequency(P, jnp.asarray(kT, acc))
    return 0.5 * w_p ** 2 * MVV2E / P * jnp.sum(masses.astype(acc)[None, :, None] * d * d)


def estimators(state: PIMDState, kT=None, *, virial=None, volume=None) -> dict:
    """Path-integral estimators of one state (jit-able, reduced on device).

    kT (eV) defaults to ``state.kT``. Returns a dict of scalars in eV unless
    stated (per physical system, i.e. already divided by P where needed):
      potential: bead-averaged V, (1/P) sum_j V(q_j);
      spring: :func:`spring_energy`;
      kinetic_primitive: 3 N P kT / 2 - spring;
      kinetic_cv: centroid-virial kinetic energy, sum of
      kinetic_cv_per_atom (N,): 3 kT/2 + (1/(2P)) sum_j (q_ij - qc_i).dV/dq_ij
        = 3 kT/2 - (1/(2P)) sum_j (q_ij - qc_i).F_ij (Herman, Bruskin &
        Berne, JCP 76, 5150 (1982)); for a harmonic well it equals <V> > 3kT/2;
      total_energy: potential + kinetic_cv;
      hamiltonian: H_P (sum over beads, eV);
      conserved: (H_P - heat) / P, constant up to integration error;
      temperature: K, from bead momenta 2 K_RP / (3 N P^2 kB)
        (beads run at P T);
      centroid_temperature: K, 2 K_c / (3 N kB) with centroid momenta
        p_c = mean_j p_j (classical, so it averages to T);
      radius_of_gyration (N,): A, sqrt((1/P) sum_j |q_ij - qc_i|^2);
      pressure_cv: eV/A^3, only when ``virial`` (P, 3, 3) eV per bead
        (W = -dV/d(strain)) and ``volume`` (A^3) are given:
        (2 K_cv + tr(mean_j W_j)) / (3 V).
    Momentum-based quantities assume no constraints (3N degrees of freedom).
    """
    acc = _acc_dtype()
    q = state.positions.astype(acc)
    p = state.momenta.astype(acc)
    f = state.forces.astype(acc)
    m = state.masses.astype(acc)
    P, N = q.shape[0], q.shape[1]
    kT = jnp.asarray(state.kT if kT is None else kT, acc)

    qc = jnp.mean(q, axis=0)
    dq = q - qc[None]
    spring = spring_energy(q, m, kT)
    pot = jnp.mean(state.energies.astype(acc))
    # K_cv,i = 3 kT/2 + (1/(2P)) sum_j (q_ij - qc_i) . dV/dq_ij, with dV/dq = -F
    kcv_atom = 1.5 * kT - jnp.sum(dq * f, axis=(0, 2)) / (2.0 * P)
    kcv = jnp.sum(kcv_atom)
    k_rp = _kinetic(p, m)
    h_p = k_rp + jnp.sum(state.energies.astype(acc)) + P * spring
    pc = jnp.mean(p, axis=0)
    k_c = _kinetic(pc, m)
    out = {
        "potential": pot,
        "spring": spring,
        "kinetic_primitive": 1.5 * N * P * kT - spring,
        "kinetic_cv": kcv,
        "kinetic_cv_per_atom": kcv_atom,
        "total_energy": pot + kcv,
        "hamiltonian": h_p,
        "conserved": (h_p - state.heat.astype(acc)) / P,
        "temperature": 2.0 * k_rp / (3.0 * N * P * P * KB),
        "centroid_temperature": 2.0 * k_c / (3.0 * N * KB),
        "radius_of_gyration": jnp.sqrt(jnp.mean(jnp.sum(dq * dq, axis=-1), axis=0)),
    }
    if virial is not None:
        if volume is None:
            raise InputError("the centroid-virial pressure needs the cell volume (A^3)")
        w = jnp.asarray(virial, acc)
        if w.shape != (P, 3, 3):
            raise InputError(f"virial must have shape (P={P}, 3, 3) eV, got {w.shape}")
        out["pressure_cv"] = (2.0 * kcv + jnp.trace(jnp.mean(w, axis=0))) / (3.0 * volume)
    return out


# --------------------------------------------------------------------------
# Distribution
# --------------------------------------------------------------------------

def shard_beads(state: PIMDState, mesh, bead_axis: str = "beads",
                replica_axis: Optional[str] = None) -> PIMDState:
    """Place a state on ``mesh`` (a ``jax.sharding.Mesh``) with the bead axis
    of positions, momenta, forces and energies split over the mesh axis
    ``bead_axis``; everything else replicated. For a batch of independent
    replicas (a state built with ``jax.vmap(init_fn)``, leading replica axis
    on every leaf) pass ``replica_axis`` to split that axis too.
    The jitted step then runs as one SPMD program; XLA inserts the
    collectives of the normal-mode transform. P must divide evenly by the
    mesh's bead-axis size."""
    from jax.sharding import NamedSharding, PartitionSpec as Spec

    if bead_axis not in mesh.axis_names:
        raise InputError(f"mesh has no axis {bead_axis!r} (axes: {mesh.axis_names})")
    if replica_axis is not None and replica_axis not in mesh.axis_names:
        raise InputError(f"mesh has no axis {replica_axis!r} (axes: {mesh.axis_names})")
    P = state.positions.shape[-3]
    n_dev = mesh.shape[bead_axis]
    if P % n_dev:
        raise InputError(f"{P} beads do not divide over {n_dev} devices on mesh axis {bead_axis!r}")
    lead = () if replica_axis is None else (replica_axis,)

    def put(x, bead_dims):
        spec = lead + ((bead_axis,) + (None,) * (bead_dims - 1) if bead_dims else ())
        return jax.device_put(x, NamedSharding(mesh, Spec(*spec)))

    return state.replace(
        positions=put(state.positions, 3), momenta=put(state.momenta, 3),
        forces=put(state.forces, 3), energies=put(state.energies, 1),
        masses=put(state.masses, 0), key=put(state.key, 0),
        heat=put(state.heat, 0), kT=put(state.kT, 0),
    )
