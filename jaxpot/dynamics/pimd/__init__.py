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

Package layout: :mod:`.normal_modes` (transform, frequencies, free
ring-polymer propagators), :mod:`.forces` (bead mapping, ring-polymer
contraction), :mod:`.integrator` (:func:`pimd`: PILE-L/G, BAOAB/OBABO),
:mod:`.estimators`, :mod:`.state`, :mod:`.sharding`. Thermostat kernels
and kinetic quantities are shared with the classical integrators
(:mod:`jaxpot.dynamics.thermostats`, :mod:`jaxpot.dynamics.quantity`).

Heat convention (as in the classical integrators): ``state.heat`` is the
kinetic energy the thermostat has removed, so (H_P + heat) / P is conserved.
"""

from .estimators import _kinetic, centroid, estimators, spring_energy
from .forces import bead_energy_and_forces, contracted_energy_and_forces, contraction_matrix
from .integrator import SPLITTINGS, THERMOSTATS, pimd
from .normal_modes import (NM_METHODS, PROPAGATORS, free_ring_polymer_step, from_normal_modes,
                           normal_mode_frequencies, normal_mode_matrix, ring_polymer_frequency,
                           to_normal_modes)
from .sharding import shard_beads
from .state import PIMDState

__all__ = [
    "PIMDState", "pimd", "estimators", "centroid", "spring_energy",
    "bead_energy_and_forces", "contracted_energy_and_forces", "contraction_matrix",
    "free_ring_polymer_step", "to_normal_modes", "from_normal_modes",
    "normal_mode_frequencies", "normal_mode_matrix", "ring_polymer_frequency",
    "shard_beads", "SPLITTINGS", "PROPAGATORS", "THERMOSTATS", "NM_METHODS",
]
