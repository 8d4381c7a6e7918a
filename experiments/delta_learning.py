"""Delta-learning vs a plain short-range model on long-range interaction energies.

Two water trimers (geometries from the shipped training frames) are placed
with random orientations at centre-of-mass distances of 5 to 14 A, beyond
the ML models' 4.5 A cutoff for most pairs, and labelled with GFN2-xTB
(tblite). The interaction energy E_int = E(AB) - E(A) - E(B) (eV) is then
predicted by
- MACE alone (``examples/fit_water_mace.toml``), which cannot see past its
  cutoff, so its E_int vanishes at long range;
- Gaussian-charge electrostatics + MACE fitted together
  (``examples/fit_water_delta_mace.toml``), whose baseline carries the
  electrostatic tail.
Both are trained on the shipped clusters with the same number of optimiser
steps; neither sees a separated pair in training.

    python experiments/delta_learning.py [--steps 1500] [--pairs 8]

Writes experiments/results/delta_learning.{json,md}. Needs tblite.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DISTANCES = (5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0)


def random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]])


def separated_pairs(n_pairs: int, seed: int = 0):
    """[(A, B, AB, distance)] ase.Atoms triples of two (H2O)3 at COM distance d (A)."""
    from ase.io import read

    from jaxpot.training.data import shipped_data

    frames = [a for a in read(shipped_data("water_clusters.extxyz"), index=":") if a.info["n_molecules"] == 3]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_pairs):
        a, b = (frames[k].copy() for k in rng.choice(len(frames), 2, replace=False))
        for x in (a, b):
            x.positions = (x.positions - x.get_center_of_mass()) @ random_rotation(rng).T
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        for d in DISTANCES:
            bb = b.copy()
            bb.positions += d * direction
            out.append((a, bb, a + bb, d))
    return out


def xtb_energy(atoms) -> float:
    from tblite.ase import TBLite

    x = atoms.copy()
    x.calc = TBLite(method="GFN2-xTB", verbosity=0)
    return float(x.get_potential_energy())


def fit(example: str, steps: int, work: Path) -> Path:
    from jaxpot import io
    from jaxpot.training.fit import train

    cfg = io.read_toml(ROOT / "examples" / example)
    per_epoch = 113   # 899 training frames, batch 8
    cfg["fit"].update(epochs=max(-(-steps // per_epoch), 1), max_time_minutes=60.0, patience=10_000)
    cfg["output"]["directory"] = str(work / example.replace(".toml", ""))
    summary = train(cfg, progress=False, log=lambda *a: None)
    print(example, "test F RMSE", 1000 * summary["test"]["forces_rmse_eV_per_A"], "meV/A", flush=True)
    return Path(cfg["output"]["directory"]), summary


def main(argv=None):
    from jaxpot.interop.ase import JaxpotCalculator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--pairs", type=int, default=8)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="jaxpot_delta_"))
    pairs = separated_pairs(args.pairs)
    ref = np.asarray([xtb_energy(ab) - xtb_energy(a) - xtb_energy(b) for a, b, ab, _ in pairs])
    dist = np.asarray([d for *_, d in pairs])
    models = {"mace": "fit_water_mace.toml", "electrostatics + mace": "fit_water_delta_mace.toml"}
    pred, summaries = {}, {}
    for name, example in models.items():
        path, summaries[name] = fit(example, args.steps, work)
        calc = JaxpotCalculator(str(path))

        def e(x):
            y = x.copy()
            y.calc = calc
            return y.get_potential_energy()

        pred[name] = np.asarray([e(ab) - e(a) - e(b) for a, b, ab, _ in pairs])
    rows = []
    for d in DISTANCES:
        m = dist == d
        row = {"distance_A": d, "reference_mean_abs_meV": 1000 * float(np.mean(np.abs(ref[m])))}
        for name in models:
            row[name + "_mae_meV"] = 1000 * float(np.mean(np.abs(pred[name][m] - ref[m])))
        rows.append(row)
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps": args.steps,
           "pairs_per_distance": args.pairs, "rows": rows,
           "test_errors": {k: v["test"] for k, v in summaries.items()}}
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    (res / "delta_learning.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = ["# Delta-learning: interaction energy of two water trimers vs distance", "",
             f"GFN2-xTB reference; {args.pairs} random orientations per distance; models trained on the shipped "
             f"clusters ({args.steps} optimiser steps each); MAE of E_int in meV.", "",
             "| COM distance (A) | mean abs E_int (ref) | MACE alone | electrostatics + MACE |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['distance_A']:.0f} | {r['reference_mean_abs_meV']:.1f} | {r['mace_mae_meV']:.1f} | "
                     f"{r['electrostatics + mace_mae_meV']:.1f} |")
    lines += ["", "Held-out 450 K errors of the two models (force RMSE, meV/A): " + ", ".join(
        f"{k} {1000 * v['forces_rmse_eV_per_A']:.1f}" for k, v in out["test_errors"].items())]
    (res / "delta_learning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
