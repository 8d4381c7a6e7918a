"""The ring-polymer state (a pytree) and the accumulation dtype.

Units: positions A, momenta amu A/fs, forces eV/A, energies eV, masses amu,
kT eV.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


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
    heat: scalar eV, total kinetic energy the thermostat has *removed* from
    the ring polymer since init (so H_P + heat is conserved, the convention
    of the classical integrators); kT: scalar eV, the physical temperature.
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
