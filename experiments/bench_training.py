"""Training throughput and accuracy: jaxpot's MACE against mace-torch's MACE (issue 7).

Both codes train on the same seeded split of the shipped GFN2-xTB water clusters
(``jaxpot/data/water_clusters.extxyz``: ``--n-train`` training and ``--n-valid``
validation frames) and are tested on the held-out 450 K frames
(``water_clusters_hot.extxyz``). The split is written to temporary extxyz files
with the labels under ``REF_energy`` (info) and ``REF_forces`` (arrays), which
both codes read. Each code runs in its own process, one after the other, on the
same CPU, with matched settings:

    MACE, 2 layers, 16 channels, l_max 2 (spherical harmonics and hidden
    features; mace-torch: --max_L 2 --max_ell 2), correlation 3, cutoff 4.5 A,
    8 Bessel functions, polynomial envelope p = 6 (mace-torch
    --num_cutoff_basis 6), radial MLP 3 x 64 silu, last readout MLP 16;
    per-element reference energies by least squares (mace-torch --E0s average),
    energy scale = RMS of the training force components (mace-torch --model MACE
    --scaling rms_forces_scaling, shift 0); messages divided by the mean
    neighbor count of the training data (both); float64 (``--dtype``); batch size 8
    (jaxpot: packed graphs of at most 8 structures, see below);
    loss 1 * <(dE/N)^2> + 100 * <dF^2>; Adam at a constant learning rate
    (jaxpot schedule "constant", no warm-up; mace-torch's ReduceLROnPlateau
    with a patience longer than the run; mace-torch uses AMSGrad, its default,
    and weight decay is set to 0), gradient-norm clip 10, EMA of the parameters
    with decay min(0.99, (1+n)/(10+n)) for validation and the saved model; the
    validation set is evaluated after every epoch; the best (EMA) model by
    validation is the one tested.

Timing: jaxpot's per-epoch wall times are the ``time_s`` column of
``metrics.csv`` (cumulative; training steps + validation + model saving);
mace-torch's are the differences between the timestamps of its per-epoch
validation log lines ("Epoch N: ..."), the first measured from its
"Started training" line, so both include the validation pass. The first epoch
(jaxpot: XLA compilation of its training and validation steps; mace-torch:
first touches) is reported apart; steady state is the mean of the remaining epochs.
Preparation before training (reading, neighbor lists, E0 fit; jaxpot also the
jax import) is reported as process wall time minus training time.

jaxpot packs the structures of a batch into one graph (``[fit] batching =
"auto"``: at most 8 structures and 1.05 x 8 x the mean atom and pair counts
per batch, so a batch holds ~7.5 structures on average and an epoch has a
few more steps than mace-torch's 50). Both processes run with the same
GLIBC_TUNABLES (``--tunables on``: ``glibc.malloc.hugetlb=1``, which the
``jaxpot`` command sets for itself, jaxpot.runtime).
Errors: jaxpot's from its ``summary.json``; mace-torch's saved model is
evaluated with ``mace_eval_configs`` and the errors computed here with the same formulas:
energy MAE per atom, force-component MAE and RMSE.

Threads: mace-torch runs with OMP_NUM_THREADS=2 (torch intra-op threads = 2);
jax keeps its default (XLA's CPU thread pool over all cores). The load average
is sampled during each run, since the machine may be shared.

mace-torch 0.3.16 imports ``matscipy`` (neighbor list), ``h5py``, ``lmdb`` and
``prettytable`` at module level; where they are not installed, this script puts
small stand-ins on mace-torch's PYTHONPATH only: the neighbor list through
``ase.neighborlist.primitive_neighbor_list`` (same ``"ijS"`` contract), empty
modules for h5py/lmdb (used only for HDF5/LMDB data, not extxyz) and a
minimal table printer for the final error table.

Smoke run: ``python experiments/bench_training.py --n-train 40 --n-valid 10 --epochs 2``
Full run:  ``python experiments/bench_training.py --epochs N`` (writes
``experiments/results/bench_training.{json,md}``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / "jaxpot" / "data"

ARCH = dict(channels=16, l_max=2, correlation=3, cutoff=4.5, layers=2, n_basis=8,
            envelope_exponent=6, radial_hidden=64, radial_layers=3, readout_hidden=16)


# --------------------------------------------------------------------------- data

def write_split(work: Path, n_train: int, n_valid: int, seed: int) -> dict:
    """Seeded split of the 200-K-style clusters into train/valid files, plus the
    450 K test file, all with REF_energy / REF_forces labels."""
    from ase.io import read, write

    frames = read(DATA / "water_clusters.extxyz", index=":")
    hot = read(DATA / "water_clusters_hot.extxyz", index=":")
    perm = np.random.default_rng(seed).permutation(len(frames))
    if n_train + n_valid > len(frames):
        raise SystemExit(f"only {len(frames)} frames")
    parts = {"train": [frames[k] for k in np.sort(perm[:n_train])],
             "valid": [frames[k] for k in np.sort(perm[n_train:n_train + n_valid])],
             "test": hot}
    paths = {}
    for name, atoms_list in parts.items():
        out = []
        for a in atoms_list:
            e = a.get_potential_energy()
            f = a.get_forces()
            b = a.copy()          # copy() drops the calculator
            b.calc = None
            b.info = {"REF_energy": float(e), "n_molecules": int(a.info.get("n_molecules", 0))}
            b.arrays["REF_forces"] = np.asarray(f, np.float64)
            out.append(b)
        paths[name] = work / f"{name}.xyz"
        write(paths[name], out, format="extxyz")
    return {k: str(v) for k, v in paths.items()}, {k: len(v) for k, v in parts.items()}


def errors(e_pred, e_ref, f_pred, f_ref, n_atoms) -> dict:
    de = (np.asarray(e_pred) - np.asarray(e_ref)) / np.asarray(n_atoms)
    df = np.concatenate([(p - r).ravel() for p, r in zip(f_pred, f_ref)])
    return {"energy_mae_eV_per_atom": float(np.mean(np.abs(de))),
            "energy_rmse_eV_per_atom": float(np.sqrt(np.mean(de * de))),
            "forces_mae_eV_per_A": float(np.mean(np.abs(df))),
            "forces_rmse_eV_per_A": float(np.sqrt(np.mean(df * df)))}


# --------------------------------------------------------------------------- load sampling

class LoadSampler:
    """1-minute load average sampled every ``every`` s in a thread."""

    def __init__(self, every: float = 10.0):
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def summary(self):
        s = np.asarray(self.samples or [float("nan")])
        return {"min": float(s.min()), "mean": float(s.mean()), "max": float(s.max()), "samples": len(s)}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------- jaxpot

JAXPOT_RUNNER = r"""
import json, sys, time
t0 = time.perf_counter()
from jaxpot.training.fit import train
cfg = json.load(open(sys.argv[1]))
s = train(cfg, overwrite=True, progress=False, log=lambda *a: None)
s["process_seconds_after_imports"] = time.perf_counter() - t0
from jaxpot.training.data import read_labelled
from jaxpot.training.fit import make_batcher
d, f = cfg["data"], cfg["fit"]
b = make_batcher(s["batching"], read_labelled(d["train"]), cutoff=cfg["model"]["cutoff"],
                 batch_size=f["batch_size"], seed=d["seed"])
