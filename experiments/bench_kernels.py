"""Kernel ridge regression vs Gaussian-process regression on global descriptors:
training and prediction time and accuracy against training-set size.

Data: (H2O)4 clusters (12 atoms) sampled by jaxpot NVT MD (Langevin, 250 K,
q-TIP4P/F, several independent trajectories from different starting
clusters), labelled with q-TIP4P/F energies and forces (eV, eV/A). If the
shipped GFN2-xTB water-cluster set ``jaxpot/data/water_clusters.extxyz``
exists, a KRR learning curve on it is added (labels: the calculator
results ``energy``/``forces`` as ASE reads them back).

For each training size n: descriptors, KRR fit (kernel matrix + Cholesky at
the median-distance length scale and fixed lambda), GPR fit (log marginal
likelihood maximised with Adam on min(n, gpr_opt_max) structures, then the
full solve), prediction of energies (batched kernel sum) and of energies +
forces through the ``kind = "kernel"`` potential (autodiff, jit + vmap), and
GPR predictive variances. Errors on a fixed held-out test set.

Usage: python experiments/bench_kernels.py [--quick]
Writes experiments/results/bench_kernels.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxpot
from jaxpot.potentials import build_potential
from jaxpot import kernels as K
from jaxpot.potentials.base import Context, energy_and_forces

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def md_frames(n_traj, frames_per_traj, molecules=4, temperature=250.0, every=20, workdir=None):
    """(H2O)n configurations from NVT MD with q-TIP4P/F (one trajectory per seed)."""
    from ase.io import read
    from jaxpot.simulate import run_md

    out = []
    for seed in range(n_traj):
        d = Path(workdir) / f"md{seed}"
        steps = frames_per_traj * every
        run_md({"system": {"build": {"kind": "water_cluster", "molecules": molecules, "seed": seed}},
                "potential": {"kind": "qtip4pf"},
                "md": {"ensemble": "nvt", "thermostat": "langevin", "temperature": temperature,
                       "timestep": 0.5, "steps": steps + 10 * every, "equilibration_steps": 0,
                       "tau": 50.0, "seed": seed, "block_steps": 2000},
                "output": {"directory": str(d), "every": every}}, progress=False)
        frames = read(d / "trajectory.extxyz", index=":")[10:]   # drop the first 10 frames
        for f in frames:
            f.info.clear()
            f.calc = None
        out += frames
    return out


def labels(atoms_list):
    """q-TIP4P/F energies (eV) and forces (eV/A), one jitted call per composition."""
    from jaxpot.system import from_ase

    sys0 = from_ase(atoms_list[0])
    pot = build_potential({"kind": "qtip4pf"}, sys0)
    params = pot.init(jax.random.PRNGKey(0), sys0)
    ctx = Context(species=sys0.species, cell=sys0.cell)
    ef = jax.jit(jax.vmap(energy_and_forces(pot), in_axes=(None, 0, None)))
    pos = jnp.asarray(np.stack([a.positions for a in atoms_list]))
    e, f = ef(params, pos, ctx)
    return np.asarray(e), np.asarray(f)


def predict_forces(cfg, params, atoms_list):
    """Energies and forces of a kernel model through the Potential (autodiff)."""
    pot = build_potential(cfg, None)
    pos, z = K.pad_structures(atoms_list, cfg["max_atoms"])
    ef = jax.jit(jax.vmap(lambda p, zz: energy_and_forces(pot)(
        params, p, Context(species=zz, cell=jnp.zeros((3, 3))))))
    return ef, jnp.asarray(pos), jnp.asarray(z)


def timed(fn, *args, repeat=1):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t)
    return out, best


_HYPER = {}


def run_size(train, e_train, test, e_test, f_test, n, base_cfg, gpr_opt_max, opt_steps):
    rows = []
    n_atoms = len(test[0])
    # KRR: fit once to compile, then time a second fit
    K.fit_kernel(dict(base_cfg), train[:n], e_train[:n])
    (cfg, params), t_fit = timed(lambda: K.fit_kernel(dict(base_cfg), train[:n], e_train[:n]))
    K.kernel_predict(cfg, params, test)
    pred, t_pred = timed(lambda: K.kernel_predict(cfg, params, test))
    ef, pos, z = predict_forces(cfg, params, test)
    jax.block_until_ready(ef(pos, z))
    (e_p, f_p), t_ef = timed(lambda: ef(pos, z))
    rows.append({"method": "KRR", "n_train": n, "fit_s": t_fit, "opt_s": 0.0,
                 "predict_energy_ms_per_structure": 1e3 * t_pred / len(test),
                 "predict_energy_forces_ms_per_structure": 1e3 * t_ef / len(test),
                 "energy_mae_meV_per_atom": 1e3 * float(np.mean(np.abs(pred - e_test))) / n_atoms,
                 "forces_mae_meV_per_A": 1e3 * float(np.mean(np.abs(np.asarray(f_p) - f_test))),
                 "sigma": cfg["sigma"], "regularization": cfg["regularization"],
                 "signal_variance": cfg["signal_variance"]})
    # GPR: hyperparameters from the marginal likelihood on a subset, then the full solve
    # (optimised once per subset size: sizes above gpr_opt_max reuse the largest subset's)
    m = min(n, gpr_opt_max)
    t0 = time.perf_counter()
    if m not in _HYPER:
        _HYPER[m] = K.fit_kernel({**base_cfg, "gpr": True, "optimize_hyperparameters": True,
                                  "hyperparameter_steps": opt_steps}, train[:m], e_train[:m])[0]
    cfg_opt = _HYPER[m]
    t_opt = time.perf_counter() - t0
    gcfg = {**base_cfg, "gpr": True, "sigma": cfg_opt["sigma"],
            "signal_variance": cfg_opt["signal_variance"], "regularization": cfg_opt["regularization"]}
    (cfg_g, params_g), t_fit_g = timed(lambda: K.fit_kernel(dict(gcfg), train[:n], e_train[:n]))
    K.kernel_predict(cfg_g, params_g, test, variance=True)
    (pred_g, var_g), t_pred_g = timed(lambda: K.kernel_predict(cfg_g, params_g, test, variance=True))
    ef, pos, z = predict_forces(cfg_g, params_g, test)
    jax.block_until_ready(ef(pos, z))
    (_, f_g), t_ef_g = timed(lambda: ef(pos, z))
    err = pred_g - e_test
    sd = np.sqrt(var_g + cfg_g["regularization"])
    rows.append({"method": "GPR", "n_train": n, "fit_s": t_fit_g, "opt_s": t_opt, "opt_subset": m,
                 "predict_energy_variance_ms_per_structure": 1e3 * t_pred_g / len(test),
                 "predict_energy_forces_ms_per_structure": 1e3 * t_ef_g / len(test),
                 "energy_mae_meV_per_atom": 1e3 * float(np.mean(np.abs(err))) / n_atoms,
                 "forces_mae_meV_per_A": 1e3 * float(np.mean(np.abs(np.asarray(f_g) - f_test))),
                 "fraction_within_2sd": float(np.mean(np.abs(err) < 2 * sd)),
                 "mean_predicted_sd_meV": 1e3 * float(np.mean(sd)),
                 "rmse_meV": 1e3 * float(np.sqrt(np.mean(err ** 2))),
                 "sigma": cfg_g["sigma"], "regularization": cfg_g["regularization"],
                 "signal_variance": cfg_g["signal_variance"]})
    return rows


SOAP_CFG = {"descriptor": "soap", "cutoff": 4.0, "regularization": 1e-6, "n_sparse": 1000}


def shipped_learning_curve(path, sizes, base_cfg):
    """Learning curves on a labelled extxyz (energies only; clusters of any
    size): global bag of bonds (KRR) and local SOAP (GAP-style sparse GPR)."""
    from ase.io import read

    frames = read(path, index=":")
    e = np.asarray([a.get_potential_energy() for a in frames])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(frames))
    n_test = min(500, len(frames) // 5)
    test = [frames[i] for i in order[:n_test]]
    train = [frames[i] for i in order[n_test:]]
    e_test, e_train = e[order[:n_test]], e[order[n_test:]]
    natoms = np.asarray([len(a) for a in test])
    rows = []
    for n, model in [(n, m) for m in (base_cfg, SOAP_CFG)
                     for n in [s for s in sizes if s < len(train)] + [len(train)]]:
        # max_atoms / max_counts from all frames, so every test cluster fits
        cfg0 = {**model, "max_atoms": max(len(a) for a in frames)}
        if model["descriptor"] == "bag_of_bonds":
            cfg0["max_counts"] = {s: max(a.get_chemical_symbols().count(s) for a in frames)
                                  for s in sorted({s for a in frames for s in a.get_chemical_symbols()})}
        t = time.perf_counter()
        cfg, params = K.fit_kernel(cfg0, train[:n], e_train[:n])
        t_fit = time.perf_counter() - t   # includes compilation for each new training-set size
        pred = K.kernel_predict(cfg, params, test)
        rows.append({"model": model["descriptor"], "n_train": n, "fit_s": t_fit, "n_frames": len(frames),
                     "energy_mae_meV_per_atom": 1e3 * float(np.mean(np.abs(pred - e_test) / natoms))})
    return rows


def main(argv=None):
    from jaxpot.runtime import relaunch_with_tunables

    relaunch_with_tunables()      # the jaxpot command's huge-page malloc setting (jaxpot/runtime.py)
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    args = ap.parse_args(argv)
    sizes = [100, 200] if args.quick else [100, 250, 500, 1000, 2000, 4000]
    n_test = 100 if args.quick else 1000
    gpr_opt_max, opt_steps = (100, 20) if args.quick else (500, 60)
    base_cfg = {"descriptor": "bag_of_bonds", "kernel": "gaussian", "regularization": 1e-6}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        n_traj = 4
        per = (max(sizes) + n_test) // n_traj + 1
        t = time.perf_counter()
        frames = md_frames(n_traj, per, workdir=tmp)
        t_md = time.perf_counter() - t
    rng = np.random.default_rng(0)
    frames = [frames[i] for i in rng.permutation(len(frames))]
    e, f = labels(frames)
    test, e_test, f_test = frames[:n_test], e[:n_test], f[:n_test]
    train, e_train = frames[n_test:], e[n_test:]
    rows = []
    for n in sizes:
        rows += run_size(train, e_train, test, e_test, f_test, n, base_cfg, gpr_opt_max, opt_steps)
        r = rows[-2:]
        print(f"n={n}: KRR fit {r[0]['fit_s']:.2f}s MAE {r[0]['energy_mae_meV_per_atom']:.2f} meV/atom; "
              f"GPR opt {r[1]['opt_s']:.1f}s fit {r[1]['fit_s']:.2f}s MAE "
              f"{r[1]['energy_mae_meV_per_atom']:.2f} meV/atom", flush=True)
    shipped = Path(jaxpot.__file__).parent / "data" / "water_clusters.extxyz"
    shipped_rows = shipped_learning_curve(shipped, sizes, base_cfg) if shipped.exists() else None
    result = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
                   f"{jax.devices()[0].platform}",
        "load_average_end": os.getloadavg(),
        "jax": jax.__version__, "command": "python experiments/bench_kernels.py" + (" --quick" if args.quick else ""),
        "data": {"system": "(H2O)4, 12 atoms", "labels": "q-TIP4P/F energy and forces",
                 "sampling": "4 NVT Langevin trajectories at 250 K, every 10 fs",
                 "frames": len(frames), "test_frames": n_test, "energy_std_eV": float(np.std(e)),
                 "forces_mean_abs_eV_per_A": float(np.mean(np.abs(f))),
                 "md_seconds": t_md},
        "model": base_cfg, "gpr_hyperparameter_subset": gpr_opt_max, "gpr_adam_steps": opt_steps,
        "rows": rows, "shipped_water_clusters": shipped_rows,
        "total_seconds": time.perf_counter() - t_start,
    }
    suffix = "_quick" if args.quick else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"bench_kernels{suffix}.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Kernel regression benchmark ({result['date_utc']} UTC)", "",
             f"Machine: {result['machine']}; load average at the end {result['load_average_end']}; "
             f"command `{result['command']}`; total {result['total_seconds']:.0f} s.", "",
             f"Data: {result['data']['system']}, {result['data']['labels']}, "
             f"{result['data']['sampling']}; {n_test} held-out test structures; energy std "
             f"{result['data']['energy_std_eV'] * 1e3:.0f} meV, mean |force component| "
             f"{result['data']['forces_mean_abs_eV_per_A'] * 1e3:.0f} meV/A. Model: {base_cfg}; sigma = median "
             "descriptor distance for KRR; GPR hyperparameters (sigma, s^2, lambda) maximise the "
             f"marginal likelihood ({opt_steps} Adam steps) on min(n, {gpr_opt_max}) structures, "
             "optimised once per subset size (hyper-opt s is 0 where reused). Fit and predict times "
             "exclude compilation (a warm-up fit/prediction precedes each timing).", "",
             "| method | n_train | fit s | hyper-opt s | predict E ms/struct | predict E+F ms/struct "
             "| E MAE meV/atom | F MAE meV/A | within 2 sd |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        pe = r.get("predict_energy_ms_per_structure", r.get("predict_energy_variance_ms_per_structure"))
        lines.append(f"| {r['method']} | {r['n_train']} | {r['fit_s']:.3f} | {r['opt_s']:.1f} | {pe:.3f} "
                     f"| {r['predict_energy_forces_ms_per_structure']:.3f} | {r['energy_mae_meV_per_atom']:.2f} "
                     f"| {r['forces_mae_meV_per_A']:.0f} | {r.get('fraction_within_2sd', float('nan')):.2f} |")
    lines += ["", "GPR 'predict E' includes the predictive variance. 'within 2 sd': fraction of test "
              "errors inside two predicted standard deviations (latent variance + noise). Forces of these "
              "energy-only fits (autodiff of the predicted energy) are poor: their MAE is close to the mean "
              "|force component|, because one energy label per 12-atom structure constrains 36 force "
              "components weakly; `gradient_domain = true` fits forces (see tests/test_kernels.py). "
              "Timings were taken on a shared 2-core machine (see the load average) and are noisy to "
              "about a factor 2.", ""]
    if shipped_rows:
        lines += [f"Shipped GFN2-xTB water clusters (`jaxpot/data/water_clusters.extxyz`, "
                  f"{shipped_rows[0]['n_frames']} frames, (H2O)1..12), energies only, per-element energy offsets, "
                  "errors per atom of each test cluster; bag_of_bonds: KRR as above; soap: GAP-style sparse "
                  f"GPR {SOAP_CFG}:", "",
                  "| model | n_train | fit s (incl. compile) | E MAE meV/atom |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {r['model']} | {r['n_train']} | {r['fit_s']:.2f} | {r['energy_mae_meV_per_atom']:.2f} |"
                  for r in shipped_rows]
    else:
        lines += ["The shipped GFN2-xTB set `jaxpot/data/water_clusters.extxyz` did not exist at run time."]
    (RESULTS / f"bench_kernels{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
