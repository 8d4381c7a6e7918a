"""Delta-learning vs a plain short-range model on long-range interaction energies.

Two water trimers (geometries from the shipped training frames) are placed
with random orientations at centre-of-mass distances of 5 to 14 A, beyond
the ML models' 4.5 A cutoff for most pairs at 10 A and more, and labelled
with GFN2-xTB (tblite). The interaction energy E_int = E(AB) - E(A) - E(B)
(eV) is then predicted by four models, each trained with the same number of
optimiser steps (same MACE architecture, ``examples/fit_water_mace.toml``):

- ``mace``: MACE alone, which cannot see past its cutoff, so its E_int
  vanishes at long range;
- ``joint``: Gaussian-charge electrostatics + MACE fitted together on the
  shipped clusters (``examples/fit_water_delta_mace.toml``; charges start
  at +0.4/-0.8 e and are trained, kept neutral by ``total_charge = 0``:
  without it the fitted per-element charges drift off 2 q_H + q_O = 0 and
  the charged molecules add a spurious monopole tail);
- ``frozen``: the same sum with the baseline frozen (``trainable = false``)
  at GFN2-xTB's own mean atomic charges on the training clusters (computed
  here with tblite), MACE trained on the residual: a physical baseline that
  is not fitted;
- ``joint + pairs``: as ``joint``, with separated trimer pairs (other
  random trimers and orientations, COM distances 6 to 9 A, GFN2-xTB
  labelled) added to the training data, so the fitted charges see the
  interaction they must carry; the test pairs (10 to 14 A) stay outside the
  training distances.

    python experiments/delta_learning.py [--steps 1000] [--pairs 8] [--train-pairs 24]

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


def separated_pairs(n_pairs: int, seed: int = 0, distances=DISTANCES):
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
        for d in distances:
            bb = b.copy()
            bb.positions += d * direction
            out.append((a, bb, a + bb, d))
    return out


def xtb(atoms):
    """GFN2-xTB energy (eV), forces (eV/A) and charges (e) of ``atoms``."""
    from tblite.ase import TBLite

    x = atoms.copy()
    x.calc = TBLite(method="GFN2-xTB", verbosity=0)
    return float(x.get_potential_energy()), x.get_forces(), x.get_charges()


def xtb_energy(atoms) -> float:
    return xtb(atoms)[0]


def gfn2_mean_charges(n_frames: int = 60, seed: int = 0) -> dict:
    """Mean GFN2-xTB atomic charge of H and O (e) over training clusters."""
    from ase.io import read

    from jaxpot.training.data import shipped_data

    frames = read(shipped_data("water_clusters.extxyz"), index=":")
    pick = np.random.default_rng(seed).choice(len(frames), n_frames, replace=False)
    qs = {"H": [], "O": []}
    for k in pick:
        q = xtb(frames[k])[2]
        for sym, qq in zip(frames[k].get_chemical_symbols(), q):
            qs[sym].append(qq)
    mean = {el: float(np.mean(v)) for el, v in qs.items()}
    # make a water molecule exactly neutral: q_O = -2 q_H
    q_h = 0.5 * (mean["H"] - 0.5 * mean["O"])
    return {"H": q_h, "O": -2.0 * q_h, "raw_mean": mean}


def write_training_pairs(n_pairs: int, path: Path, seed: int = 1):
    """Separated trimer pairs (COM 6-9 A, not the test orientations), GFN2-xTB labelled, as extxyz."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frames = []
    for _, _, ab, d in separated_pairs(n_pairs, seed=seed, distances=(6.0, 7.0, 8.0, 9.0)):
        e, f, _ = xtb(ab)
        x = ab.copy()
        x.calc = SinglePointCalculator(x, energy=e, forces=f)
        x.info["com_distance_A"] = d
        frames.append(x)
    write(path, frames, format="extxyz")
    return len(frames)


