"""Issue 19's GPU table in one command: jaxpot against OpenMM and mace-torch,
measured in the same run on one GPU, with the kernels and host transfers per
step of every jaxpot workload (``jaxpot.profiling``).

Rows (in this order; a row that would start after ``--max-seconds`` is
skipped with a note, so the run stays under 8 minutes):
  1. q-TIP4P/F (Habershon, Markland, Manolopoulos, JCP 131, 024501 (2009))
     216 waters, NVT Langevin 0.5 fs, 300 K, tau 100 fs, PME 1e-5, cutoff
     9 A; peer OpenMM ``LangevinMiddleIntegrator`` (friction 10/ps) with the
     same model from ``openmm_qtip4pf.py``.
  2. 216 waters x 32 beads PIMD, PILE-L, 0.25 fs, exact; peer OpenMM
     ``RPMDIntegrator`` (PILE, the same friction).
  3. the same with ring-polymer contraction P' = 4 (intermolecular LJ + PME
     on 4 beads, bonds and angles on 32); peer ``RPMDIntegrator`` with
     ``contractions = {3: 4}`` (the nonbonded force group).
  4. MACE and NequIP (jaxpot defaults: 32 channels, l_max 2, cutoff 5 A)
     energy + forces at 192 and 3072 atoms of water, float32; peer
     mace-torch (eager, matched hyperparameters as ``bench_models.py``).
  5. villin in TIP3P (amber14, PME 1 nm, 8867 atoms; OpenMM's bundled
     ``app/data/test.pdb``, as ``bench_openmm.py``), NVT 0.5 fs, friction
     1/ps; skipped with a note when OpenMM or its data is missing.
  6. q-TIP4P/F 4096 waters NVT (``jaxpot.build.water_box``), as row 1.
jaxpot runs in float32 through the assembly path and the block ``jaxpot md``
compiles (``benchlib.jaxpot_engine``, ``jax.jit(simulate.make_block(...))``
with its outputs); a block that overflowed its neighbor list is re-run with
a larger one. OpenMM: CUDA platform, else OpenCL (single precision); without
a GPU: CPU. Peers that do not import are recorded as such.

Figures: steps/s over a timing window after one warm-up call (E+F: ms per
call); ratio = jaxpot / peer steps/s (ML: peer ms / jaxpot ms); compile s:
``jit(...).lower().compile()`` (OpenMM: Context creation); kernels/step:
``profiling.count_hlo_text`` of the compiled block (per step without / with
the neighbor-list rebuild branch; E+F: per call), host transfers per step.

With no GPU, or with ``--smoke``, every row runs at tiny sizes for a few
steps on the default backend (< 2 minutes on a quiet CPU) and the files are
``bench_gpu_smoke.{md,json}``.

    python experiments/bench_gpu.py [--smoke] [--out DIR] [--max-seconds S]

Writes ``bench_gpu.{md,json}`` to ``--out`` (default experiments/results).
How to run it on a GPU machine without internet: experiments/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxpot  # noqa: E402,F401  (enables float64)
from jaxpot.assembly import prepare  # noqa: E402
from jaxpot.build import water_box  # noqa: E402
from jaxpot.potentials.base import energy_and_forces  # noqa: E402
from jaxpot.profiling import compiled_hlo_counts  # noqa: E402
from jaxpot.simulate import grow_neighbor_list, make_block  # noqa: E402
from benchlib import jaxpot_engine, time_calls  # noqa: E402

T_K = 300.0
WATER = {"kind": "qtip4pf", "coulomb": "pme", "accuracy": 1e-5, "cutoff": 9.0}
WATER_SPLIT = {"kind": "sum", "terms": [{**WATER, "part": "intramolecular"}, {**WATER, "part": "intermolecular"}]}
NONBONDED_GROUP = 3     # openmm_qtip4pf: LJ + Coulomb (separate_lj=False)

# (full, smoke) sizes and timing windows: timing = (min steps, min s, max s)
FULL = {"water": 216, "water_large": 4096, "beads": 32, "rpc": 4, "ml_molecules": (64, 1024),
        "every": 50, "rows": 2, "pimd_every": 10, "pimd_rows": 1, "timing": (200, 3.0, 12.0),
        "ef_timing": (5, 1.0, 6.0), "villin": True, "max_seconds": 420.0}
SMOKE = {"water": 32, "water_large": 48, "beads": 4, "rpc": 2, "ml_molecules": (21,),
         "every": 5, "rows": 1, "pimd_every": 2, "pimd_rows": 1, "timing": (5, 0.05, 1.0),
         "ef_timing": (1, 0.05, 1.0), "villin": False, "max_seconds": 100.0}
ROWS = ("water", "pimd", "rpc", "ml", "villin", "water_large")


def on_gpu() -> bool:
    return jax.default_backend() in ("gpu", "cuda", "rocm")


def versions() -> dict:
    out = {}
    for name in ("jax", "jaxlib", "openmm", "torch", "mace-torch", "e3nn-jax"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    if out["openmm"] is None:
        try:
            import openmm
            out["openmm"] = openmm.__version__
        except Exception:   # noqa: BLE001
            pass
    return out


# ---------------------------------------------------------------------------
# jaxpot
# ---------------------------------------------------------------------------

def jaxpot_md(atoms, spec, md, every, rows, timing):
    """steps/s, compile s and per-step counts of the block ``jaxpot md`` compiles."""
    t0 = time.perf_counter()
    system, pot, params, ctx, engine, fns, nbr, state = jaxpot_engine(atoms, spec, md, "float32")
    setup_s = time.perf_counter() - t0
    block = jax.jit(make_block(engine, fns, system.cell, every, rows))
    counts, compiled, compile_s = compiled_hlo_counts(block, (state, nbr), steps=every * rows, jit=False)
    carry = (state, nbr)
    for _ in range(3):
        box = [carry]

        def call():
            new, _out = compiled(box[0])
            box[0] = jax.block_until_ready(new)

        sps, steps = time_calls(call, every * rows, *timing)
        if fns is None or not bool(box[0][1].overflow):
            break
        # re-run from the start with a larger list, as run_md does
        nbr = grow_neighbor_list(engine, fns, carry[0], box[0][1], system.cell)
        carry = (carry[0], nbr)
        t1 = time.perf_counter()
        compiled = block.lower(carry).compile()
        compile_s += time.perf_counter() - t1
    else:
        raise RuntimeError("jaxpot neighbor list kept overflowing")
    return {"steps_per_s": sps, "steps_timed": steps, "compile_s": compile_s, "setup_s": setup_s,
            "counts": counts.summary(), "step_ops": _top(counts.step_ops), "atoms": system.n_atoms}


def jaxpot_ef(kind, atoms, timing):
    """ms per jitted energy+forces call of an ML kind (list at the cutoff, no skin), and its counts."""
    t0 = time.perf_counter()
    prep = prepare({"kind": kind, "species": ["H", "O"]}, atoms, dtype="float32", skin=0.0, layout="pairs")
    setup_s = time.perf_counter() - t0
    ctx = prep.context.replace(neighbors=prep.neighbors)
    args = (prep.params, prep.system.positions, ctx)
    counts, compiled, compile_s = compiled_hlo_counts(energy_and_forces(prep.potential), *args)
    out = {}

    def call():
        out["ef"] = jax.block_until_ready(compiled(*args))

    rate, n = time_calls(call, 1, *timing)
    e, f = out["ef"]
    assert np.isfinite(float(e)) and np.all(np.isfinite(np.asarray(f)))
    return {"ms": 1e3 / rate, "calls_timed": n, "compile_s": compile_s, "setup_s": setup_s,
            "counts": counts.summary(), "step_ops": _top(counts.ops), "atoms": len(atoms)}


def _top(ops: dict, k: int = 6) -> dict:
    return dict(sorted(ops.items(), key=lambda kv: -kv[1])[:k])


# ---------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------

def openmm_platforms(gpu: bool):
    return ("CUDA", "OpenCL") if gpu else ("CPU",)


def _openmm_context(system, integ, pos_nm, platforms):
    import openmm as mm

    errors = []
    for name in platforms:
        try:
            props = {"Threads": str(os.cpu_count() or 1)} if name == "CPU" else {}
            ctx = mm.Context(system, integ, mm.Platform.getPlatformByName(name), props)
            return ctx, name, errors
        except Exception as err:  # noqa: BLE001  (next platform)
            errors.append(f"{name}: {type(err).__name__}: {str(err)[:120]}")
    raise RuntimeError("no OpenMM platform loaded: " + "; ".join(errors))


def openmm_water_nvt(atoms, steps_per_call, timing, platforms, cutoff):
    import openmm as mm
    from openmm import unit

    import openmm_qtip4pf as oq

    system, pos_nm, _ = oq.build_system(atoms, cutoff=cutoff, coulomb="pme", tolerance=1e-5, separate_lj=False)
    t0 = time.perf_counter()
    integ = mm.LangevinMiddleIntegrator(T_K * unit.kelvin, 10.0 / unit.picosecond, 0.5e-3 * unit.picosecond)
    ctx, name, errors = _openmm_context(system, integ, pos_nm, platforms)
    ctx.setPositions(pos_nm)
    ctx.setVelocitiesToTemperature(T_K * unit.kelvin, 1)
    integ.step(1)
    setup_s = time.perf_counter() - t0
    sps, _ = time_calls(lambda: (integ.step(steps_per_call), ctx.getState(getEnergy=True)), steps_per_call, *timing)
    return {"engine": f"OpenMM {name}", "steps_per_s": sps, "setup_s": setup_s, "platform_errors": errors}


def openmm_water_rpmd(atoms, beads, steps_per_call, timing, platforms, cutoff, contracted=None):
    import openmm as mm

    import openmm_qtip4pf as oq

    system, pos_nm, _ = oq.build_system(atoms, cutoff=cutoff, coulomb="pme", tolerance=1e-5, separate_lj=False)
    t0 = time.perf_counter()
    args = (beads, T_K, 10.0, 0.25e-3)    # K, 1/ps (tau 100 fs), ps
    integ = mm.RPMDIntegrator(*args, {NONBONDED_GROUP: contracted}) if contracted else mm.RPMDIntegrator(*args)
    integ.setApplyThermostat(True)
    ctx, name, errors = _openmm_context(system, integ, pos_nm, platforms)
    for b in range(beads):
        integ.setPositions(b, pos_nm)
    integ.step(1)
    setup_s = time.perf_counter() - t0

    def call():
        integ.step(steps_per_call)
        integ.getState(0, getEnergy=True)

    sps, _ = time_calls(call, steps_per_call, *timing)
    label = f"OpenMM {name} RPMDIntegrator" + (f", contraction {contracted}" if contracted else "")
    return {"engine": label, "steps_per_s": sps, "setup_s": setup_s, "platform_errors": errors}


def mace_torch_ef(atoms, timing, device):
    """ms per energy+forces call of mace-torch (eager) with bench_models.py's hyperparameters."""
    import torch
    from mace import modules      # first: it lets e3nn 0.4 read its bundled constants under torch >= 2.6
    from e3nn import o3
    from ase.neighborlist import primitive_neighbor_list

    torch.manual_seed(0)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.MACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=6, max_ell=2,
        interaction_cls=block, interaction_cls_first=block, num_interactions=2, num_elements=2,
        hidden_irreps=o3.Irreps("32x0e + 32x1o + 32x2e"), MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(2), avg_num_neighbors=10.0, atomic_numbers=[1, 8], correlation=3,
        gate=torch.nn.functional.silu, radial_MLP=[64, 64, 64],
    ).to(device=device, dtype=torch.float32)
    cell = np.asarray(atoms.cell)
    send, recv, shifts = primitive_neighbor_list("ijS", atoms.pbc, cell, atoms.get_positions(), 5.0,
                                                 self_interaction=False)
    z = atoms.get_atomic_numbers()
    f32 = dict(dtype=torch.float32, device=device)
    data = {"positions": torch.tensor(atoms.get_positions(), **f32),
            "node_attrs": torch.tensor(np.stack([z == 1, z == 8], axis=1).astype(float), **f32),
            "edge_index": torch.tensor(np.stack([send, recv]), dtype=torch.int64, device=device),
            "unit_shifts": torch.tensor(shifts.astype(float), **f32),
            "shifts": torch.tensor(shifts.astype(float) @ cell, **f32),
            "cell": torch.tensor(cell, **f32),
            "batch": torch.zeros(len(atoms), dtype=torch.int64, device=device),
            "ptr": torch.tensor([0, len(atoms)], dtype=torch.int64, device=device)}

    def call():
        res = model({k: v.clone() for k, v in data.items()}, compute_force=True)
        float(res["energy"][0])
        res["forces"].detach().cpu()

    rate, n = time_calls(call, 1, *timing)
    return {"engine": f"mace-torch ({device})", "ms": 1e3 / rate, "calls_timed": n, "edges": int(len(send))}


