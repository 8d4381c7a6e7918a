"""Learning curves on the shipped GFN2-xTB water clusters.

For each model kind (the example configurations in ``examples/``) and each
training-set size (50 ... 800 frames drawn from the training split), fit
with the same number of optimiser steps (batch 8) and record the errors on
- the validation split (10 % of the 200-350 K frames, never trained on),
- the held-out 450 K frames (``water_clusters_hot.extxyz``), hotter than
  any training frame.

    python experiments/learning_curves.py                  # all kinds, 1500 steps per fit
    python experiments/learning_curves.py --kinds mace --sizes 50 800 --steps 300

Writes experiments/results/learning_curves.{json,md} after every fit (a
partial table survives an interrupted study). Kinds are compared at equal
optimiser steps, not at convergence.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


def run(kinds, sizes, minutes: float, steps: int, merge: bool = False, name: str = "learning_curves"):
    from jaxpot import io
    from jaxpot.training.fit import train

    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps_per_fit": steps,
           "curves": {}}
    old = RESULTS / f"{name}.json"
    if merge and old.exists():   # keep earlier rows of other kinds / sizes (same step budget only)
        prev = json.loads(old.read_text())
        if prev.get("steps_per_fit") == steps:
            out["curves"] = prev["curves"]
    work = Path(tempfile.mkdtemp(prefix="jaxpot_lc_"))
    for kind in kinds:
        base = io.read_toml(ROOT / "examples" / f"fit_water_{kind}.toml")
        rows = [r for r in out["curves"].get(kind, []) if r["max_train"] not in sizes]
        for n in sizes:
            cfg = json.loads(json.dumps(base))
            cfg["data"]["max_train"] = int(n)
            # the same number of optimiser steps for every size (the cosine schedule
            # spans them), the wall-clock budget only as a safety cap
            per_epoch = -(-int(0.9 * n) // cfg["fit"]["batch_size"]) if n < 900 else 113
            epochs = max(-(-steps // per_epoch), 1)
            # validation (and best-model selection) about every 50 steps, whatever the size
            cfg["fit"].update(max_time_minutes=float(minutes), epochs=int(epochs), patience=10_000,
                              eval_every=max(1, round(50 / per_epoch)), checkpoint_every=10_000)
            cfg["output"]["directory"] = str(work / f"{kind}_{n}")
            t0 = time.perf_counter()
            s = train(cfg, progress=False, log=lambda *a: None)
            rows.append({"max_train": int(n), "train_frames": s["train_structures"], "epochs": s["epochs"],
                         "seconds": time.perf_counter() - t0, "validation": s["validation"], "test": s["test"]})
            out["curves"][kind] = sorted(rows, key=lambda r: r["train_frames"])
            print(f"{kind:18s} {n:4d} frames {s['epochs']:4d} epochs  val F RMSE "
                  f"{1000 * s['validation']['forces_rmse_eV_per_A']:.1f}  hot F RMSE "
                  f"{1000 * s['test']['forces_rmse_eV_per_A']:.1f} meV/A", flush=True)
            write(out, name)
    return out


def write(out, name: str = "learning_curves"):
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"# Learning curves on the shipped water clusters ({out['machine']}, "
             f"{out['steps_per_fit']} optimiser steps per fit)", "",
             "Errors in meV/atom (energy) and meV/A (forces); validation = 10 % of the 200-350 K frames, "
             "hot = held-out 450 K frames.", "",
             "| model | train frames | epochs | val E MAE | val F MAE | val F RMSE | hot E MAE | hot F MAE | hot F RMSE | fit s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, rows in out["curves"].items():
        for r in rows:
            v, t = r["validation"], r["test"]
            lines.append(f"| {kind} | {r['train_frames']} | {r['epochs']} | "
                         f"{1000 * v['energy_mae_eV_per_atom']:.2f} | {1000 * v['forces_mae_eV_per_A']:.1f} | "
                         f"{1000 * v['forces_rmse_eV_per_A']:.1f} | {1000 * t['energy_mae_eV_per_atom']:.2f} | "
                         f"{1000 * t['forces_mae_eV_per_A']:.1f} | {1000 * t['forces_rmse_eV_per_A']:.1f} | "
                         f"{r['seconds']:.0f} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="+", default=["behler_parrinello", "nequip", "mace"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[50, 100, 200, 400, 800])
    ap.add_argument("--steps", type=int, default=1500, help="optimiser steps per fit")
    ap.add_argument("--minutes", type=float, default=6.0, help="wall-clock cap per fit")
    ap.add_argument("--merge", action="store_true", help="keep earlier results of other kinds/sizes")
    ap.add_argument("--name", default="learning_curves", help="results/NAME.{json,md}")
    args = ap.parse_args(argv)
    from jaxpot.runtime import relaunch_with_tunables

    relaunch_with_tunables()     # as the jaxpot command does (huge pages for XLA:CPU buffers)
    run(args.kinds, args.sizes, args.minutes, args.steps, args.merge, args.name)


if __name__ == "__main__":
    main()
