"""Reference data: GFN2-xTB (tblite) Langevin MD of water clusters.

Writes labelled extxyz (energy eV, forces eV/A as ASE calculator results,
which ``ase.io.read`` attaches again on reading) and a JSON with the
isolated-atom energies:

    python experiments/make_dataset.py                     # the shipped set
    python experiments/make_dataset.py --out my_data --frames 60

The shipped files in ``jaxpot/data/`` were made with the defaults:
- ``water_clusters.extxyz``: (H2O)n, n = 1..12, at 200, 300 and 350 K;
- ``water_clusters_hot.extxyz``: held out, n = 2..12 at 450 K (a higher
  temperature than any training frame);
- ``water_clusters.json``: isolated-atom GFN2-xTB energies (spin
  multiplicities H 2, O 3), method, settings.

Every (n, T) is one Langevin trajectory (0.5 fs, friction 0.01/fs, centre
of mass fixed) from ``jaxpot.build.water_cluster``: ``equilibration``
steps discarded, then a frame every ``stride`` steps. Water clusters all
have the stoichiometry H2nOn, so per-element offsets are not separable from
these energies alone: the isolated-atom energies are stored for that.

Needs the optional extra ``pip install jaxpot[data]`` (tblite). With
OMP_NUM_THREADS=1, one force call costs ~0.6 ms for (H2O)2 and ~3 ms for
(H2O)8 here, so the default set takes a few minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from ase import Atoms, units  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from ase.constraints import FixCom  # noqa: E402
from ase.io import write  # noqa: E402
from ase.md.langevin import Langevin  # noqa: E402
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution  # noqa: E402

TRAIN_SIZES = (1, 2, 3, 4, 5, 6, 8, 10, 12)
TRAIN_TEMPERATURES = (200.0, 300.0, 350.0)
HOT_SIZES = (2, 4, 6, 8, 12)
HOT_TEMPERATURE = 450.0
MULTIPLICITY = {"H": 2, "O": 3}


def xtb(**kw):
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", verbosity=0, **kw)


def sample(n_molecules: int, temperature: float, frames: int, *, stride: int = 25,
           equilibration: int = 400, seed: int = 0, timestep_fs: float = 0.5) -> list[Atoms]:
    """Frames of one Langevin trajectory of (H2O)n labelled with GFN2-xTB."""
    from jaxpot.build import water_cluster
    from jaxpot.system import InputError

    for attempt in range(50):   # random packing of tiny boxes fails for some seeds
        try:
            atoms = water_cluster(n_molecules, seed=seed + 1000 * attempt)
            break
        except InputError:
            continue
    atoms.calc = xtb()
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng, force_temp=True)
    atoms.set_constraint(FixCom())
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature,
                   friction=0.01 / units.fs, fixcm=False, rng=rng)
    dyn.run(equilibration)
    out = []
    for _ in range(frames):
        dyn.run(stride)
        frame = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions())
        # the labels are the calculator's forces: without apply_constraint=False ASE
        # returns them adjusted by the FixCom constraint of the MD run, which
        # is not the gradient of the energy (the first shipped set had this bug)
        frame.calc = SinglePointCalculator(frame, energy=float(atoms.get_potential_energy()),
                                           forces=atoms.get_forces(apply_constraint=False).copy())
        frame.info.update(n_molecules=n_molecules, temperature_K=temperature, method="GFN2-xTB")
        out.append(frame)
    return out


def isolated_atom_energies() -> dict:
    """GFN2-xTB energies (eV) of the free atoms in their ground-state multiplicity."""
    out = {}
    for s, m in MULTIPLICITY.items():
        a = Atoms(s)
        a.calc = xtb(multiplicity=m)
        out[s] = float(a.get_potential_energy())
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "jaxpot" / "data"))
    ap.add_argument("--frames", type=int, default=37, help="frames per (size, temperature), training set")
    ap.add_argument("--hot-frames", type=int, default=30, help="frames per size, held-out hot set")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = []
    for k, n in enumerate(TRAIN_SIZES):
        for m, temp in enumerate(TRAIN_TEMPERATURES):
            train += sample(n, temp, args.frames, seed=args.seed + 100 * k + m)
            print(f"(H2O){n} at {temp:.0f} K: {len(train)} frames, {time.perf_counter() - t0:.0f} s", flush=True)
    hot = []
    for k, n in enumerate(HOT_SIZES):
        hot += sample(n, HOT_TEMPERATURE, args.hot_frames, seed=args.seed + 10_000 + k)
    write(out / "water_clusters.extxyz", train, format="extxyz")
    write(out / "water_clusters_hot.extxyz", hot, format="extxyz")
    meta = {
        "method": "GFN2-xTB (tblite)",
        "isolated_atom_energies_eV": isolated_atom_energies(),
        "train": {"sizes": list(TRAIN_SIZES), "temperatures_K": list(TRAIN_TEMPERATURES),
                  "frames_per_run": args.frames, "frames": len(train)},
        "hot": {"sizes": list(HOT_SIZES), "temperature_K": HOT_TEMPERATURE,
                "frames_per_run": args.hot_frames, "frames": len(hot)},
        "md": {"integrator": "ase Langevin", "timestep_fs": 0.5, "friction_per_fs": 0.01,
               "stride_steps": 25, "equilibration_steps": 400, "seed": args.seed},
    }
    (out / "water_clusters.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {len(train)} + {len(hot)} frames to {out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