def have(module: str) -> tuple[bool, str]:
    try:
        __import__(module)
        return True, ""
    except Exception as err:  # noqa: BLE001
        return False, f"{module} not importable ({type(err).__name__}: {str(err)[:80]})"


# ---------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------

def water_md():
    return {"ensemble": "nvt", "thermostat": "langevin", "timestep": 0.5, "temperature": T_K, "tau": 100.0}


def water_cutoff(atoms) -> float:
    """9 A, or just under half the box where it is smaller (smoke boxes: OpenMM needs
    the cutoff below half the box; jaxpot gets the same cutoff)."""
    half = 0.49 * float(np.min(atoms.cell.cellpar()[:3]))
    return min(9.0, np.floor(half * 10) / 10)


def water_spec(spec, cutoff):
    if spec.get("kind") == "sum":
        return {**spec, "terms": [water_spec(t, cutoff) for t in spec["terms"]]}
    return {**spec, "cutoff": cutoff}


def _cut_note(cutoff) -> str:
    return "" if cutoff == 9.0 else f" (cutoff {cutoff:g} A)"


def pimd_md(beads, contraction=None):
    md = {"ensemble": "pimd", "thermostat": "pile_l", "beads": beads, "timestep": 0.25, "temperature": T_K,
          "tau": 100.0}
    if contraction:
        md["contraction"] = [0, contraction]
    return md


