"""Old vs new water engine: energy, forces and stress of q-TIP4P/F and SPC/Fw.

The old engine is jaxpot/potentials/water.py as it was at commit OLD_COMMIT
(its own bonds, angle, LJ and Coulomb wiring), loaded from git; the new one
is jaxpot.forcefield.water (a topology plus a virtual M site through
jaxpot.forcefield.engine.classical_potential). Both read the same neighbor
list. Cases: the 32- and 216-water boxes of tests/data (water_32.pdb,
water_216.extxyz, as tests/ load them), the same 32-water box wrapped into the
cell (molecules split across the boundary) and with its atoms shuffled
(molecules recognised from geometry), and a (H2O)_8 cluster; every Coulomb
method (ewald, pme, cutoff; direct and the default for the cluster), each
part, lj_shift and lj_tail_correction, images = "minimum", float64 and float32.

Prints, per case, the relative differences
  dE = |E_new - E_old| / |E_old|,  dF = max|F_new - F_old| / max|F_old|,
  dS = max|S_new - S_old| / max|S_old|
and the worst of each over all float64 and all float32 cases.

Run from the repository root: python experiments/check_water_engine.py
(one case per option, both models; ``--full`` for every combination, slow).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jaxpot  # noqa: E402,F401  (float64)
from jaxpot.build import water_cluster  # noqa: E402
from jaxpot.forcefield import water as new_water  # noqa: E402
from jaxpot.partition import neighbor_list  # noqa: E402
from jaxpot.potentials.base import Context, energy_forces_stress, energy_and_forces  # noqa: E402
from jaxpot.system import from_ase  # noqa: E402

OLD_COMMIT = "2d3623c754dd2d2f5d6339e01a3541099c688248"
DATA = ROOT / "tests" / "data"


def old_water_module():
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:jaxpot/potentials/water.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("jaxpot.potentials._water_old")
    mod.__package__ = "jaxpot.potentials"
    exec(compile(src, "old water.py", "exec"), mod.__dict__)
    return mod


def evaluate(pot, system, atoms, dtype):
    params = pot.init(jax.random.PRNGKey(0), system)
    params = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
    pos = jnp.asarray(np.asarray(atoms.positions), dtype)
    if system.periodic:
        cell = jnp.asarray(np.asarray(atoms.cell), dtype)
        nbr = neighbor_list(pot.cutoff, np.asarray(atoms.cell), True, skin=0.0,
                            images=pot.neighbor_images).allocate(pos, cell) if pot.cutoff > 0 else None
        ctx = Context(system.species, cell, nbr)
        e, f, s = jax.jit(energy_forces_stress(pot))(params, pos, ctx)
        return float(e), np.asarray(f, np.float64), np.asarray(s, np.float64)
    ctx = Context(system.species, jnp.zeros((3, 3), dtype), None)
    e, f = jax.jit(energy_and_forces(pot))(params, pos, ctx)
    return float(e), np.asarray(f, np.float64), None


def rel(a, b):
    scale = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(a - b)))


def main(full: bool = False):
    from ase.io import read
    old = old_water_module()
    boxes = {"water_32": read(DATA / "water_32.pdb"), "water_216": read(DATA / "water_216.extxyz")}
    wrapped = boxes["water_32"].copy()
    wrapped.wrap()
    boxes["water_32_wrapped"] = wrapped
    rng = np.random.default_rng(0)
    shuffled = boxes["water_32"][rng.permutation(len(boxes["water_32"]))]
    boxes["water_32_shuffled"] = shuffled
    cluster = water_cluster(8, seed=1)
    cluster.set_pbc(False)
    cases = []
    for model in ("QTIP4PF", "SPCFW"):
        w32 = boxes["water_32"]
        for coulomb in ("ewald", "pme", "cutoff"):
            cases.append(("water_32", w32, model, dict(coulomb=coulomb)))
        for part in ("intramolecular", "intermolecular"):
            cases.append(("water_32", w32, model, dict(coulomb="pme", part=part)))
        cases.append(("water_32", w32, model, dict(lj_shift=True, lj_tail_correction=True)))
        cases.append(("water_32", w32, model, dict(images="minimum", cutoff=7.0)))
        cases.append(("water_216", boxes["water_216"], model, dict(coulomb="pme")))
        for coulomb in (None, "direct"):
            cases.append(("cluster_8", cluster, model, dict(coulomb=coulomb)))
        for part in ("intramolecular", "intermolecular"):
            cases.append(("cluster_8", cluster, model, dict(part=part)))
        cases.append(("cluster_8", cluster, model, dict(lj_shift=True, cutoff=5.0)))
    cases.append(("water_216", boxes["water_216"], "QTIP4PF", dict(coulomb="ewald", lj_tail_correction=True)))
    cases.append(("water_216", boxes["water_216"], "QTIP4PF", dict(coulomb="ewald", part="intermolecular")))
    cases.append(("water_32_wrapped", boxes["water_32_wrapped"], "QTIP4PF", dict(coulomb="ewald")))
    cases.append(("water_32_shuffled", boxes["water_32_shuffled"], "QTIP4PF", dict(coulomb="pme")))
    if not full:   # one of each option (each case costs two compilations per dtype)
        keep = {("water_32", "QTIP4PF"), ("cluster_8", "QTIP4PF"), ("water_216", "QTIP4PF"),
                ("water_32_wrapped", "QTIP4PF"), ("water_32_shuffled", "QTIP4PF")}
        cases = [c for c in cases if (c[0], c[2]) in keep and c[3] != dict(coulomb="ewald", lj_tail_correction=True)]
        cases.insert(1, ("water_32", boxes["water_32"], "SPCFW", dict(coulomb="ewald")))
        cases.insert(2, ("cluster_8", cluster, "SPCFW", dict()))
    worst = {}
    print(f"{'case':<70} {'dtype':<8} {'dE':>9} {'dF':>9} {'dS':>9}")
    for name, atoms, model, kw in cases:
        system = from_ase(atoms)
        for dtype in (jnp.float64, jnp.float32) if (full or name != "water_216") else (jnp.float64,):
            res = []
            for mod in (old, new_water):
                pot = mod.water_potential(getattr(mod, model), system, **kw)
                res.append(evaluate(pot, system, atoms, dtype))
            (e0, f0, s0), (e1, f1, s1) = res
            de = abs(e1 - e0) / abs(e0)
            df = rel(f1, f0)
            ds = rel(s1, s0) if s0 is not None else float("nan")
            key = np.dtype(dtype).name
            w = worst.setdefault(key, [0.0, 0.0, 0.0])
            w[0], w[1] = max(w[0], de), max(w[1], df)
            if s0 is not None:
                w[2] = max(w[2], ds)
            label = f"{name} {model} {kw}"
            print(f"{label:<70} {key:<8} {de:9.1e} {df:9.1e} {ds:9.1e}  E={e0:.10g}", flush=True)
    for key, (de, df, ds) in worst.items():
        print(f"worst {key}: dE {de:.1e}  dF {df:.1e}  dS {ds:.1e}")


if __name__ == "__main__":
    main(full="--full" in sys.argv[1:])
