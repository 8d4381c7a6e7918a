"""Physical sanity guards of the MD driver (issue 24): a run whose numbers
stay finite but are physically absurd (a time step far beyond the stability
limit) stops with a one-line reason instead of finishing with a normal-looking
summary.

Three checks, on every thermo row of a compiled block, each with an ``[md]``
key (0 turns it off):

- ``max_temperature_factor``: the row's instantaneous temperature above this
  multiple of the target temperature (``nvt`` and ``pimd``; an ``nve`` run
  released from a strained start heats up legitimately, so energy
  conservation, the drift guard, watches it instead). A system of k < 20 degrees of
  freedom fluctuates more (the kinetic energy is chi-squared with k degrees
  of freedom: P(T > 5 T0) is 2e-3 for k = 3, 1e-12 for k = 20), so the bound
  is multiplied by 20 / k there.
- ``max_drift_eV_per_atom``: |conserved - conserved at the block's start| / N.
- ``max_force_eV_per_A``: the largest force on an atom (any bead) over every
  step of the row.

Why these defaults (5, 1 eV/atom, 1000 eV/A) cannot trip a well-behaved
run: with k >= 20 degrees of freedom a thermostatted or equilibrium
temperature exceeds 5 T0 with probability below 1e-12 per row (chi-squared);
1 eV/atom is about 40 kT at 300 K, while a stable integration drifts by
meV/atom over a block; forces in condensed matter at MD temperatures are
below ~10 eV/A, and ``[md] min_distance`` already refuses overlapping starts.
The runs of the test suite and ``jaxpot demo`` do not trip them (checked).
A very low target temperature with an unrelaxed start can exceed 5 x the
target while the structure relaxes: raise the factor or set it to 0.

The quantities are reductions computed inside the jit-compiled block
(:func:`block_start`, :func:`row_extras`); :func:`first_trip` reads them on
the host after the block. Units: K, eV, eV/A.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .. import units

MIN_GUARD_DOF = 20  # P(chi2_k / k > 5) ~ 1e-12 at k = 20
"""Below this many degrees of freedom the temperature bound is widened by MIN_GUARD_DOF / dof."""

CONSERVED_START = "guard_conserved_start_eV"
MAX_FORCE = "guard_max_force_eV_per_A"


class Guards:
    """The limits of one run (from a resolved ``[md]`` table) and its reference temperature (K)."""

    def __init__(self, md: dict, reference_K: float, n_atoms: int, n_dof: int):
        # NVE has no temperature to hold: a structure released from a strained start heats up
        # legitimately (a 6-atom cluster at 100 K reaches 1300 K), so energy conservation (the
        # drift guard) watches NVE runs instead
        self.temperature_factor = 0.0 if md.get("ensemble") == "nve" else float(md.get("max_temperature_factor", 0.0))
        self.drift = float(md.get("max_drift_eV_per_atom", 0.0))
        self.force = float(md.get("max_force_eV_per_A", 0.0))
        self.reference_K = float(reference_K)
        self.n_atoms = int(n_atoms)
        self.widen = max(1.0, MIN_GUARD_DOF / max(int(n_dof), 1))

    @property
    def needs_drift(self) -> bool:
        return self.drift > 0

    @property
    def needs_force(self) -> bool:
        return self.force > 0

    def first_trip(self, rows: dict, steps_here) -> tuple[int, str | None]:
        """(index of the first row that trips a guard, its reason) or (len, None)."""
        n = len(steps_here)
        trips = []   # (row index, reason)
        if self.temperature_factor > 0:
            t = np.asarray(rows["temperature_K"])
            limit = self.temperature_factor * self.reference_K * self.widen
            bad = np.nonzero(t > limit)[0]
            if len(bad):
                k = int(bad[0])
                trips.append((k, f"temperature {t[k]:.4g} K is above {self.temperature_factor:g} x "
                                 f"{self.reference_K:.4g} K" + (f" x {self.widen:.3g} (few degrees of freedom)"
                                                               if self.widen > 1 else "")
                              + " ([md] max_temperature_factor)"))
        if self.drift > 0 and CONSERVED_START in rows:
            d = np.abs(np.asarray(rows["conserved_eV"]) - np.asarray(rows[CONSERVED_START])) / self.n_atoms
            bad = np.nonzero(d > self.drift)[0]
            if len(bad):
                k = int(bad[0])
                trips.append((k, f"conserved quantity drifted {d[k]:.4g} eV/atom since the block's start "
                                 f"(above [md] max_drift_eV_per_atom = {self.drift:g})"))
        if self.force > 0 and MAX_FORCE in rows:
            f = np.asarray(rows[MAX_FORCE])
            bad = np.nonzero(f > self.force)[0]
            if len(bad):
                k = int(bad[0])
                trips.append((k, f"largest force {f[k]:.4g} eV/A is above [md] max_force_eV_per_A = "
                                 f"{self.force:g}"))
        if not trips:
            return n, None
        k, reason = min(trips, key=lambda x: x[0])
        return k, f"step {int(steps_here[k])}: {reason}"


def reference_temperature(md: dict, momenta=None, masses=None, n_dof: int = 0, saved=None) -> float:
    """The temperature (K) the guard compares with: the target, or with
    ``nve`` the larger of the target and the starting kinetic temperature
    (``saved``: the value a checkpoint holds)."""
    target = float(md["temperature"])
    if md["ensemble"] != "nve":
        return target
    if saved is not None:
        return float(saved)
    if momenta is None or n_dof <= 0:
        return target
    p = np.asarray(momenta, dtype=np.float64)
    m = np.asarray(masses, dtype=np.float64)
    kinetic = 0.5 * np.sum(p * p / m[:, None])
    return max(target, float(2.0 * kinetic / (n_dof * units.KB)))


def block_start(engine, state, nbr, guards: Guards | None) -> dict:
    """Inside the block: what the rows compare with (the conserved quantity, eV, at the block's start)."""
    if guards is None or not guards.needs_drift:
        return {}
    return {CONSERVED_START: engine.observe(state, nbr)["conserved_eV"]}


def step_extras(state, guards: Guards | None):
    """Inside the block, after each step: the largest squared force (eV^2/A^2), or None."""
    if guards is None or not guards.needs_force:
        return None
    f = state.forces
    return jnp.max(jnp.sum(f * f, axis=-1))


def row_extras(per_step, start: dict, guards: Guards | None) -> dict:
    """Inside the block, for each row: the guard quantities besides the
    observables (``per_step``: the :func:`step_extras` of the row's steps,
    in stacked pieces)."""
    out = dict(start)
    if guards is not None and guards.needs_force:
        largest = jnp.max(jnp.stack([jnp.max(x) for x in per_step]))
        out[MAX_FORCE] = jnp.sqrt(largest).astype(jnp.float64)
    return out