def run_rows(cfg, gpu, t_start, log):
    have_omm, why_omm = have("openmm")
    have_mace, why_mace = have("mace")
    plats = openmm_platforms(gpu)
    timing, every, rows = cfg["timing"], cfg["every"], cfg["rows"]
    pe, pr = cfg["pimd_every"], cfg["pimd_rows"]
    tasks = []

    def water_row(n):
        atoms = water_box(n, density=0.997, seed=0)
        cutoff = water_cutoff(atoms)
        row = {"workload": f"q-TIP4P/F {n} waters, NVT 0.5 fs" + _cut_note(cutoff), "beads": 1,
               "jaxpot": jaxpot_md(atoms, water_spec(WATER, cutoff), water_md(), every, rows, timing)}
        peer(row, lambda: openmm_water_nvt(atoms, every * rows, timing, plats, cutoff))
        return row

    def peer(row, fn):
        if not have_omm:
            row["note"] = why_omm
            return
        try:
            row["peer"] = fn()
        except Exception as err:  # noqa: BLE001  (keep the jaxpot figure)
            row["note"] = f"OpenMM failed: {type(err).__name__}: {str(err)[:160]}"

    def pimd_row(contraction):
        n, p = cfg["water"], cfg["beads"]
        atoms = water_box(n, density=0.997, seed=0)
        cutoff = water_cutoff(atoms)
        spec = water_spec(WATER_SPLIT if contraction else WATER, cutoff)
        name = f"q-TIP4P/F {n} waters x {p} beads, PILE-L 0.25 fs" + (
            f", contraction P'={contraction}" if contraction else ", exact") + _cut_note(cutoff)
        row = {"workload": name, "beads": p, "jaxpot": jaxpot_md(atoms, spec, pimd_md(p, contraction), pe, pr, timing)}
        peer(row, lambda: openmm_water_rpmd(atoms, p, pe * pr, timing, plats, cutoff, contracted=contraction))
        return row

    def ml_rows():
        out = []
        for m in cfg["ml_molecules"]:
            atoms = water_box(m, density=0.997, seed=0, relax=False)
            for kind in ("mace", "nequip"):
                row = {"workload": f"{kind} E+F, {len(atoms)} atoms", "beads": 1,
                       "jaxpot": jaxpot_ef(kind, atoms, cfg["ef_timing"])}
                if kind == "mace":
                    if have_mace:
                        try:
                            row["peer"] = mace_torch_ef(atoms, cfg["ef_timing"], "cuda" if gpu else "cpu")
                        except Exception as err:  # noqa: BLE001
                            row["note"] = f"mace-torch failed: {type(err).__name__}: {str(err)[:120]}"
                    else:
                        row["note"] = why_mace
                out.append(row)
        return out

    def villin_row():
        if not have_omm:
            return {"workload": "villin in TIP3P, NVT 0.5 fs", "beads": 1, "note": f"skipped: {why_omm}"}
        import openmm as mm
        from bench_openmm import openmm_runs, villin
        try:
            system, _top, pos, atoms = villin()
        except Exception as err:  # noqa: BLE001
            return {"workload": "villin in TIP3P, NVT 0.5 fs", "beads": 1,
                    "note": f"skipped: OpenMM's villin input did not load ({type(err).__name__}: {str(err)[:80]})"}
        with tempfile.TemporaryDirectory() as tmp:
            xml = Path(tmp) / "system.xml"
            xml.write_text(mm.XmlSerializer.serialize(system))
            md = {"ensemble": "nvt", "thermostat": "langevin", "timestep": 0.5, "temperature": T_K, "tau": 1000.0}
            row = {"workload": f"villin in TIP3P, amber14, PME, {len(atoms)} atoms, NVT 0.5 fs", "beads": 1,
                   "jaxpot": jaxpot_md(atoms, {"kind": "openmm", "system": str(xml)}, md, every, rows, timing)}
        errors = []
        for plat in plats:
            try:
                peer = openmm_runs(system, pos, plat, (1, 0.05, 2.0), (every * rows, *timing))
                row["peer"] = {"engine": f"OpenMM {plat}", "steps_per_s": peer["steps_per_s"],
                               "setup_s": peer["setup_s"], "platform_errors": errors}
                break
            except Exception as err:  # noqa: BLE001
                errors.append(f"{plat}: {type(err).__name__}: {str(err)[:120]}")
        else:
            row["note"] = "; ".join(errors)
        return row

    tasks = {"water": lambda: [water_row(cfg["water"])],
             "pimd": lambda: [pimd_row(None)],
             "rpc": lambda: [pimd_row(cfg["rpc"])],
             "ml": ml_rows,
             "villin": lambda: [villin_row()],
             "water_large": lambda: [water_row(cfg["water_large"])]}
    results = []
    for name in cfg["only"]:
        task = tasks[name]
        if name == "villin" and not cfg["villin"]:
            results.append({"workload": "villin in TIP3P, NVT 0.5 fs",
                            "note": "skipped in the smoke run (8867 atoms); --villin runs it"})
            continue
        elapsed = time.perf_counter() - t_start
        if elapsed > cfg["max_seconds"]:
            results.append({"workload": name, "note": f"skipped: {elapsed:.0f} s elapsed (--max-seconds "
                                                      f"{cfg['max_seconds']:.0f})"})
            log(f"{name}: skipped (time)")
            continue
        try:
            for row in task():
                results.append(row)
                log(_line(row))
        except Exception as err:  # noqa: BLE001  (record and go on)
            traceback.print_exc()
            results.append({"workload": name, "note": f"failed: {type(err).__name__}: {str(err)[:200]}"})
    return results


