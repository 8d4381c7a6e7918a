"""Bit-identity check of the dynamics code across a refactor (issue 18).

Runs 50 steps of every classical thermostat (nve, langevin,
nose_hoover_chain, csvr) and of PIMD (pile_l, pile_g, langevin, none;
baoab/obabo; exact/cayley propagators; with and without COM removal) on a
tiny system (8 q-TIP4P/F water molecules as a cluster, direct Coulomb,
float64, P = 4 beads) and prints a SHA-256 prefix of the final positions,
momenta, |heat| (the heat is compared up to sign: issue 18 changed the PIMD
convention from heat added to heat removed) and conserved quantity.

Run it before and after a change and diff the outputs:

    python experiments/check_dynamics_identity.py > before.txt
    ... change ...
    python experiments/check_dynamics_identity.py --save after.npz > after.txt
    diff before.txt after.txt

``--save FILE.npz`` also keeps the final arrays, and ``--compare FILE.npz``
prints the largest absolute difference against a saved run, so a change
that is not bit-identical can be sized.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

# the jaxpot of the checkout this script lives in, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax
import jax.numpy as jnp
import numpy as np

import jaxpot  # noqa: F401  (enables float64)
from jaxpot.build import water_box
from jaxpot.dynamics import integrators as I
from jaxpot.dynamics import pimd as pm
from jaxpot.potentials.base import Context, bind
from jaxpot.forcefield.water import qtip4pf_from_config
from jaxpot.system import from_ase
from jaxpot.units import KB

N_STEPS = 50


def _hash(x) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(x)).tobytes()).hexdigest()[:16]


def system_and_energy():
    atoms = water_box(8, density=0.9, seed=0, relax=False)
    atoms.pbc = False
    system = from_ase(atoms, dtype=jnp.float64)
    pot = qtip4pf_from_config({"kind": "qtip4pf"}, system)
    assert pot.cutoff == 0.0, "expected a cluster potential without a neighbor list"
    params = pot.init(jax.random.PRNGKey(0), system)
    ctx = Context(species=system.species, cell=system.cell, neighbors=None, charges=system.charges)
    return system, bind(pot, params, ctx)


def classical_runs(system, energy_fn):
    kT = KB * 300.0
    for name in ("nve", "langevin", "nose_hoover_chain", "csvr"):
        init_fn, step_fn = I.make_integrator(name, energy_fn, 0.25, kT, tau=20.0, remove_com=True)
        state = init_fn(jax.random.PRNGKey(1), system.positions, system.masses)
        state, _ = I.run(step_fn, state, N_STEPS)
        yield f"classical/{name}", {
            "positions": state.positions, "momenta": state.momenta,
            "heat": jnp.abs(state.heat), "conserved": I.conserved_energy(state),
        }


PIMD_CASES = [
    # (thermostat, splitting, propagator, remove_com)
    ("pile_l", "baoab", "exact", False),
    ("pile_g", "baoab", "exact", False),
    ("langevin", "baoab", "exact", False),
    ("none", "baoab", "exact", False),
    ("pile_l", "obabo", "exact", False),
    ("pile_g", "obabo", "exact", False),
    ("pile_l", "baoab", "cayley", False),
    ("pile_g", "obabo", "cayley", False),
    ("pile_g", "baoab", "exact", True),
]


def pimd_runs(system, energy_fn):
    kT = KB * 300.0
    for thermostat, splitting, propagator, remove_com in PIMD_CASES:
        init_fn, step_fn = pm.pimd(energy_fn, 0.25, kT, 4, thermostat=thermostat, tau=20.0,
                                   splitting=splitting, propagator=propagator,
                                   remove_com=remove_com, sample_internal_modes=True)
        state = init_fn(jax.random.PRNGKey(2), system.positions, system.masses)

        @jax.jit
        def run(s):
            return jax.lax.scan(lambda c, _: (step_fn(c), None), s, None, length=N_STEPS)[0]

        state = run(state)
        est = jax.jit(pm.estimators)(state)
        tag = f"pimd/{thermostat}/{splitting}/{propagator}" + ("/remove_com" if remove_com else "")
        yield tag, {
            "positions": state.positions, "momenta": state.momenta,
            "heat": jnp.abs(state.heat), "conserved": est["conserved"],
            "hamiltonian": est["hamiltonian"], "kinetic_cv": est["kinetic_cv"],
            "temperature": est["temperature"],
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", help="write the final arrays to this .npz")
    ap.add_argument("--compare", help="print max |difference| against this .npz")
    args = ap.parse_args()
    system, energy_fn = system_and_energy()
    saved = {}
    ref = dict(np.load(args.compare)) if args.compare else None
    for runs in (classical_runs, pimd_runs):
        for tag, out in runs(system, energy_fn):
            line = [tag] + [f"{k}={_hash(v)}" for k, v in out.items()]
            print("  ".join(line), flush=True)
            for k, v in out.items():
                saved[f"{tag}:{k}"] = np.asarray(v)
                if ref is not None:
                    d = np.max(np.abs(np.asarray(v) - ref[f"{tag}:{k}"]))
                    print(f"    max|d {k}| = {d:.3e}", flush=True)
    if args.save:
        np.savez(args.save, **saved)


if __name__ == "__main__":
    main()
