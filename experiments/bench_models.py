"""Speed of the equivariant models: jitted energy + forces of jaxpot's
``nequip`` and ``mace`` kinds on liquid water, side by side with mace-torch.

Systems: ``jaxpot.build.water_box(n, density 0.997 g/cm^3, relax=False)``
(periodic cubic boxes; small boxes use every periodic image within the
cutoff). Models: the documented defaults of each kind (species H, O; cutoff
5 A, 32 channels, l_max 2, 8 Bessel functions, p = 6; nequip 3 layers, mace
2 layers with correlation 3), untrained (the cost does not depend on the
weights).

jaxpot: ``jax.jit(energy_and_forces(potential))`` at a fixed neighbor list
built by ``jaxpot.partition`` at the cutoff with no skin (the model's cost;
in MD the driver's 1 A skin carries ~(6/5)^3 = 1.7 x more pairs, masked
inside the model but still computed), its slots padded by the list's
capacity margin; positions and params in float32 or float64.
Compile seconds: ``jit(...).lower().compile()``.

mace-torch (only if importable): ``mace.modules.MACE`` with matched
hyperparameters (r_max 5, 8 Bessel, p = 6, max_ell 2, hidden
32x0e+32x1o+32x2e, 2 interactions RealAgnosticResidualInteractionBlock,
correlation 3, radial MLP [64, 64, 64], readout MLP 16x0e, avg_num_neighbors
10), in eager mode with ``compute_force=True``, torch threads = jax's CPU
threads (all cores), given exactly the directed edges with r < 5 A
(jaxpot's list also holds its capacity margin of masked slots).
Ratio = mace-torch time / jaxpot mace time, same structure, same dtype,
same run.

Timing: one warm-up call, then repeated calls until >= 2 calls and >= 1 s
(cap 10 s), ``jax.block_until_ready`` after each; reported per call and per
atom. Engines are timed one after the other in one process on the same
(shared) cores, so load hits all alike only roughly; ratios are the robust
number.

    python experiments/bench_models.py            # 63, 192 and 384 atoms (~10 min on 2 cores)
    python experiments/bench_models.py --large    # also 768 and 1536 atoms (long on CPU)
    python experiments/bench_models.py --quick    # 63 atoms, float64 only

mace-torch is timed up to ``--torch-max-atoms`` (default 192): in eager
mode on 2 cores it takes seconds per call already at 63 atoms.

Caveat on the ratio: both are MACE architectures with the same
hyperparameters, but jaxpot's product basis is a factorised coupling tree
(see ``jaxpot.ml.mace.ProductBasis``) rather than
mace-torch's full symmetric contraction, so the ratio compares the two
implementations as shipped, not identical arithmetic.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import time_calls  # noqa: E402

import jaxpot  # noqa: E402
from jaxpot.build import water_box  # noqa: E402
from jaxpot.partition import neighbor_list  # noqa: E402
from jaxpot.potentials import build_potential  # noqa: E402
from jaxpot.potentials.base import Context, energy_and_forces  # noqa: E402
from jaxpot.simulate import cast_params  # noqa: E402
from jaxpot.system import from_ase  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TIMING = dict(min_steps=2, min_seconds=1.0, max_seconds=10.0)
SKIN = 0.0


def jaxpot_case(kind, atoms, dtype_name):
    dtype = jnp.float32 if dtype_name == "float32" else jnp.float64
    system = from_ase(atoms, dtype=dtype)
    pot = build_potential({"kind": kind, "species": ["H", "O"]}, system)
    params = cast_params(pot.init(jax.random.PRNGKey(0), system), dtype)
    fns = neighbor_list(pot.cutoff, np.asarray(system.cell), True, skin=SKIN)
    nbr = fns.allocate(system.positions, system.cell)
    ctx = Context(species=system.species, cell=system.cell, neighbors=nbr)
    t0 = time.perf_counter()
    compiled = jax.jit(energy_and_forces(pot)).lower(params, system.positions, ctx).compile()
    compile_s = time.perf_counter() - t0
    out = {}

    def call():
        out["ef"] = jax.block_until_ready(compiled(params, system.positions, ctx))

    calls_per_s, n = time_calls(call, 1, **TIMING)
    e, f = out["ef"]
    assert np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(f)))
    return {"seconds_per_call": 1.0 / calls_per_s, "calls_timed": n, "compile_seconds": compile_s,
            "pairs_in_list": int(nbr.n_pairs), "energy_eV": float(e), "config": pot.config}


def mace_torch_available():
    try:
        import torch  # noqa: F401
        from mace import modules  # noqa: F401
        return True, ""
    except Exception as err:   # report why, do not fail the jaxpot part
        return False, f"{type(err).__name__}: {err}"


def mace_torch_case(atoms, dtype_name, cutoff=5.0):
    import torch
    from mace import modules      # first: it lets e3nn 0.4 read its bundled constants under torch >= 2.6
    from e3nn import o3

    torch_dtype = torch.float32 if dtype_name == "float32" else torch.float64
    torch.set_default_dtype(torch_dtype)
    torch.manual_seed(0)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.MACE(
        r_max=cutoff, num_bessel=8, num_polynomial_cutoff=6, max_ell=2,
        interaction_cls=block, interaction_cls_first=block, num_interactions=2, num_elements=2,
        hidden_irreps=o3.Irreps("32x0e + 32x1o + 32x2e"), MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(2), avg_num_neighbors=10.0, atomic_numbers=[1, 8], correlation=3,
        gate=torch.nn.functional.silu, radial_MLP=[64, 64, 64],
    ).to(torch_dtype)
    # directed edges r < cutoff over all periodic images (the same brute-force
    # image range as jaxpot's "all" convention: |s| <= ceil(cutoff / width))
    pos = atoms.get_positions()
    cell = np.asarray(atoms.cell)
    widths = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = [int(np.ceil(cutoff / w)) for w in widths]
    send, recv, shifts = [], [], []
    for s in np.array(np.meshgrid(*[np.arange(-k, k + 1) for k in reach], indexing="ij")).reshape(3, -1).T:
        d = pos[None, :, :] - pos[:, None, :] + s @ cell          # r_j - r_i + s cell
        r = np.linalg.norm(d, axis=-1)
        i, j = np.nonzero((r < cutoff) & (r > 1e-8))
        send.append(i)
        recv.append(j)
        shifts.append(np.repeat(s[None], len(i), axis=0))
    send, recv, unit = np.concatenate(send), np.concatenate(recv), np.concatenate(shifts).astype(float)
    z = atoms.get_atomic_numbers()
    onehot = np.stack([z == 1, z == 8], axis=1).astype(float)
    data = {
        "positions": torch.tensor(pos, dtype=torch_dtype),
        "node_attrs": torch.tensor(onehot, dtype=torch_dtype),
        "edge_index": torch.tensor(np.stack([send, recv]), dtype=torch.int64),
        "unit_shifts": torch.tensor(unit, dtype=torch_dtype),
        "shifts": torch.tensor(unit @ cell, dtype=torch_dtype),
        "cell": torch.tensor(cell, dtype=torch_dtype),
        "batch": torch.zeros(len(pos), dtype=torch.int64),
        "ptr": torch.tensor([0, len(pos)], dtype=torch.int64),
    }
    out = {}

    def call():
        d = {k: v.clone() for k, v in data.items()}
        res = model(d, compute_force=True)
        out["e"], out["f"] = float(res["energy"][0]), res["forces"].detach().numpy()

    calls_per_s, n = time_calls(call, 1, **TIMING)
    assert np.isfinite(out["e"]) and np.all(np.isfinite(out["f"]))
    torch.set_default_dtype(torch.float64)
    return {"seconds_per_call": 1.0 / calls_per_s, "calls_timed": n, "directed_edges": int(len(send)),
            "energy_eV": out["e"]}


def main(argv=None):
    from jaxpot.runtime import relaunch_with_tunables

    relaunch_with_tunables()      # the jaxpot command's huge-page malloc setting (jaxpot/runtime.py)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smallest box, float64 only")
    ap.add_argument("--large", action="store_true", help="also 256 and 512 molecules")
    ap.add_argument("--molecules", type=int, nargs="*", default=None)
    ap.add_argument("--torch-max-atoms", type=int, default=192)
    ap.add_argument("--out", default=str(RESULTS / "bench_models"))
    args = ap.parse_args(argv)
    molecules = args.molecules or ([21] if args.quick else [21, 64, 128] + ([256, 512] if args.large else []))
    dtypes = ["float64"] if args.quick else ["float32", "float64"]
    have_torch, why = mace_torch_available()
    if have_torch:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    for m in molecules:
        atoms = water_box(m, density=0.997, seed=0, relax=False)
        n = len(atoms)
        for dt in dtypes:
            row = {"molecules": m, "atoms": n, "dtype": dt}
            for kind in ("nequip", "mace"):
                r = jaxpot_case(kind, atoms, dt)
                row[kind] = r
                print(f"{n:5d} atoms {dt} jaxpot {kind:6s}: {1e3 * r['seconds_per_call']:9.1f} ms/call "
                      f"({1e6 * r['seconds_per_call'] / n:8.1f} us/atom), compile {r['compile_seconds']:.1f} s",
                      flush=True)
            if have_torch and n <= args.torch_max_atoms:
                r = mace_torch_case(atoms, dt)
                row["mace_torch"] = r
                row["ratio_mace_torch_over_jaxpot_mace"] = r["seconds_per_call"] / row["mace"]["seconds_per_call"]
                print(f"{n:5d} atoms {dt} mace-torch   : {1e3 * r['seconds_per_call']:9.1f} ms/call "
                      f"(ratio torch/jaxpot {row['ratio_mace_torch_over_jaxpot_mace']:.2f})", flush=True)
            rows.append(row)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other work)",
        "jax": jax.__version__, "backend": jax.default_backend(),
        "mace_torch": "available" if have_torch else f"not available: {why}",
        "wall_seconds": time.perf_counter() - t_start,
        "load_average_1min": [load_start, os.getloadavg()[0]],
    }
    if have_torch:
        import mace
        import torch
        meta["mace_torch"] = f"mace-torch {getattr(mace, '__version__', '?')}, torch {torch.__version__}, " \
                             f"{torch.get_num_threads()} threads"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# Equivariant models: energy + forces per call (liquid water, CPU)", "",
             f"{meta['date']}; {meta['machine']}, 1-min load average {meta['load_average_1min'][0]:.1f} "
             f"at start, {meta['load_average_1min'][1]:.1f} at end; jax {meta['jax']} ({meta['backend']}); "
             f"mace-torch: {meta['mace_torch']}.", "",
             "Default hyperparameters (32 channels, l_max 2, cutoff 5 A; nequip 3 layers, mace 2 layers, "
             "correlation 3). Times are per energy+forces call at a fixed neighbor list "
             "(list at the cutoff, no skin); us/atom = time / atoms. mace-torch: same "
             "hyperparameters, eager, exact r < 5 A edges; its product basis is the full symmetric contraction, "
             "jaxpot's a factorised coupling tree (see the script's docstring).", "",
             "| atoms | dtype | nequip ms | nequip us/atom | mace ms | mace us/atom | mace-torch ms | "
             "torch / jaxpot mace | compile s (nequip, mace) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        n = r["atoms"]
        tq, tm = r["nequip"]["seconds_per_call"], r["mace"]["seconds_per_call"]
        tt = f"{1e3 * r['mace_torch']['seconds_per_call']:.1f}" if "mace_torch" in r else "n/a"
        ratio = f"{r['ratio_mace_torch_over_jaxpot_mace']:.2f}" if "mace_torch" in r else "n/a"
        lines.append(f"| {n} | {r['dtype']} | {1e3 * tq:.1f} | {1e6 * tq / n:.1f} | {1e3 * tm:.1f} | "
                     f"{1e6 * tm / n:.1f} | {tt} | {ratio} | {r['nequip']['compile_seconds']:.0f}, "
                     f"{r['mace']['compile_seconds']:.0f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