s["steps_per_epoch"] = len(b)
s["batch_shapes"] = len(b.groups) if hasattr(b, "groups") else 1
json.dump(s, open(sys.argv[2], "w"))
"""


def run_jaxpot(work: Path, paths: dict, a) -> dict:
    out_dir = work / "jaxpot_run"
    cfg = {
        "data": {"train": paths["train"], "validation": paths["valid"], "test": paths["test"],
                 "seed": a.seed},
        "model": {"kind": "mace", **ARCH},
        "fit": {"epochs": a.epochs, "max_time_minutes": a.jaxpot_max_minutes, "batch_size": a.batch_size,
                "learning_rate": a.lr, "optimizer": "adam", "schedule": "constant",
                "warmup_epochs": 0.0, "clip_norm": 10.0, "ema_decay": 0.99, "energy_weight": 1.0,
                "forces_weight": 100.0, "dtype": a.dtype, "seed": a.seed, "patience": 10 ** 6,
                "eval_every": 1},
        "output": {"directory": str(out_dir)},
    }
    (work / "jaxpot_config.json").write_text(json.dumps(cfg, indent=1))
    (work / "jaxpot_runner.py").write_text(JAXPOT_RUNNER)
    env = process_env(a)
    t0 = time.perf_counter()
    with LoadSampler() as load, open(work / "jaxpot.log", "w") as log:
        rc = subprocess.run([sys.executable, str(work / "jaxpot_runner.py"), str(work / "jaxpot_config.json"),
                             str(work / "jaxpot_summary.json")], cwd=work, env=env, stdout=log,
                            stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"jaxpot run failed (rc {rc}); see {work / 'jaxpot.log'}:\n"
                           + (work / "jaxpot.log").read_text()[-3000:])
    summary = json.loads((work / "jaxpot_summary.json").read_text())
    import csv

    with open(out_dir / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(row for row in fh if not row.startswith("#"))]
    t = np.asarray([float(r["time_s"]) for r in rows])
    curve = [{"epoch": int(float(r["epoch"])), "time_s": float(r["time_s"]),
              "val_energy_mae_eV_per_atom": float(r["val_energy_mae_eV_per_atom"]),
              "val_forces_mae_eV_per_A": float(r["val_forces_mae_eV_per_A"]),
              "val_forces_rmse_eV_per_A": float(r["val_forces_rmse_eV_per_A"])} for r in rows]
    return {"epoch_times_s": np.diff(np.concatenate([[0.0], t])).tolist(), "curve": curve,
            "training_seconds": float(t[-1]), "process_seconds": wall,
            "validation": summary.get("validation"), "test": summary.get("test"),
            "best_epoch": summary.get("best_epoch"), "load": load.summary(),
            "steps_per_epoch": summary.get("steps_per_epoch"), "batch_shapes": summary.get("batch_shapes"),
            "batching": summary.get("batching"),
            "jaxpot_summary_total_seconds": summary.get("total_seconds"),
            **({"partial": f"stopped by its time budget after {len(rows)} epochs"}
               if summary.get("stopped_by") == "time budget" else {}),
            "threads": "jax default (XLA CPU pool over all cores)"}


# --------------------------------------------------------------------------- mace-torch

SHIMS = {
    "matscipy/__init__.py": '"""stand-in for matscipy (not installed): only neighbours.neighbour_list."""\n',
    "matscipy/neighbours.py": (
        '"""matscipy.neighbours.neighbour_list through ASE (same i, j, S contract)."""\n'
        "from ase.neighborlist import primitive_neighbor_list\n\n\n"
        "def neighbour_list(quantities, pbc, cell, positions, cutoff, **kw):\n"
        "    return primitive_neighbor_list(quantities, pbc, cell, positions, cutoff,\n"
        "                                   self_interaction=bool(kw.get('self_interaction', False)))\n"),
    "h5py.py": '"""empty stand-in: mace-torch imports h5py at module level, uses it only for HDF5 data."""\n',
    "lmdb.py": '"""empty stand-in: used by mace-torch only for LMDB data."""\n',
    "prettytable.py": (
        '"""minimal stand-in for prettytable.PrettyTable (mace-torch\'s final error table)."""\n\n\n'
        "class PrettyTable:\n"
        "    def __init__(self):\n"
        "        self.field_names, self.rows = [], []\n\n"
        "    def add_row(self, row):\n"
        "        self.rows.append(list(row))\n\n"
        "    def __str__(self):\n"
        "        return '\\n'.join(' | '.join(map(str, r)) for r in [self.field_names] + self.rows)\n"),
}


