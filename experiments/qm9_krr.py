"""Coulomb-matrix and bag-of-bonds kernel ridge regression on QM9 atomization energies.

The classic energy benchmark on real data (issue 8, optional study): learning
curves of jaxpot's global-descriptor KRR (``jaxpot.kernels``) on the
B3LYP/6-31G(2df,p) atomization energies of QM9 (Ramakrishnan et al., Sci. Data 1,
140022 (2014)), compared with the published curves of Rupp et al., PRL 108,
058301 (2012) and Hansen et al., JPCL 6, 2326 (2015).

Data (not in the repository, never committed): the ``qm9pack`` wheel on PyPI
ships the 130,831 molecules of QM9 that passed the QM9 consistency check as CSV
(B3LYP geometries in A, U0 in Hartree). Fetch it without installing it (its
import needs ``pkg_resources``; the CSV files are read directly here):

    pip download qm9pack==1.0.3 --no-deps -d /tmp/qm9pack
    unzip -q /tmp/qm9pack/qm9pack-1.0.3-py3-none-any.whl -d /tmp/qm9pack/unpacked
    python experiments/qm9_krr.py --data /tmp/qm9pack/unpacked/qm9pack/data

``--data`` may also be the wheel file itself or the unpacked wheel's root; the
study skips with a message (exit status 0) when the data are absent.

Target: the atomization energy at 0 K, E_at = U0 - sum_atoms E_atom, with the
B3LYP free-atom U0 energies of the QM9 atomref table (H -0.500273, C -37.846772,
N -54.583861, O -75.064579, F -99.718730 Hartree), in kcal/mol
(1 Hartree = 627.509 kcal/mol).

Protocol (seeded): one random permutation of the 130,831 molecules gives a fixed
test set (2000), a validation set (1000) and a training pool; the training sets
(1000, 2000, 4000, 8000) are nested prefixes of the pool. Descriptors are
jaxpot's ``coulomb_sorted`` (row-norm sorted Coulomb matrix, Hartree; 29 atoms
-> 435 features) and ``bag_of_bonds`` (bag sizes from the element counts of the
whole data set), unstandardised, with the Laplacian kernel
k = exp(-|x - y|_1 / sigma) as in Hansen et al. (2013, 2015). The energy offset
is jaxpot's default (``offset = "per_element"``: least-squares element energies
fitted to the training set, "dressed atoms"); the kernel fits the rest with
``krr_fit`` (Cholesky). sigma and the ridge lambda are chosen per training size
on the validation set from a grid (sigma in multiples of the median L1 distance
of the training descriptors); at the largest size only the three sigmas around
the previous size's optimum are tried, with its lambda, to stay within the CPU
budget. One fit per descriptor is repeated through the public entry points
``fit_kernel`` + ``kernel_predict`` (ase.Atoms in, eV) as a cross-check of the
fast path.

    python experiments/qm9_krr.py --data DIR                     # 1000 2000 4000 8000
    python experiments/qm9_krr.py --data DIR --sizes 1000 2000   # quick

Writes experiments/results/qm9_krr.{json,md}; the md keeps any text below the
line ``<!-- discussion -->`` of an existing file.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import sys
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

HARTREE_KCAL = 627.509          # kcal/mol per Hartree
EV_KCAL = 23.0605               # kcal/mol per eV
HARTREE_EV = HARTREE_KCAL / EV_KCAL
# B3LYP/6-31G(2df,p) free-atom U0 (Hartree), QM9 atomref table
ATOM_U0 = {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579, "F": -99.718730}
SPECIES = ["H", "C", "N", "O", "F"]
Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
DESCRIPTORS = ("coulomb_sorted", "bag_of_bonds")
SIGMA_FACTORS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
LAMBDAS = (1e-8, 1e-5, 1e-3)
MARKER = "<!-- discussion -->"


# ---------------------------------------------------------------- data

def _open_parts(data: Path):
    """Text streams of the three qm9pack CSV parts: ``data`` is a folder
    holding them (or a parent of ``qm9pack/data``), or the wheel itself."""
    if data.is_file() and data.suffix in (".whl", ".zip"):
        zf = zipfile.ZipFile(data)
        names = {Path(n).name: n for n in zf.namelist() if n.endswith(".csv")}
        if not all(p in names for p in PARTS):
            return None
        return [io.TextIOWrapper(zf.open(names[p]), encoding="utf-8") for p in PARTS]
    for folder in (data, data / "data", data / "qm9pack" / "data"):
        if all((folder / p).is_file() for p in PARTS):
            return [open(folder / p, encoding="utf-8") for p in PARTS]
    return None


def load_qm9(data: Path):
    """(elements, geometry strings, atomization energies kcal/mol) of all
    molecules, in file order; geometries are parsed later, only where used."""
    streams = _open_parts(data)
    if streams is None:
        return None
    csv.field_size_limit(1 << 30)
    elements, xyz, e_at, names = [], [], [], []
    for s in streams:
        with s:
            for row in csv.DictReader(s):
                el = json.loads(row["Elements"].replace("'", '"'))
                u0 = float(row["InternalEnergy_0K_au"])
                if int(row["N_atoms"]) != len(el):
                    raise ValueError(f"{row['XYZ_file']}: N_atoms does not match Elements")
                elements.append(el)
                xyz.append(row["XYZ_Ang"])
                names.append(row["XYZ_file"])
                e_at.append((u0 - sum(ATOM_U0[a] for a in el)) * HARTREE_KCAL)
    return elements, xyz, np.asarray(e_at), names


def padded(elements, xyz, idx, max_atoms: int):
    """Positions (B, max_atoms, 3) A and atomic numbers (B, max_atoms) of the rows idx."""
    pos = np.zeros((len(idx), max_atoms, 3))
    z = np.zeros((len(idx), max_atoms), np.int32)
    for k, i in enumerate(idx):
        r = np.asarray(json.loads(xyz[i].replace("*^", "e")), dtype=np.float64)
        n = len(elements[i])
        if r.shape != (n, 3):
            raise ValueError(f"row {i}: geometry shape {r.shape}, expected ({n}, 3)")
        pos[k, :n] = r
        z[k, :n] = [Z[a] for a in elements[i]]
    return pos, z


def to_atoms(pos, z):
    from ase import Atoms
    out = []
    for p, zz in zip(pos, z):
        n = int(np.sum(zz > 0))
        out.append(Atoms(numbers=zz[:n], positions=p[:n]))
    return out


# ---------------------------------------------------------------- KRR

def composition(z):
    return np.stack([(z == Z[s]).sum(axis=1) for s in SPECIES], axis=1).astype(float)


def l1_distances(x, y):
    # jaxpot's batched distance kernel (L1 for the Laplacian kernel), computed once
    # per descriptor and reused for every sigma of the grid
    from jaxpot.kernels.regression import _distance_matrix
    return np.asarray(_distance_matrix(x, y, "laplacian"))


def fit_predict(d_tt, d_pt, y, comp_t, comp_p, sigma, lam):
    """Dressed-atom offset + Laplacian KRR; predictions for the rows of d_pt."""
    import jax.numpy as jnp
    from jaxpot.kernels import krr_fit
    e_el = np.linalg.lstsq(comp_t, y, rcond=None)[0]
    resid = y - comp_t @ e_el
    alpha = np.asarray(krr_fit(jnp.asarray(np.exp(-d_tt / sigma)), jnp.asarray(resid), lam))
    return comp_p @ e_el + np.exp(-d_pt / sigma) @ alpha


def errors(pred, ref):
    d = pred - ref
    return {"mae": float(np.mean(np.abs(d))), "rmse": float(np.sqrt(np.mean(d * d))),
            "max": float(np.max(np.abs(d)))}


def run(args):
    import jax
    from jaxpot.errors import InputError
    from jaxpot.kernels import compute_descriptors, fit_kernel, kernel_predict

    t0 = time.perf_counter()
    loaded = load_qm9(Path(args.data))
    if loaded is None:
        print(f"qm9_krr: QM9 data not found at {args.data!r}; see the docstring of "
              f"{Path(__file__).name} for how to fetch the qm9pack wheel. Skipping.")
        return None
    elements, xyz, e_all, names = loaded
    n_mol = len(e_all)
    max_atoms = max(len(el) for el in elements)
    max_counts = {s: max(el.count(s) for el in elements) for s in SPECIES}
    t_load = time.perf_counter() - t0
    print(f"{n_mol} molecules, max {max_atoms} atoms, max counts {max_counts}, "
          f"E_at mean {e_all.mean():.1f} std {e_all.std():.1f} kcal/mol ({t_load:.1f} s)", flush=True)

    sizes = sorted(args.sizes)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(n_mol)
    test_idx = perm[:args.test]
    val_idx = perm[args.test:args.test + args.val]
    train_idx = perm[args.test + args.val:args.test + args.val + sizes[-1]]
    sel = np.concatenate([train_idx, val_idx, test_idx])
    pos, z = padded(elements, xyz, sel, max_atoms)
    y = e_all[sel]
    nt, nv = len(train_idx), len(val_idx)
    tr, va, te = slice(0, nt), slice(nt, nt + nv), slice(nt + nv, None)
    comp = composition(z)

    out = {"date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
           "load_average_start": list(os.getloadavg()),
           "jax": jax.__version__, "data": "qm9pack 1.0.3 CSV (QM9, 130,831 molecules, B3LYP/6-31G(2df,p))",
           "n_molecules": n_mol, "target": "U0 atomization energy, kcal/mol",
           "atom_u0_hartree": ATOM_U0, "seed": args.seed, "n_test": len(test_idx), "n_val": nv,
           "sizes": sizes, "max_atoms": max_atoms, "max_counts": max_counts,
           "test_set": {"mean_abs_energy": float(np.mean(np.abs(y[te]))), "std": float(np.std(y[te]))},
           "kernel": "laplacian", "offset": "per_element (least squares on the training set)",
           "standardize": False, "sigma_factors": list(SIGMA_FACTORS), "lambdas": list(LAMBDAS),
           "curves": {}, "checks": {}}

    # dressed-atom baseline (the offset alone), for context
    base = []
    for n in sizes:
        e_el = np.linalg.lstsq(comp[:n], y[:n], rcond=None)[0]
        base.append({"n_train": n, "test": errors(comp[te] @ e_el, y[te])})
    out["curves"]["dressed_atom"] = base
    print("dressed atoms: " + ", ".join(f"{r['n_train']}: {r['test']['mae']:.2f}" for r in base), flush=True)

    for desc in args.descriptors:
        cfg = {"descriptor": desc, "kernel": "laplacian", "species": SPECIES, "max_atoms": max_atoms,
               "max_counts": max_counts if desc == "bag_of_bonds" else None}
        t1 = time.perf_counter()
        x = compute_descriptors(cfg, pos, z)
        t_desc = time.perf_counter() - t1
        t1 = time.perf_counter()
        d_tt = l1_distances(x[tr], x[tr])
        d_vt = l1_distances(x[va], x[tr])
        d_et = l1_distances(x[te], x[tr])
        t_dist = time.perf_counter() - t1
        print(f"{desc}: {x.shape[1]} features, descriptors {t_desc:.1f} s, L1 distances {t_dist:.1f} s",
              flush=True)
        rows, prev = [], None
        for n in sizes:
            t1 = time.perf_counter()
            med = float(np.median(d_tt[:n, :n][np.triu_indices(min(n, 2000), k=1)]))
            if n == sizes[-1] and prev is not None and len(sizes) > 1:
                k = SIGMA_FACTORS.index(prev["sigma_factor"])
                factors = SIGMA_FACTORS[max(k - 1, 0):k + 2]
                lams = (prev["lambda"],)
            else:
                factors, lams = SIGMA_FACTORS, LAMBDAS
            grid, best = [], None
            for f in factors:
                for lam in lams:
                    try:
                        pv = fit_predict(d_tt[:n, :n], d_vt[:, :n], y[:n], comp[:n], comp[va], f * med, lam)
                    except InputError:
                        grid.append({"sigma_factor": f, "lambda": lam, "val_mae": None})
                        continue
                    mae = float(np.mean(np.abs(pv - y[va])))
                    grid.append({"sigma_factor": f, "lambda": lam, "val_mae": mae})
                    if best is None or mae < best["val_mae"]:
                        best = grid[-1]
            sigma = best["sigma_factor"] * med
            pe = fit_predict(d_tt[:n, :n], d_et[:, :n], y[:n], comp[:n], comp[te], sigma, best["lambda"])
            row = {"n_train": n, "median_l1": med, "sigma_factor": best["sigma_factor"], "sigma": sigma,
                   "lambda": best["lambda"], "val_mae": best["val_mae"], "test": errors(pe, y[te]),
                   "fits": len(grid), "seconds": time.perf_counter() - t1, "grid": grid}
            rows.append(row)
            prev = row
            print(f"{desc:15s} N={n:5d} sigma={sigma:9.2f} ({best['sigma_factor']} x median) "
                  f"lambda={best['lambda']:.0e}  val MAE {best['val_mae']:.2f}  test MAE "
                  f"{row['test']['mae']:.2f} RMSE {row['test']['rmse']:.2f} kcal/mol  "
                  f"({len(grid)} fits, {row['seconds']:.0f} s)", flush=True)
            out["curves"][desc] = rows
            write(out)
        out.setdefault("timing_s", {})[desc] = {"descriptors": t_desc, "distances": t_dist}

        # cross-check through the public entry points at the smallest size (energies in eV)
        n, r0 = sizes[0], rows[0]
        t1 = time.perf_counter()
        cfg_fit = {"kind": "kernel", **{k: v for k, v in cfg.items() if v is not None},
                   "sigma": r0["sigma"], "regularization": r0["lambda"], "standardize": False,
                   "offset": "per_element"}
        atoms_tr, atoms_te = to_atoms(pos[:n], z[:n]), to_atoms(pos[te], z[te])
        pot_cfg, params = fit_kernel(cfg_fit, atoms_tr, y[:n] / EV_KCAL)
        pred = kernel_predict(pot_cfg, params, atoms_te) * EV_KCAL
        chk = errors(pred, y[te])
        out["checks"][desc] = {"n_train": n, "fit_kernel_test_mae": chk["mae"],
                               "fast_path_test_mae": r0["test"]["mae"],
                               "seconds": time.perf_counter() - t1}
        print(f"{desc}: fit_kernel + kernel_predict at N={n}: test MAE {chk['mae']:.3f} "
              f"(fast path {r0['test']['mae']:.3f}) kcal/mol", flush=True)
    out["load_average_end"] = list(os.getloadavg())
    out["total_seconds"] = time.perf_counter() - t0
    write(out)
    return out


# ---------------------------------------------------------------- report

PUBLISHED = """\
Published reference points (other data sets and protocols: context, not a like-for-like target;
"checked" = the number was found in the paper's abstract as stored by the search tool used here):

| source | data | descriptor / kernel | training set | MAE kcal/mol | checked |
| --- | --- | --- | --- | ---: | --- |
| Rupp et al., PRL 108, 058301 (2012) | QM7: 7165 GDB-13 molecules, <= 7 C/N/O/S, PBE0 | Coulomb-matrix eigenvalues / Gaussian | cross-validation over the set (~7k) | ~10 | yes (abstract) |
| Hansen et al., JCTC 9, 3404 (2013) | QM7, PBE0 | best of several (sorted / random CM, KRR, NN) | cross-validation over the set | ~3 | yes (abstract) |
| Hansen et al., JPCL 6, 2326 (2015) | QM7-type GDB subsets, PBE0 | bag of bonds / Laplacian | cross-validation over the set | ~1.5 | no (abstract not retrievable; approximate) |
| Faber et al., arXiv:1702.05532 (2017) | QM9 (U0 among 13 properties) | CM and BoB KRR among others | up to ~117k | learning curves | no (numbers not retrieved) |
"""


def markdown(out) -> str:
    lines = ["# QM9 atomization energies: Coulomb-matrix and bag-of-bonds KRR", "",
             f"Generated by `experiments/qm9_krr.py` ({out['date_utc']} UTC, {out['machine']}, jax "
             f"{out['jax']}, load average at start {out['load_average_start'][0]:.1f}).", "",
             f"Data: {out['data']}; target {out['target']} (U0 minus the QM9 atomref free-atom U0). "
             f"Seed {out['seed']}: fixed random test set of {out['n_test']} molecules (mean |E_at| "
             f"{out['test_set']['mean_abs_energy']:.0f}, std {out['test_set']['std']:.0f} kcal/mol), "
             f"validation set of {out['n_val']} for sigma and lambda, nested training sets. Laplacian "
             "kernel on unstandardised descriptors (Hartree, L1 distance); per-element offset "
             "(dressed atoms) fitted on the training set, KRR on the rest. sigma = factor x median "
             f"L1 distance, factors {list(out['sigma_factors'])}, lambda {list(out['lambdas'])}; "
             "largest size: three factors around the previous optimum, its lambda.", "",
             "Test-set MAE (RMSE) in kcal/mol:", ""]
    descs = [d for d in DESCRIPTORS if d in out["curves"]]
    head = "| N train | dressed atoms | " + " | ".join(descs) + " |"
    lines += [head, "| ---: | ---: | " + " | ".join("---:" for _ in descs) + " |"]
    for b in out["curves"]["dressed_atom"]:
        n = b["n_train"]
        cells = [f"{b['test']['mae']:.2f} ({b['test']['rmse']:.2f})"]
        for d in descs:
            r = next((r for r in out["curves"][d] if r["n_train"] == n), None)
            cells.append(f"{r['test']['mae']:.2f} ({r['test']['rmse']:.2f})" if r else "")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "Chosen hyperparameters (sigma in Hartree of L1 distance):", "",
              "| descriptor | N train | median L1 | sigma (factor) | lambda | val MAE | test max err | fits | s |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for d in descs:
        for r in out["curves"][d]:
            lines.append(f"| {d} | {r['n_train']} | {r['median_l1']:.1f} | {r['sigma']:.1f} "
                         f"({r['sigma_factor']:g}) | {r['lambda']:.0e} | {r['val_mae']:.2f} | "
                         f"{r['test']['max']:.1f} | {r['fits']} | {r['seconds']:.0f} |")
    if out.get("checks"):
        lines += ["", "Cross-check, same fit through `fit_kernel` + `kernel_predict` (ase.Atoms, eV): " +
                  "; ".join(f"{d} N={c['n_train']}: {c['fit_kernel_test_mae']:.3f} vs fast path "
                            f"{c['fast_path_test_mae']:.3f} kcal/mol" for d, c in out["checks"].items())]
    if "total_seconds" in out:
        lines += ["", f"Total wall time {out['total_seconds']:.0f} s; load average at the end "
                  f"{out['load_average_end'][0]:.1f}."]
    lines += ["", PUBLISHED]
    return "\n".join(lines) + "\n"


def write(out):
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "qm9_krr.json").write_text(json.dumps(out, indent=1) + "\n")
    md = RESULTS / "qm9_krr.md"
    tail = ""
    if md.exists():
        old = md.read_text()
        if MARKER in old:
            tail = old[old.index(MARKER):]
    md.write_text(markdown(out) + ("\n" + tail if tail else ""))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("QM9PACK_DATA", "/tmp/qm9pack/unpacked/qm9pack/data"),
                   help="qm9pack data folder (qm9_part1..3.csv), unpacked wheel root, or the wheel")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--descriptors", nargs="+", default=list(DESCRIPTORS), choices=DESCRIPTORS)
    args = p.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
