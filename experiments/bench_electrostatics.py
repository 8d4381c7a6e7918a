"""Cost of Gaussian-charge electrostatics against system size.

For water-like systems of N Gaussian charges (O -0.8 e, w = 0.9 A; H +0.4 e,
w = 0.6 A; rigid molecules with random orientations on a cubic lattice at
0.1 atoms/A^3, the atom density of liquid water) we time one energy+forces
call of the potential kind "gaussian_electrostatics":

- ``cluster``: the isolated system, all N(N-1)/2 pairs (O(N^2)),
- ``ewald`` and ``pme``: the same molecules in a periodic cube (real-space
  cutoff 8 A, accuracy 1e-5; the neighbor list is built once, outside the
  timing),
- ``qeq-dense``: charge equilibration of the cluster by a dense KKT solve
  (O(N^3)), energy+forces through the solve,
- ``qeq-cg-pme``: periodic QEq by conjugate gradients on PME matrix-vector
  products (charges only, then energy+forces).

Each case is jitted, run once (compile time reported separately), then timed
as the best of ``--repeat`` calls after ``jax.block_until_ready``. Cost-vs-N
slopes are least-squares fits of log t against log N over the sizes run.
Results go to experiments/results/bench_electrostatics.{json,md}.

Usage: python experiments/bench_electrostatics.py [--quick] [--sizes 1000 3000 ...]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxpot  # noqa: F401  (float64)
from jaxpot.partition import neighbor_list
from jaxpot.potentials import build_potential
from jaxpot.potentials.base import Context, energy_and_forces
from jaxpot.system import System, species_from_symbols

RESULTS = Path(__file__).resolve().parent / "results"
WATER = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
BASE = {"kind": "gaussian_electrostatics", "widths": {"H": 0.6, "O": 0.9}, "cutoff": 8.0, "accuracy": 1e-5}
FIXED = {**BASE, "charges": {"H": 0.4, "O": -0.8}}
QEQ = {**BASE, "charge_model": "qeq", "electronegativity": {"H": 4.5, "O": 8.5},
       "hardness": {"H": 9.0, "O": 11.0}}
DENSITY = 0.1   # atoms / A^3


def water_system(n_atoms, periodic, seed=0):
    """~n_atoms atoms (a multiple of 3) of randomly oriented waters on a cubic
    lattice at DENSITY; a periodic cube or the same atoms as a cluster."""
    n_mol = max(1, n_atoms // 3)
    side = int(np.ceil(n_mol ** (1.0 / 3.0)))
    spacing = (3.0 / DENSITY) ** (1.0 / 3.0)
    rng = np.random.default_rng(seed)
    sites = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n_mol]
    pos = []
    for c in sites:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        pos.append(WATER @ q.T + (c + 0.5) * spacing)
    pos = np.concatenate(pos)
    sym = ["O", "H", "H"] * n_mol
    length = side * spacing
    cell = np.eye(3) * length if periodic else np.zeros((3, 3))
    return System(positions=jnp.asarray(pos), species=jnp.asarray(species_from_symbols(sym)),
                  masses=jnp.ones(len(sym)), cell=jnp.asarray(cell), pbc=(periodic,) * 3)


def best_time(fn, repeat):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best, compile_s


def run_case(case, n, repeat):
    periodic = case in ("ewald", "pme", "qeq-cg-pme")
    system = water_system(n, periodic)
    if case == "cluster":
        cfg = FIXED
    elif case in ("ewald", "pme"):
        cfg = {**FIXED, "coulomb": case}
    elif case == "qeq-dense":
        cfg = QEQ
    else:
        cfg = {**QEQ, "coulomb": "pme", "qeq_solver": "cg", "cg_tol": 1e-8}
    pot = build_potential(cfg, system)
    params = pot.init(jax.random.PRNGKey(0), system)
    nbr = None
    t_nbr = 0.0
    if pot.cutoff > 0:
        fns = neighbor_list(pot.cutoff, np.asarray(system.cell), True, skin=1.0)
        t0 = time.perf_counter()
        nbr = jax.block_until_ready(fns.allocate(system.positions, system.cell))
        t_nbr = time.perf_counter() - t0
    ctx = Context(species=system.species, cell=system.cell, neighbors=nbr)
    ef = jax.jit(energy_and_forces(pot))
    t, c = best_time(lambda: ef(params, system.positions, ctx), repeat)
    row = {"case": case, "atoms": int(system.n_atoms), "seconds": t, "compile_seconds": c,
           "neighbor_build_seconds": t_nbr, "us_per_atom": 1e6 * t / system.n_atoms,
           "coulomb": pot.config["coulomb"]}
    e, f = ef(params, system.positions, ctx)
    row["energy_eV"] = float(e)
    row["finite"] = bool(np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(f))))
    if case.startswith("qeq"):
        qf = jax.jit(pot.charges)
        tq, _ = best_time(lambda: qf(params, system.positions, ctx), repeat)
        q = np.asarray(qf(params, system.positions, ctx))
        row["charges_seconds"] = tq
        row["total_charge"] = float(q.sum())
    return row


def slopes(rows):
    out = {}
    for case in sorted({r["case"] for r in rows}):
        pts = [(r["atoms"], r["seconds"]) for r in rows if r["case"] == case]
        if len(pts) >= 2:
            x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            out[case] = float(np.polyfit(x, y, 1)[0])
    return out


def main(argv=None):
    from jaxpot.runtime import relaunch_with_tunables

    relaunch_with_tunables()      # the jaxpot command's huge-page malloc setting (jaxpot/runtime.py)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, smoke run (not written to results)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000, 20000])
    ap.add_argument("--qeq-dense-max", type=int, default=3000, help="largest N for the dense QEq solve")
    ap.add_argument("--cluster-max", type=int, default=20000, help="largest N for the all-pairs sum")
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="skip a case at a size where its time, extrapolated from the previous size "
                         "with slope 2 (3 for qeq-dense), exceeds this")
    ap.add_argument("--cases", nargs="+", default=["cluster", "ewald", "pme", "qeq-dense", "qeq-cg-pme"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "bench_electrostatics"))
    args = ap.parse_args(argv)
    sizes = [150, 300] if args.quick else args.sizes
    rows = []
    last = {}
    skipped = []
    for n in sizes:
        for case in args.cases:
            if case == "qeq-dense" and n > args.qeq_dense_max:
                continue
            if case == "cluster" and n > args.cluster_max:
                continue
            if case in last:
                n0, t0 = last[case]
                predicted = t0 * (n / n0) ** (3 if case == "qeq-dense" else 2)
                if predicted > args.max_seconds:
                    skipped.append(f"{case} N={n} (predicted {predicted:.0f} s)")
                    print("skip", skipped[-1], flush=True)
                    continue
            row = run_case(case, n, 1 if args.quick else args.repeat)
            last[case] = (row["atoms"], row["seconds"] + row.get("charges_seconds", 0.0))
            rows.append(row)
            print(f"{case:11s} N={row['atoms']:6d} {row['seconds'] * 1e3:10.1f} ms  "
                  f"(compile {row['compile_seconds']:.1f} s)", flush=True)
    fit = slopes(rows)
    dev = jax.devices()[0]
    meta = {"device": f"{dev.platform} {getattr(dev, 'device_kind', '')}".strip(),
            "cpu_count": __import__("os").cpu_count(), "machine": platform.machine(),
            "jax": jax.__version__, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "command": "python experiments/bench_electrostatics.py " + " ".join(argv or [])}
    print("slopes d log t / d log N:", {k: round(v, 2) for k, v in fit.items()})
    if args.quick:
        return rows, fit
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows, "slopes": fit,
                                                    "skipped": skipped}, indent=1))
    lines = [f"# Gaussian-charge electrostatics: energy+forces cost vs N ({meta['device']}, "
             f"{meta['date_utc']} UTC)", "",
             "Water-like Gaussian charges at 0.1 atoms/A^3, cutoff 8 A, accuracy 1e-5, float64. "
             "Best of repeated jitted calls; compile time apart; neighbor list built outside the timing.", "",
             "| case | method | atoms | energy+forces ms | us/atom | compile s | charges ms |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        cq = f"{r['charges_seconds'] * 1e3:.1f}" if "charges_seconds" in r else ""
        lines.append(f"| {r['case']} | {r['coulomb']} | {r['atoms']} | {r['seconds'] * 1e3:.1f} | "
                     f"{r['us_per_atom']:.2f} | {r['compile_seconds']:.1f} | {cq} |")
    lines += ["", "Fitted slopes d log(t) / d log(N): " + ", ".join(f"{k} {v:.2f}" for k, v in fit.items()), ""]
    if skipped:
        lines += ["Skipped (over the time budget per call): " + "; ".join(skipped), ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    return rows, fit


if __name__ == "__main__":
    main()