def fit(cfg: dict, name: str, steps: int, work: Path, frames_per_epoch: int):
    from jaxpot.training.fit import train

    per_epoch = -(-frames_per_epoch // int(cfg["fit"].get("batch_size", 8)))
    cfg["fit"].update(epochs=max(-(-steps // per_epoch), 1), max_time_minutes=60.0, patience=10_000)
    cfg["output"]["directory"] = str(work / name.replace(" ", "_").replace("+", "plus"))
    summary = train(cfg, progress=False, log=lambda *a: None)
    print(name, "test F RMSE", 1000 * summary["test"]["forces_rmse_eV_per_A"], "meV/A", flush=True)
    return Path(cfg["output"]["directory"]), summary


def main(argv=None):
    from jaxpot.runtime import relaunch_with_tunables

    relaunch_with_tunables()      # the jaxpot command's huge-page malloc setting (jaxpot/runtime.py)
    import copy
    import time

    from jaxpot import io
    from jaxpot.interop.ase import JaxpotCalculator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=8, help="test orientations per distance")
    ap.add_argument("--train-pairs", type=int, default=24, help="training orientations (x 4 distances)")
    ap.add_argument("--only", nargs="*", default=None, help="model names to run (default: all)")
    args = ap.parse_args(argv)
    t_start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="jaxpot_delta_"))
    pairs = separated_pairs(args.pairs)
    ref = np.asarray([xtb_energy(ab) - xtb_energy(a) - xtb_energy(b) for a, b, ab, _ in pairs])
    dist = np.asarray([d for *_, d in pairs])
    q = gfn2_mean_charges()
    print("GFN2-xTB mean charges", q, flush=True)
    n_pair_frames = write_training_pairs(args.train_pairs, work / "train_pairs.extxyz")

    mace = io.read_toml(ROOT / "examples" / "fit_water_mace.toml")
    joint = io.read_toml(ROOT / "examples" / "fit_water_delta_mace.toml")
    frozen = copy.deepcopy(joint)
    frozen["model"]["terms"][0].update(charges={"H": q["H"], "O": q["O"]}, trainable=False)
    pairs_cfg = copy.deepcopy(joint)
    pairs_cfg["data"]["train"] = [pairs_cfg["data"]["train"], str(work / "train_pairs.extxyz")]
    n_clusters = 999
    models = {
        "mace": (mace, n_clusters),
        "joint": (joint, n_clusters),
        "frozen": (frozen, n_clusters),
        "joint + pairs": (pairs_cfg, n_clusters + n_pair_frames),
    }
    if args.only:
        models = {k: v for k, v in models.items() if k in args.only}
    pred, summaries, charges = {}, {}, {}
    for name, (cfg, n_frames) in models.items():
        path, summaries[name] = fit(copy.deepcopy(cfg), name, args.steps, work, int(0.9 * n_frames))
        calc = JaxpotCalculator(str(path))
        if name != "mace":
            from ase.build import molecule

            w = molecule("H2O")
            w.calc = calc
            qw = w.get_charges()
            charges[name] = {"H": float(qw[1]), "O": float(qw[0])}

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
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "started": t_start,
           "steps": args.steps, "pairs_per_distance": args.pairs, "training_pair_frames": n_pair_frames,
           "gfn2_mean_charges": q, "fitted_charges": charges, "rows": rows,
           "test_errors": {k: v["test"] for k, v in summaries.items()},
           "reference": ref.tolist(), "distance": dist.tolist(),
           "predicted": {k: v.tolist() for k, v in pred.items()}}
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    (res / "delta_learning.json").write_text(json.dumps(out, indent=1) + "\n")
    names = list(models)
    lines = ["# Delta-learning: interaction energy of two water trimers vs distance", "",
             f"GFN2-xTB reference; {args.pairs} random orientations per distance; each model trained for "
             f"{args.steps} optimiser steps (batch 8) on the shipped clusters; MAE of E_int in meV. "
             f"Run started {t_start}; `python experiments/delta_learning.py --steps {args.steps} "
             f"--pairs {args.pairs} --train-pairs {args.train_pairs}`.", "",
             "| COM distance (A) | mean abs E_int (ref) | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for r in rows:
        lines.append(f"| {r['distance_A']:.0f} | {r['reference_mean_abs_meV']:.1f} | "
                     + " | ".join(f"{r[n + '_mae_meV']:.1f}" for n in names) + " |")
    lines += ["", "Models: `mace` MACE alone; `joint` Gaussian charges + MACE fitted together; `frozen` "
              "the baseline frozen at GFN2-xTB's mean charges (q_H = "
              f"{q['H']:+.4f} e, q_O = {q['O']:+.4f} e), MACE fitted to the residual; `joint + pairs` as "
              f"`joint` with {n_pair_frames} separated trimer pairs (COM 6-9 A) added to the training data.",
              "", "Baseline charges after training (e): " + "; ".join(
                  f"{k}: H {v['H']:+.4f}, O {v['O']:+.4f}" for k, v in charges.items()),
              "", "Held-out 450 K errors (force RMSE, meV/A): " + ", ".join(
                  f"{k} {1000 * v['forces_rmse_eV_per_A']:.1f}" for k, v in out["test_errors"].items())]
    (res / "delta_learning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