def _ratio(row):
    j, p = row.get("jaxpot"), row.get("peer")
    if not j or not p:
        return None
    if "ms" in j:
        return p["ms"] / j["ms"] if "ms" in p else None
    return j["steps_per_s"] / p["steps_per_s"]


def _line(row) -> str:
    j, p = row.get("jaxpot"), row.get("peer")
    if j is None:
        return f"{row['workload']}: {row.get('note', '')}"
    speed = f"{j['ms']:.2f} ms/call" if "ms" in j else f"{j['steps_per_s']:.1f} steps/s"
    peer = ""
    if p:
        peer = f"; {p['engine']} " + (f"{p['ms']:.2f} ms" if "ms" in p else f"{p['steps_per_s']:.1f} steps/s")
        peer += f"; ratio {_ratio(row):.3f}"
    c = j["counts"]
    return (f"{row['workload']}: jaxpot {speed}, compile {j['compile_s']:.1f} s, kernels/step "
            f"{_fmt(c['per_step_min'])}/{_fmt(c['per_step'] or c['kernels'])}, host transfers "
            f"{_fmt(c['host_transfers'])}{peer}")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.0f}"


def markdown(meta, rows) -> str:
    lines = [f"# GPU table (issue 19){' - smoke run' if meta['smoke'] else ''}", "",
             f"{meta['date']}; device: {meta['device']}; machine: {meta['machine']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v) + f"; {meta['elapsed_s']:.0f} s. "
             f"Command: `{meta['command']}`. jaxpot float32; steps/s over a timing window after a warm-up "
             "call; E+F rows in ms per call (ratio = peer ms / jaxpot ms, above 1 = jaxpot faster). "
             "kernels/step: from the compiled HLO (`jaxpot/profiling.py`), one step without / with the "
             "neighbor-list rebuild branch (E+F: one call); host transfers: per compiled call (block).", "",
             "| workload | jaxpot | peer | peer speed | ratio | jaxpot compile s | kernels/step | "
             "host transfers | note |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        j, p = r.get("jaxpot"), r.get("peer")
        if j is None:
            lines.append(f"| {r['workload']} | | | | | | | | {r.get('note', '')} |")
            continue
        speed = f"{j['ms']:.2f} ms" if "ms" in j else f"{j['steps_per_s']:.1f} steps/s"
        pspeed = "" if not p else (f"{p['ms']:.2f} ms" if "ms" in p else f"{p['steps_per_s']:.1f} steps/s")
        ratio = _ratio(r)
        c = j["counts"]
        per = (f"{_fmt(c['per_step_min'])} / {_fmt(c['per_step'])}" if c["per_step"] is not None
               else _fmt(c["kernels"]))
        note = r.get("note", "")
        if p and p.get("platform_errors"):
            note = (note + " " + "; ".join(p["platform_errors"])).strip()
        lines.append(f"| {r['workload']} | {speed} | {p['engine'] if p else ''} | {pspeed} | "
                     f"{'' if ratio is None else f'{ratio:.3f}x'} | {j['compile_s']:.1f} | {per} | "
                     f"{_fmt(c['host_transfers'])} | {note[:160]} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    from jaxpot.runtime import relaunch_with_tunables

    relaunch_with_tunables()      # the jaxpot command's huge-page malloc setting (jaxpot/runtime.py)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, few steps (automatic without a GPU)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="start no new row after this many seconds (default 420; smoke 100)")
    ap.add_argument("--no-villin", action="store_true", help="skip the villin row")
    ap.add_argument("--villin", action="store_true", help="run the villin row also in a smoke run")
    ap.add_argument("--only", default=",".join(ROWS), help=f"comma-separated rows to run, of: {', '.join(ROWS)}")
    args = ap.parse_args(argv)
    gpu = on_gpu()
    smoke = args.smoke or not gpu
    cfg = dict(SMOKE if smoke else FULL)
    if args.max_seconds is not None:
        cfg["max_seconds"] = args.max_seconds
    if args.no_villin or args.villin:
        cfg["villin"] = bool(args.villin)
    cfg["only"] = [r for r in args.only.split(",") if r]
    bad = sorted(set(cfg["only"]) - set(ROWS))
    if bad:
        ap.error(f"unknown rows {bad}; choose from {', '.join(ROWS)}")
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", flush=True)

    log(f"backend {jax.default_backend()}, {'smoke' if smoke else 'full'} run")
    rows = run_rows(cfg, gpu, t_start, log)
    dev = jax.devices()[0]
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": f"{getattr(dev, 'device_kind', str(dev))} ({jax.default_backend()})",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}",
            "versions": versions(), "smoke": smoke, "elapsed_s": time.perf_counter() - t_start,
            "command": "python experiments/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "sizes": {k: v for k, v in cfg.items() if k not in ("max_seconds", "only")}, "rows": cfg["only"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench_gpu_smoke" if smoke else "bench_gpu"
    for r in rows:
        r["ratio"] = _ratio(r)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float) + "\n")
    text = markdown(meta, rows)
    (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
