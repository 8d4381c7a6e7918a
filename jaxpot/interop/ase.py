"""An ASE Calculator over any jaxpot potential.

    atoms.calc = JaxpotCalculator({"kind": "qtip4pf"})   # a [potential] table
    atoms.calc = JaxpotCalculator("runs/fit/model")       # a trained model directory
    atoms.calc = JaxpotCalculator(potential_object, params)   # a Potential built in Python

Gives ``energy`` (eV), ``free_energy``, ``forces`` (eV/A), ``stress`` (eV/A^3,
periodic systems, ASE sign and Voigt order) and, for charge models,
``charges`` (e). Forces and stress come from autodiff of the energy. The
potential is rebuilt when the atoms' species, cell or periodicity change;
the jit-compiled evaluation is reused while shapes stay the same.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ..assembly import prepare
from ..errors import InputError
from ..potentials.base import Context, Potential, energy_and_forces, energy_forces_stress
from ..system import from_ase


class JaxpotCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress", "charges"]

    def __init__(self, spec=None, params=None, *, dtype="float64", seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(spec, (str, Path)):   # a model directory (from jaxpot train)
            spec = {"kind": "model", "path": str(spec)}
        if not isinstance(spec, (dict, Potential)):
            raise InputError("JaxpotCalculator needs a [potential] table (dict) or a Potential")
        self.spec = spec
        self.user_params = params
        self.dtype = jnp.float64 if dtype == "float64" else jnp.float32
        self.seed = seed
        self._key = None
        # compiled set-ups of recently seen structures (atomic numbers, pbc), oldest first
        self._cache: dict = {}
        self.cache_size = 8

    @classmethod
    def from_openmm(cls, system, **kwargs):
        """A calculator with the force field of an OpenMM ``System`` (or a
        serialized System XML file / text), read by
        :func:`jaxpot.interop.openmm.potential_from_openmm` (metal units);
        ``kwargs`` go to the calculator (``dtype``, ...). Atoms must come in
        the System's particle order."""
        from .openmm import potential_from_openmm

        dtype = kwargs.get("dtype", "float64")
        return cls(potential_from_openmm(system, dtype=jnp.float64 if dtype == "float64" else jnp.float32),
                   **kwargs)

    def _setup(self, atoms):
        # Small cell changes (finite-difference stress, gentle cell relaxation)
        # keep the potential, so the energy stays a smooth function of the cell:
        # rebuilding would re-select Ewald k-vectors / PME grids and neighbor
        # image sets, which are piecewise constant in the cell.
        key = (tuple(atoms.numbers), tuple(atoms.pbc))
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        if key != self._key and key in self._cache:
            # a structure seen before (e.g. a dimer, then each monomer, in turn):
            # reuse its potential and compiled functions instead of recompiling
            self._restore(self._cache[key])
        if key == self._key:
            scale = max(float(np.abs(self._cell0).max()), 1.0)
            if np.abs(cell - self._cell0).max() <= 1e-2 * scale:
                self.system = self.system.replace(cell=jnp.asarray(cell, dtype=self.dtype))
                self._nbr_state = None   # shifts were computed in the old cell
                return
        system = from_ase(atoms, dtype=self.dtype)
        # the skin lets the image set cover cells within 1% of this one; the parameters are
        # used as given or as init gives them (not cast); the first list is allocated in calculate
        prep = prepare(self.spec, system, dtype=self.dtype, skin=0.5, key=jax.random.PRNGKey(self.seed),
                       params=self.user_params, cast=False, allocate=False)
        pot = prep.potential
        self.potential, self.params, self.system = pot, prep.params, system
        self._nbr = prep.neighbor_fns
        self._nbr_state = None
        if self._nbr is not None:
            self._update = jax.jit(self._nbr.update)
        self._efs = jax.jit(energy_forces_stress(pot))
        self._ef = jax.jit(energy_and_forces(pot))
        self._charges = jax.jit(pot.charges) if pot.charges is not None else None
        self._key = key
        self._cell0 = cell
        self._cache[key] = self._snapshot()
        while len(self._cache) > self.cache_size:
            self._cache.pop(next(iter(self._cache)))

    _STATE = ("potential", "params", "system", "_nbr", "_nbr_state", "_update", "_efs", "_ef", "_charges",
              "_key", "_cell0")

    def _snapshot(self):
        return {k: getattr(self, k, None) for k in self._STATE}

    def _restore(self, state):
        if self._key is not None:
            self._cache[self._key] = self._snapshot()   # keep the current one's neighbor list
        for k, v in state.items():
            setattr(self, k, v)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self._setup(self.atoms)
        pos = jnp.asarray(self.atoms.get_positions(), dtype=self.dtype)
        cell = self.system.cell
        nbr = None
        if self._nbr is not None:
            # reuse the list while atoms stay within the skin; reallocate on overflow
            if self._nbr_state is None:
                nbr = self._nbr.allocate(pos, cell)
            else:
                nbr = self._update(pos, self._nbr_state, cell)
                if nbr.did_overflow():
                    nbr = self._nbr.allocate(pos, cell)
            self._nbr_state = nbr
        ctx = Context(species=self.system.species, cell=cell, neighbors=nbr, charges=self.system.charges)
        if self.system.periodic:
            e, f, s = self._efs(self.params, pos, ctx)
            s = np.asarray(s, dtype=np.float64)
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        else:
            e, f = self._ef(self.params, pos, ctx)
            if "stress" in properties:
                from ase.calculators.calculator import PropertyNotImplementedError
                raise PropertyNotImplementedError("stress needs a periodic cell")
        e = float(e)
        if not np.isfinite(e):
            raise InputError("the potential energy is not finite for this structure")
        self.results["energy"] = e
        self.results["free_energy"] = e
        self.results["forces"] = np.asarray(f, dtype=np.float64)
        if self._charges is not None:
            self.results["charges"] = np.asarray(self._charges(self.params, pos, ctx), dtype=np.float64)