def shim_dir(work: Path) -> tuple[Path, list[str]]:
    d = work / "shims"
    used = []
    for rel, text in SHIMS.items():
        mod = rel.split("/")[0].removesuffix(".py")
        if importlib.util.find_spec(mod) is not None:
            continue
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        if mod not in used:
            used.append(mod)
    return d, used


_TS = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}) ")


def _stamp(line):
    m = _TS.match(line)
    return dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() if m else None


def run_mace(work: Path, paths: dict, a) -> dict:
    mdir = work / "mace_run"
    if mdir.exists():
        shutil.rmtree(mdir)
    mdir.mkdir()
    shims, used = shim_dir(work)
    env = dict(process_env(a), OMP_NUM_THREADS=str(a.torch_threads), MKL_NUM_THREADS=str(a.torch_threads))
    env["PYTHONPATH"] = os.pathsep.join([str(shims)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    exe = shutil.which("mace_run_train") or "mace_run_train"
    cmd = [exe, "--name", "bench", "--seed", str(a.seed), "--work_dir", str(mdir),
           "--train_file", paths["train"], "--valid_file", paths["valid"],
           "--energy_key", "REF_energy", "--forces_key", "REF_forces",
           "--model", "MACE", "--num_channels", "16", "--max_L", "2", "--max_ell", "2",
           "--correlation", "3", "--r_max", "4.5", "--num_interactions", "2",
           "--num_radial_basis", "8", "--num_cutoff_basis", "6", "--radial_MLP", "[64, 64, 64]",
           "--MLP_irreps", "16x0e", "--E0s", "average", "--scaling", "rms_forces_scaling",
           "--batch_size", str(a.batch_size), "--valid_batch_size", str(a.batch_size),
           "--lr", str(a.lr), "--weight_decay", "0.0", "--scheduler_patience", str(10 ** 6),
           "--patience", str(10 ** 6), "--clip_grad", "10.0", "--ema", "--ema_decay", "0.99",
           "--loss", "weighted", "--energy_weight", "1.0", "--forces_weight", "100.0",
           "--max_num_epochs", str(a.epochs), "--eval_interval", "1", "--error_table", "PerAtomMAE",
           "--default_dtype", a.dtype, "--device", "cpu", "--plot", "False"]
    t0 = time.time()
    with LoadSampler() as load, open(work / "mace.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=mdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=a.mace_timeout)
            timed_out = False
        except subprocess.TimeoutExpired:     # safety net: keep the epochs logged so far
            proc.kill()
            rc = proc.wait()
            timed_out = True
    wall = time.time() - t0
    text = (work / "mace.log").read_text()
    if rc != 0 and not timed_out:
        raise RuntimeError(f"mace_run_train failed (rc {rc}):\n{text[-3000:]}")
    start = None
    ends = {}
    for line in text.splitlines():
        if "Started training" in line and start is None:
            start = _stamp(line)
        m = re.search(r"Epoch (\d+): head", line)
        if m and _stamp(line) is not None:
            ends[int(m.group(1))] = _stamp(line)
    if (start is None or not ends) and not timed_out:
        raise RuntimeError("could not find epoch timestamps in mace-torch's log")
    t = np.asarray([ends[k] - start for k in sorted(ends)] or [float("nan")])
    # per-epoch validation errors (EMA model) from its results file
    curve = []
    res = sorted((mdir / "results").glob("*_train.txt"))
    steps, step_times = {}, {}
    if res:
        for line in res[0].read_text().splitlines():
            d = json.loads(line)
            if d.get("mode") == "opt":
                steps[d["epoch"]] = steps.get(d["epoch"], 0) + 1
                step_times.setdefault(int(d["epoch"]), []).append(float(d["time"]))
            if d.get("mode") == "eval" and d.get("epoch") is not None:
                k = int(d["epoch"])
                curve.append({"epoch": k + 1, "time_s": float(ends[k] - start) if k in ends else float("nan"),
                              "val_energy_mae_eV_per_atom": d.get("mae_e_per_atom"),
                              "val_forces_mae_eV_per_A": d.get("mae_f"),
                              "val_forces_rmse_eV_per_A": d.get("rmse_f")})
    base = {"epoch_times_s": np.diff(np.concatenate([[0.0], t])).tolist(), "curve": curve,
            "training_seconds": float(t[-1]), "process_seconds": wall,
            "setup_seconds_before_training": float(start - t0), "load": load.summary(),
            "steps_per_epoch": steps.get(0), "shims": used,
            # mace-torch's own per-step timer (forward, backward, optimiser, EMA; no data loading)
            "step_seconds_per_epoch": [float(np.sum(step_times[k])) for k in sorted(step_times)],
            "step_seconds_median": float(np.median(np.concatenate([step_times[k] for k in step_times])))
            if step_times else None, "command": " ".join(cmd[1:]),
            "threads": f"torch {a.torch_threads} (OMP_NUM_THREADS={a.torch_threads})"}

    def partial(reason):
        """The result without a test evaluation: validation errors of the last logged epoch."""
        last = curve[-1] if curve else {}
        nan = float("nan")
        v = {"energy_mae_eV_per_atom": last.get("val_energy_mae_eV_per_atom", nan),
             "forces_mae_eV_per_A": last.get("val_forces_mae_eV_per_A", nan),
             "forces_rmse_eV_per_A": last.get("val_forces_rmse_eV_per_A", nan)}
        return dict(base, validation=v, test={k: nan for k in v}, partial=reason)

    if timed_out:
        return partial(f"mace_run_train stopped after {a.mace_timeout} s, {len(t)} epochs logged; validation "
                       "errors of the last logged epoch (EMA), no test errors")
    model = mdir / "bench.model"
    if not model.exists():
        cands = sorted(mdir.rglob("*.model"))
        model = [c for c in cands if "compiled" not in c.name][0]
    # its saved (best) model on the validation and 450 K frames, through mace_eval_configs
    from ase.io import read, write

    both = []
    for key in ("valid", "test"):
        for f in read(paths[key], index=":"):
            f.info["bench_set"] = key
            both.append(f)
    write(work / "mace_eval_in.xyz", both, format="extxyz")
    ev = shutil.which("mace_eval_configs") or "mace_eval_configs"
    try:
        r = subprocess.run([ev, "--configs", str(work / "mace_eval_in.xyz"), "--model", str(model),
                            "--output", str(work / "mace_eval_out.xyz"), "--device", "cpu",
                            "--default_dtype", a.dtype, "--batch_size", "16"],
                           env=dict(env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"), cwd=work,   # not timed
                           capture_output=True, text=True, timeout=a.eval_timeout)
    except subprocess.TimeoutExpired:
        return partial(f"mace_eval_configs stopped after {a.eval_timeout} s; validation errors of the last "
                       "epoch (EMA) from mace-torch's log, no test errors")
    if r.returncode != 0:
        raise RuntimeError("mace_eval_configs failed:\n" + r.stderr[-3000:])
    out = read(work / "mace_eval_out.xyz", index=":")
    errs = {}
    for name, key in (("validation", "valid"), ("test", "test")):
        fr = [f for f in out if f.info.get("bench_set") == key]
        errs[name] = errors([f.info["MACE_energy"] for f in fr], [f.info["REF_energy"] for f in fr],
                            [f.arrays["MACE_forces"] for f in fr], [f.arrays["REF_forces"] for f in fr],
                            [len(f) for f in fr])
        errs[name]["structures"] = len(fr)
    return dict(base, validation=errs["validation"], test=errs["test"])


# --------------------------------------------------------------------------- report

def steady(r: dict, n_train: int) -> dict:
    t = np.asarray(r["epoch_times_s"])
    rest = t[1:] if len(t) > 1 else t
    per = float(np.mean(rest))
    return {"first_epoch_s": float(t[0]), "s_per_epoch": per,
            "s_per_epoch_median": float(np.median(rest)),
            "structures_per_s": n_train / per, "epochs": len(t), "first_epoch_only": len(t) < 2}


def at_budget(curve: list[dict], budget: float) -> dict | None:
    """Validation errors of the last epoch finished within ``budget`` s of training."""
    done = [c for c in curve if c["time_s"] <= budget + 1e-9]
    return done[-1] if done else None


def process_env(a) -> dict:
    """The environment of both training processes: with ``--tunables on``
    glibc's huge-page malloc tunable, which the ``jaxpot`` command sets for
    itself (jaxpot.runtime); the same for both codes."""
    from jaxpot import runtime

    if a.tunables == "on":
        # already set by the caller, or not applicable here: the environment as it is
        return runtime.environment_with_tunables() if runtime.tunables_wanted() else dict(os.environ)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["JAXPOT_TUNABLES"] = "0"
    return env


def meV(x):
    return "" if x is None or not np.isfinite(x) else f"{1000 * x:.2f}"


def write_report(res: dict, out: Path):
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    c = res["config"]
    L = ["# Training benchmark: jaxpot MACE vs mace-torch MACE", "",
         f"Run {res['date_utc']} on {res['machine']}; {c['n_train']} training / {c['n_valid']} validation "
         f"frames of `water_clusters.extxyz` (seed {c['seed']}), test = {res['test_structures']} frames of "
         f"`water_clusters_hot.extxyz` (450 K); {c['epochs']} epochs each, batch {c['batch_size']}, "
         f"lr {c['lr']} (constant), {c.get('dtype', 'float64')}, MACE 2 x 16 channels, l_max 2, correlation 3, "
         f"cutoff 4.5 A. Both processes' GLIBC_TUNABLES: `{c.get('glibc_tunables') or '(unset)'}`; jaxpot batches: "
         f"{(res.get('jaxpot') or {}).get('batching') or 'padded'}. "
         f"Command: `{res['command']}`", ""]
    L += ["| code | threads | load avg during run (min/mean/max) | steps/epoch | first epoch s | s/epoch (steady) | "
          "structures/s (steady) | prep s | val E MAE meV/atom | val F MAE meV/A | val F RMSE meV/A | "
          "test E MAE meV/atom | test F MAE meV/A | test F RMSE meV/A |",
          "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in ("jaxpot", "mace-torch"):
        r = res.get(name)
        if r is None:
            continue
        s = r["steady"]
        ld = r["load"]
        prep = r["process_seconds"] - r["training_seconds"]
        L.append(f"| {name} | {r['threads']} | {ld['min']:.1f}/{ld['mean']:.1f}/{ld['max']:.1f} | "
                 f"{r.get('steps_per_epoch') or ''} | {s['first_epoch_s']:.1f} | {s['s_per_epoch']:.2f}"
                 f"{' (1st epoch only)' if s.get('first_epoch_only') else ''} | "
                 f"{s['structures_per_s']:.1f} | {prep:.1f} | "
                 f"{meV(r['validation']['energy_mae_eV_per_atom'])} | {meV(r['validation']['forces_mae_eV_per_A'])} | "
                 f"{meV(r['validation']['forces_rmse_eV_per_A'])} | {meV(r['test']['energy_mae_eV_per_atom'])} | "
                 f"{meV(r['test']['forces_mae_eV_per_A'])} | {meV(r['test']['forces_rmse_eV_per_A'])} |")
    L.append("")
    if "ratio" in res:
        q = res["ratio"]
        only1 = any(res[n]["steady"].get("first_epoch_only") for n in ("jaxpot", "mace-torch"))
        L.append(f"Throughput ratio jaxpot / mace-torch (steady-state s/epoch"
                 f"{'; a code with one epoch only: its first epoch' if only1 else ''}): **{q['steady']:.2f} x**; "
                 f"including the first epoch (total training wall time): {q['total_training']:.2f} x. "
                 f"Issue target: >= 2 x and at least as accurate.")
        L.append("")
    if "budget" in res:
        b = res["budget"]
        L += [f"Validation errors (EMA model) at an equal wall budget of {b['seconds']:.0f} s of training "
              "(the shorter of the two training runs, first epoch included; last epoch finished within it):", "",
              "| code | epochs done | val E MAE meV/atom | val F MAE meV/A | val F RMSE meV/A |",
              "| --- | ---: | ---: | ---: | ---: |"]
        for name in ("jaxpot", "mace-torch"):
            e = b.get(name)
            if e:
                L.append(f"| {name} | {e['epoch']} | {meV(e['val_energy_mae_eV_per_atom'])} | "
                         f"{meV(e['val_forces_mae_eV_per_A'])} | {meV(e['val_forces_rmse_eV_per_A'])} |")
        L.append("")
    L += ["Notes:", "",
          "- Epoch wall times include the validation pass (both codes); steady state = mean over epochs 2..N. "
          "First epoch: jaxpot compiles its training and validation steps in it (packed batches: one shape each). "
          "`prep s` = process wall time minus training time (imports, reading, neighbor lists, E0 fit; "
          "mace-torch also its final error tables, model compilation and saving; jaxpot its final evaluation).",
          "- Errors after the same number of epochs: the best EMA model by validation "
          "(jaxpot: force RMSE; mace-torch: loss), validation = the split's validation frames, test = 450 K frames; "
          "mace-torch's model evaluated by this script with jaxpot's formulas.",
          f"- Load: `uptime` before: {res['uptime_before']}; after: {res['uptime_after']}. "
          "The 2-core machine was shared with other work; timings under load are noisy.",
          ]
    if res.get("mace-torch", {}).get("shims"):
        L.append(f"- Not installed here, so given stand-ins on mace-torch's PYTHONPATH: "
                 f"{', '.join(res['mace-torch']['shims'])} (see the script's docstring).")
    for name in ("jaxpot", "mace-torch"):
        if res.get(name, {}).get("partial"):
            L.append(f"- PARTIAL ({name}): {res[name]['partial']}")
    for n in res.get("notes", []):
        L.append(f"- {n}")
    out.with_suffix(".md").write_text("\n".join(L) + "\n")


def rewrite(json_path, out, notes=()):
    """Rewrite the markdown report from a results JSON (``--rewrite``), adding notes."""
    res = json.loads(Path(json_path).read_text())
    n_train = res["config"]["n_train"]
    for name in ("jaxpot", "mace-torch"):
        if name in res:
            res[name]["steady"] = steady(res[name], n_train)
    res["notes"] = list(res.get("notes", [])) + [n for n in notes if n not in res.get("notes", [])]
    write_report(res, Path(out))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-valid", type=int, default=100)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="both codes")
    p.add_argument("--tunables", choices=("on", "off"), default="on",
                   help="glibc.malloc.hugetlb=1 for both processes (as the jaxpot command sets it)")
    p.add_argument("--jaxpot-max-minutes", type=float, default=1e4,
                   help="safety net: jaxpot's own [fit] max_time_minutes")
    p.add_argument("--mace-timeout", type=float, default=None,
                   help="safety net: stop mace_run_train after this many seconds (partial result)")
    p.add_argument("--eval-timeout", type=float, default=None,
                   help="safety net: stop mace_eval_configs after this many seconds (no test errors)")
    p.add_argument("--only", choices=("both", "jaxpot", "mace-torch"), default="both")
    p.add_argument("--out", default=str(HERE / "results" / "bench_training"))
    p.add_argument("--work", default=None, help="keep the run directories here (default: a temporary one)")
    p.add_argument("--note", action="append", default=[], help="a note for the report (repeatable)")
    p.add_argument("--rewrite", metavar="JSON", help="only rewrite the report from this results JSON")
    a = p.parse_args(argv)
    if a.rewrite:
        return rewrite(a.rewrite, a.out, a.note)

    tmp = None
    if a.work:
        work = Path(a.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_training_")
        work = Path(tmp.name)
    paths, sizes = write_split(work, a.n_train, a.n_valid, a.seed)
    res = {"date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), CPU only",
           "command": "python experiments/bench_training.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "config": {"n_train": a.n_train, "n_valid": a.n_valid, "epochs": a.epochs, "batch_size": a.batch_size,
                      "lr": a.lr, "seed": a.seed, "torch_threads": a.torch_threads, "architecture": ARCH,
                      "dtype": a.dtype, "glibc_tunables": process_env(a).get("GLIBC_TUNABLES", "")},
           "test_structures": sizes["test"], "uptime_before": uptime(), "notes": list(a.note)}
    print(res["uptime_before"], flush=True)
    if a.only in ("both", "jaxpot"):
        t0 = time.perf_counter()
        res["jaxpot"] = run_jaxpot(work, paths, a)
        res["jaxpot"]["steady"] = steady(res["jaxpot"], a.n_train)
        print(f"jaxpot done in {time.perf_counter() - t0:.0f} s: {res['jaxpot']['steady']}", flush=True)
        res["uptime_after"] = uptime()
        write_report(res, Path(a.out))        # partial report, overwritten below
    if a.only in ("both", "mace-torch"):
        t0 = time.perf_counter()
        res["mace-torch"] = run_mace(work, paths, a)
        res["mace-torch"]["steady"] = steady(res["mace-torch"], a.n_train)
        print(f"mace-torch done in {time.perf_counter() - t0:.0f} s: {res['mace-torch']['steady']}", flush=True)
    res["uptime_after"] = uptime()
    if "jaxpot" in res and "mace-torch" in res:
        j, m = res["jaxpot"], res["mace-torch"]
        res["ratio"] = {"steady": m["steady"]["s_per_epoch"] / j["steady"]["s_per_epoch"],
                        "total_training": m["training_seconds"] / j["training_seconds"]}
        budget = min(j["training_seconds"], m["training_seconds"])
        res["budget"] = {"seconds": budget, "jaxpot": at_budget(j["curve"], budget),
                         "mace-torch": at_budget(m["curve"], budget)}
    write_report(res, Path(a.out))
    print(Path(a.out).with_suffix(".md").read_text())
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
