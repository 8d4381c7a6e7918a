"""Ring-polymer MD speed of jaxpot against OpenMM's RPMDIntegrator, side by side.

Systems
  water  q-TIP4P/F (Habershon, Markland, Manolopoulos, JCP 131, 024501
         (2009)), boxes from ``jaxpot.build.water_box(n)`` at 0.997 g/cm^3,
         PME (tolerance 1e-5), LJ/real-space cutoff 9 A; PIMD at 300 K with
         PILE-L (centroid tau 100 fs, lambda 0.5), dt 0.25 fs.
         216 molecules at P = 8, 32, 64 (cost versus P), and 32, 64, 216
         molecules at P = 8 (cost versus N). At P = 32 also with ring-polymer
         contraction ([md] contraction = [0, P']): q-TIP4P/F split into its
         intramolecular part (all 32 beads) and intermolecular part (LJ +
         PME, on P' = 8, 4, 1 contracted beads), i-PI's RPC scheme; this
         changes the sampled ring-polymer potential (an approximation whose
         error experiments/pimd_water_quantum_kinetic_energy.py measures).
         Peer: OpenMM ``RPMDIntegrator`` (PILE, the same friction as PILE-L)
         on the CPU platform (2 threads) with the same model built from
         custom forces in ``openmm_qtip4pf.py`` (LJ inside the
         NonbondedForce). OpenMM needs the cutoff below half the box, so it
         runs only the 216-molecule box (18.6 A); jaxpot runs the small
         boxes with every periodic image inside the cutoff.
  HO     648 independent 3D harmonic oscillators (H mass, k = 30 eV/A^2,
         hbar w = 0.36 eV, an O-H-stretch-like frequency), kind "harmonic",
         at P = 8, 32, 64. Peer: OpenMM RPMDIntegrator with a
         CustomExternalForce tether.

jaxpot is timed through the block that ``jaxpot.simulate.run_md`` compiles:
``simulate.pimd_engine`` (the ``[md] ensemble = "pimd"`` engine), the
centroid neighbor list with skin 1.0 + 0.5 A updated every step, ``every``
steps of ``lax.scan`` per thermo row with the on-device estimators of
``pimd.estimators`` at each row, rows scanned inside one ``jax.jit``.
Compile seconds: ``jit(block).lower().compile()`` (OpenMM: Context creation
and its first step). Timing: one warm-up block, then blocks until both a
minimum number of steps and seconds are reached (or a cap on seconds), with
``jax.block_until_ready`` after each block; engines of one case are timed in
interleaved rounds and each keeps its best round (the 2 cores are shared).

i-PI is not run here (its Fortran driver was not built on this machine);
the i-PI row quotes the figure measured earlier on these 2 cores: 0.59 s per
step for 216 waters and 32 beads with i-PI's Fortran q-TIP4P/F driver.

    python experiments/bench_pimd.py            # full run (~15-20 min on 2 loaded cores)
    python experiments/bench_pimd.py --quick    # smoke run: tiny sizes, few steps
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxpot  # noqa: E402,F401  (enables float64)
from jaxpot import units  # noqa: E402
from jaxpot.build import water_box  # noqa: E402
from benchlib import block_timer, jaxpot_engine, time_calls  # noqa: E402

TEMPERATURE = 300.0   # K
DT = 0.25             # fs
TAU = 100.0           # fs, centroid friction 1/tau (PILE-L and OpenMM PILE)
HO_K = 30.0           # eV/A^2
IPI_S_PER_STEP = 0.59  # i-PI + Fortran q-TIP4P/F driver, 216 waters, 32 beads, these 2 cores
RPC_BEADS = (8, 4, 1)  # ring-polymer contraction of the intermolecular part, 216 waters at P = 32


# ---------------------------------------------------------------------------
# systems
# ---------------------------------------------------------------------------

_WATER = {}


def water(molecules):
    if molecules not in _WATER:
        _WATER[molecules] = water_box(molecules, density=0.997, seed=0)
    return _WATER[molecules]


def oscillators(n):
    """n H atoms on a loose grid (non-periodic), each tethered to its start."""
    from ase import Atoms

    k = int(np.ceil(n ** (1 / 3)))
    grid = np.array([(i, j, l) for i in range(k) for j in range(k) for l in range(k)], float)[:n] * 3.0
    return Atoms(f"H{n}", positions=grid, pbc=False)


def water_spec():
    return {"kind": "qtip4pf", "coulomb": "pme", "accuracy": 1e-5, "cutoff": 9.0}


def water_split_spec():
    """q-TIP4P/F as intramolecular + intermolecular terms (ring-polymer contraction)."""
    return {"kind": "sum", "terms": [{**water_spec(), "part": "intramolecular"},
                                     {**water_spec(), "part": "intermolecular"}]}


def ho_spec():
    return {"kind": "harmonic", "k": HO_K}


# ---------------------------------------------------------------------------
# timing harness
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# jaxpot: the run_md PIMD block
# ---------------------------------------------------------------------------

def bench_jaxpot(atoms, spec, beads, dtype_name, every, rows, contraction=None):
    md = {"ensemble": "pimd", "thermostat": "pile_l", "beads": beads,
          "temperature": TEMPERATURE, "timestep": DT, "tau": TAU}
    if contraction is not None:
        md["contraction"] = contraction
    system, pot, params, ctx, engine, fns, nbr, state = jaxpot_engine(atoms, spec, md, dtype_name)
    compile_s, timer, live = block_timer(engine, fns, system.cell, state, nbr, every, rows)

    def finish():
        st = live["carry"][0]
        return {"potential_energy_eV": float(jnp.mean(st.energies))}

    return compile_s, timer, finish


# ---------------------------------------------------------------------------
# OpenMM RPMDIntegrator
# ---------------------------------------------------------------------------

def bench_openmm(atoms, kind, beads, block, threads=2):
    import openmm as mm

    if kind == "water":
        import openmm_qtip4pf as oq

        system, pos_nm, _ = oq.build_system(atoms, cutoff=9.0, coulomb="pme", tolerance=1e-5, separate_lj=False)
    else:
        system = mm.System()
        ext = mm.CustomExternalForce("0.5*k*((x-x0)^2 + (y-y0)^2 + (z-z0)^2)")
        ext.addGlobalParameter("k", HO_K / units.KJ_MOL / (1.0 / units.NM) ** 2)  # kJ/mol/nm^2
        for name in ("x0", "y0", "z0"):
            ext.addPerParticleParameter(name)
        pos_nm = atoms.positions / units.NM
        for i, m in enumerate(atoms.get_masses()):
            system.addParticle(float(m))
            ext.addParticle(i, [float(v) for v in pos_nm[i]])
        system.addForce(ext)
    t0 = time.perf_counter()
    integ = mm.RPMDIntegrator(beads, TEMPERATURE, 1.0 / (TAU * 1e-3), DT * 1e-3)  # K, 1/ps, ps
    integ.setApplyThermostat(True)
    plat = mm.Platform.getPlatformByName("CPU")
    ctx = mm.Context(system, integ, plat, {"Threads": str(threads)})
    for b in range(beads):
        integ.setPositions(b, pos_nm)
    integ.step(1)
    setup_s = time.perf_counter() - t0

    def timer(timing):
        assert ctx is not None  # the Context must outlive the integrator calls
        return time_calls(lambda: integ.step(block), block, *timing)[0]

    def finish():
        from openmm import unit
        e = np.mean([integ.getState(b, getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
                     for b in range(beads)])
        return {"potential_energy_eV": float(e) * units.KJ_MOL, "threads": threads}

    return setup_s, timer, finish


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------

def cases(quick):
    if quick:
        return [("water", 32, 4, False), ("HO", 648, 4, True), ("water", 216, 4, True)]
    out = [("water", 216, p, True) for p in (8, 32, 64)]
    out += [("water", n, 8, False) for n in (32, 64)]
    out += [("HO", 648, p, True) for p in (8, 32, 64)]
    return out


def main(argv=None):
    from jaxpot.runtime import relaunch_with_tunables

    relaunch_with_tunables()      # the jaxpot command's huge-page malloc setting (jaxpot/runtime.py)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes and few steps")
    ap.add_argument("--precision", nargs="*", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (best kept)")
    ap.add_argument("--threads", type=int, default=2, help="OpenMM CPU threads")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--report", action="store_true", help="only rewrite the .md from an existing .json")
    args = ap.parse_args(argv)
    if args.report:
        stem = "bench_pimd_quick" if args.quick else "bench_pimd"
        data = json.loads((Path(args.out) / f"{stem}.json").read_text())
        (Path(args.out) / f"{stem}.md").write_text(markdown(data["meta"], data["results"]))
        return
    rounds = args.rounds or (1 if args.quick else 2)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench_pimd_quick" if args.quick else "bench_pimd"
    results = []
    t_start = time.perf_counter()

    for kind, n, beads, with_openmm in cases(args.quick):
        atoms = water(n) if kind == "water" else oscillators(n)
        spec = water_spec() if kind == "water" else ho_spec()
        # work per step ~ beads * atoms: pick a block and timing window that stay ~10-30 s
        work = beads * len(atoms)
        every = 10 if work < 20000 else 5
        rows = 2 if work < 8000 else 1
        if kind == "HO":
            every, rows = 50, 4
        timing = (every * rows, 3.0, 30.0) if not args.quick else (every * rows, 0.5, 5.0)
        if args.quick:
            every, rows = min(every, 5), 1
        label = "q-TIP4P/F water" if kind == "water" else "harmonic oscillators"
        print(f"== {label}: {len(atoms)} atoms, P = {beads} ==", flush=True)
        engines = {}
        for prec in args.precision:
            c, timer, finish = bench_jaxpot(atoms, spec, beads, prec, every, rows)
            print(f"   jaxpot {prec}: compiled in {c:.1f} s", flush=True)
            engines[("jaxpot", prec)] = [c, timer, finish, 0.0]
            for pc in (RPC_BEADS if kind == "water" and len(atoms) == 648 and beads == 32 and not args.quick else ()):
                c, timer, finish = bench_jaxpot(atoms, water_split_spec(), beads, prec, every, rows,
                                                contraction=[0, pc])
                print(f"   jaxpot RPC P'={pc} {prec}: compiled in {c:.1f} s", flush=True)
                engines[(f"jaxpot, RPC P'={pc}", prec)] = [c, timer, finish, 0.0]
        if with_openmm:
            c, timer, finish = bench_openmm(atoms, "water" if kind == "water" else "HO", beads,
                                            every * rows, args.threads)
            print(f"   OpenMM RPMD CPU: context in {c:.1f} s", flush=True)
            engines[("OpenMM", "single/mixed")] = [c, timer, finish, 0.0]
        for r in range(rounds):
            for key, e in engines.items():
                sps = e[1](timing)
                e[3] = max(e[3], sps)
                print(f"   round {r + 1} {key[0]} {key[1]}: {sps:.2f} steps/s", flush=True)
        for (engine, prec), (c, _, finish, sps) in engines.items():
            results.append({"system": label, "kind": kind, "molecules": n // 3 if kind == "water" else None,
                            "atoms": len(atoms), "beads": beads, "engine": engine, "precision": prec,
                            "steps_per_second": sps, "compile_seconds": c, **finish()})
        _write(out_dir, stem, results, args, time.perf_counter() - t_start)
    _write(out_dir, stem, results, args, time.perf_counter() - t_start)


def _ratios(results):
    """Ratios against the peers measured in the same run (same system and P)."""
    for r in results:
        peers = [q for q in results if q["system"] == r["system"] and q["atoms"] == r["atoms"]
                 and q["beads"] == r["beads"] and q is not r]
        parts = []
        if r["engine"].startswith("jaxpot"):
            for q in peers:
                if q["engine"] == "OpenMM":
                    parts.append(f"{r['steps_per_second'] / q['steps_per_second']:.2f} x OpenMM RPMD")
            if r["kind"] == "water" and r["atoms"] == 648 and r["beads"] == 32:
                parts.append(f"{r['steps_per_second'] * IPI_S_PER_STEP:.2f} x i-PI (quoted)")
        r["ratio"] = "; ".join(parts)
        r.setdefault("cost_vs_P_linear", None)
        if r["engine"] == "jaxpot":
            base = [q for q in results if q["engine"] == "jaxpot" and q["precision"] == r["precision"]
                    and q["system"] == r["system"] and q["atoms"] == r["atoms"]]
            p_min = min(q["beads"] for q in base)
            ref = next(q for q in base if q["beads"] == p_min)
            # cost per step relative to the smallest P, divided by P / P_min (1 = linear in P)
            r["cost_vs_P_linear"] = (ref["steps_per_second"] / r["steps_per_second"]) / (r["beads"] / p_min)
        r["us_per_step_per_bead_atom"] = 1e6 / (r["steps_per_second"] * r["beads"] * r["atoms"])


def _write(out_dir, stem, results, args, elapsed):
    if not results:
        return
    _ratios(results)
    load = os.getloadavg()
    meta = {"date": datetime.datetime.now().isoformat(timespec="minutes"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other work, "
                       f"{platform.platform()}; jax {jax.__version__}, backend {jax.default_backend()}",
            "command": "python experiments/bench_pimd.py" + (" --quick" if args.quick else ""),
            "load_average_end": load, "elapsed_s": elapsed,
            "timestep_fs": DT, "temperature_K": TEMPERATURE,
            "ipi_quoted": {"s_per_step": IPI_S_PER_STEP, "steps_per_second": 1 / IPI_S_PER_STEP,
                           "system": "216 q-TIP4P/F waters, 32 beads, Fortran driver, same 2 cores (issue's figure)"}}
    (out_dir / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(meta, results))


def markdown(meta, results) -> str:
    lines = [
        "# PIMD speed: jaxpot vs OpenMM RPMDIntegrator (and i-PI, quoted)", "",
        f"Date {meta['date']}; machine: {meta['machine']}; command: `{meta['command']}`; "
        f"load average at the end (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in meta['load_average_end'])}.",
        f"dt = {meta['timestep_fs']} fs, {meta['temperature_K']:.0f} K, PILE-L / OpenMM PILE, tau_centroid = {TAU:.0f} fs. "
        "Water: q-TIP4P/F, PME 1e-5, 9 A cutoff. jaxpot timed through the `run_md` PIMD block "
        "(centroid neighbor list, thermo estimators every row); best of interleaved rounds.", "",
        "| system | atoms | beads | engine | precision | steps/s | compile s | us/step/(bead atom) | cost vs P (1 = linear) | ratio vs peers |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        lin = f"{r['cost_vs_P_linear']:.2f}" if r.get("cost_vs_P_linear") is not None else ""
        lines.append(f"| {r['system']} | {r['atoms']} | {r['beads']} | {r['engine']} | {r['precision']} | "
                     f"{r['steps_per_second']:.2f} | {r['compile_seconds']:.1f} | "
                     f"{r['us_per_step_per_bead_atom']:.2f} | {lin} | {r['ratio']} |")
    ipi = meta["ipi_quoted"]
    lines.append(f"| q-TIP4P/F water | 648 | 32 | i-PI + Fortran driver (quoted, not run) | double | "
                 f"{ipi['steps_per_second']:.2f} |  |  |  |  |")
    lines += ["", "cost vs P: (time per step at P / time per step at the smallest P of that system) / "
              "(P / smallest P); 1.0 is exactly linear, below 1 is sub-linear (fixed costs amortised).",
              "us/step/(bead atom) = 1e6 / (steps/s x beads x atoms): flat along P means linear cost in P, "
              "flat along atoms (same P) means linear cost in N.", "",
              "Other work may share the 2 cores (the load average at the end is in the header), so "
              "absolute steps/s can be depressed and noisy; the jaxpot/OpenMM ratios come from interleaved "
              "rounds of the same run. The i-PI figure was not measured in this run (quoted from the issue, "
              "measured earlier on these cores under unknown load), so its ratio is indicative only.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
