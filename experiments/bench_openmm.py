"""An imported OpenMM force field in jaxpot against OpenMM itself, side by side.

System: villin headpiece in water from OpenMM's bundled ``app/data/test.pdb``
(8867 atoms), amber14-all + amber14/tip3p, flexible water, no constraints,
PME with a 1.0 nm cutoff at OpenMM's default ewaldErrorTolerance 5e-4
(jaxpot reads the same alpha and PME grid from the System), dispersion
correction. With ``--scale4`` also the same box tiled 2 x 2 x 1 (four
villins, 35468 atoms).

Engines
  jaxpot float32 / float64: ``potential_from_openmm`` of the serialized
      System through the ``[potential] kind = "openmm"`` path; energy+forces
      = one jitted ``energy_and_forces`` call at a fixed neighbor list; NVT =
      the block ``jaxpot md`` compiles (``simulate.make_block`` via
      ``benchlib.block_timer``: Langevin BAOAB, neighbor list updated inside
      every step, skin 1 A).
  OpenMM CPU platform (Threads = 2, mixed precision) and Reference (double):
      energy+forces = ``getState(getEnergy, getForces)`` after a position
      update; NVT = ``LangevinMiddleIntegrator.step``.
Both NVT runs: 300 K, 0.5 fs, friction 1/ps (jaxpot tau = 1000 fs).

Timing: warm-up, then repeated calls until a minimum number of steps and
seconds (or a cap) is reached; the figure is the median call, since this VM
has periods (~1 s to tens of seconds) in which everything runs 2x slower.
NVT calls are 50 steps for both engines, with the energy evaluated once per
call (jaxpot: a block of 50 steps, forces alone on the first 49; OpenMM:
``step(50)`` then ``getState(getEnergy)``). Compile seconds:
jaxpot ``jit(...).lower().compile()``; OpenMM Context creation. The host is
a shared 2-core machine; ratios taken in the same run are what to read.

    python experiments/bench_openmm.py            # villin (~5-8 min on 2 cores)
    python experiments/bench_openmm.py --quick    # fewer steps
    python experiments/bench_openmm.py --scale4   # add the 4x box
    python experiments/bench_openmm.py --scale4-only --no-reference   # 4x box, appended
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402

import jaxpot  # noqa: E402,F401  (enables float64)
from jaxpot import units  # noqa: E402
from jaxpot.potentials.base import energy_and_forces  # noqa: E402
from benchlib import block_timer, jaxpot_engine, time_calls  # noqa: E402

DT_FS, T_K, FRICTION_PS = 0.5, 300.0, 1.0


def villin(tiles=(1, 1, 1)):
    """(openmm System, Topology, positions nm, ase.Atoms) of villin in water,
    optionally tiled."""
    import openmm as mm
    from openmm import app, unit
    from ase import Atoms

    pdb = app.PDBFile(os.path.join(os.path.dirname(app.__file__), "data", "test.pdb"))
    top, pos = pdb.topology, np.asarray(pdb.positions.value_in_unit(unit.nanometer))
    box = np.asarray(top.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    if tiles != (1, 1, 1):
        m = app.Modeller(top, pdb.positions)
        for ix in range(tiles[0]):
            for iy in range(tiles[1]):
                for iz in range(tiles[2]):
                    if (ix, iy, iz) == (0, 0, 0):
                        continue
                    shift = np.array([ix, iy, iz]) @ box
                    m.add(pdb.topology, [mm.Vec3(*(p + shift)) for p in pos] * unit.nanometer)
        box = box * np.asarray(tiles)[:, None]
        m.topology.setPeriodicBoxVectors([mm.Vec3(*b) for b in box] * unit.nanometer)
        top, pos = m.topology, np.asarray(m.positions.value_in_unit(unit.nanometer))
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    system = ff.createSystem(top, nonbondedMethod=app.PME, nonbondedCutoff=1.0 * unit.nanometer,
                             constraints=None, rigidWater=False)
    atoms = Atoms(numbers=[a.element.atomic_number for a in top.atoms()], positions=pos * units.NM,
                  cell=box * units.NM, pbc=True)
    atoms.set_masses([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(len(atoms))])
    return system, top, pos, atoms


def openmm_runs(system, pos, platform_name, timing_ef, timing_md):
    import openmm as mm
    from openmm import unit

    props = {"Threads": "2"} if platform_name == "CPU" else {}
    t0 = time.perf_counter()
    integ = mm.LangevinMiddleIntegrator(T_K * unit.kelvin, FRICTION_PS / unit.picosecond,
                                        DT_FS * 1e-3 * unit.picosecond)
    ctx = mm.Context(system, integ, mm.Platform.getPlatformByName(platform_name), props)
    ctx.setPositions(pos * unit.nanometer)
    st = ctx.getState(getEnergy=True, getForces=True)
    setup = time.perf_counter() - t0
    e = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * units.KJ_MOL
    f = np.asarray(st.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    f = f * units.KJ_MOL / units.NM

    def ef():
        ctx.setPositions(pos * unit.nanometer)
        ctx.getState(getEnergy=True, getForces=True)

    ef_rate, _ = time_calls(ef, 1, *timing_ef, statistic="median")
    ctx.setVelocitiesToTemperature(T_K * unit.kelvin, 1)
    n = timing_md[0]                      # steps per call, then (min steps, min s, max s)
    md_rate, _ = time_calls(lambda: (integ.step(n), ctx.getState(getEnergy=True)), n, *timing_md[1:],
                            statistic="median")
    return dict(energy_eV=e, forces=f, setup_s=setup, ef_ms=1e3 / ef_rate, steps_per_s=md_rate)


def jaxpot_runs(xml_path, atoms, dtype_name, timing_ef, timing_md, block_steps, layout="auto"):
    spec = {"kind": "openmm", "system": str(xml_path)}
    md = {"ensemble": "nvt", "thermostat": "langevin", "timestep": DT_FS, "temperature": T_K,
          "tau": 1000.0 / FRICTION_PS, "neighbor_layout": layout}
    t0 = time.perf_counter()
    system, pot, params, ctx, engine, fns, nbr, state = jaxpot_engine(atoms, spec, md, dtype_name)
    import_s = time.perf_counter() - t0
    ctx_n = ctx.replace(neighbors=nbr)
    ef = jax.jit(energy_and_forces(pot))
    t0 = time.perf_counter()
    ef_c = ef.lower(params, system.positions, ctx_n).compile()
    ef_compile = time.perf_counter() - t0
    e, f = ef_c(params, system.positions, ctx_n)
    ef_rate, _ = time_calls(lambda: jax.block_until_ready(ef_c(params, system.positions, ctx_n)), 1, *timing_ef,
                            statistic="median")
    compile_s, timer, live = block_timer(engine, fns, system.cell, state, nbr, block_steps, 1, statistic="median")
    md_rate = timer(timing_md)
    return dict(energy_eV=float(e), forces=np.asarray(f, np.float64), import_s=import_s,
                ef_compile_s=ef_compile, md_compile_s=compile_s, ef_ms=1e3 / ef_rate, steps_per_s=md_rate,
                layout=type(nbr).__name__)


def bench_system(label, tiles, args, rows):
    import openmm as mm

    system, top, pos, atoms = villin(tiles)
    n = len(atoms)
    print(f"{label}: {n} atoms", flush=True)
    quick = args.quick
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "system.xml"
        xml.write_text(mm.XmlSerializer.serialize(system))
        for prec in ("float32", "float64"):
            res[f"jaxpot {prec}"] = jaxpot_runs(
                xml, atoms, prec, (3, 1.0, 20.0) if not quick else (1, 0.1, 5.0),
                (500, 5.0, 60.0) if not quick else (50, 0.1, 20.0), 50)
            print(f"  jaxpot {prec}: {res[f'jaxpot {prec}']['steps_per_s']:.2f} steps/s", flush=True)
    res["OpenMM CPU"] = openmm_runs(system, pos, "CPU", (5, 2.0, 20.0) if not quick else (1, 0.1, 5.0),
                                    (50, 500, 5.0, 60.0) if not quick else (50, 50, 0.1, 5.0))
    print(f"  OpenMM CPU: {res['OpenMM CPU']['steps_per_s']:.2f} steps/s", flush=True)
    if not args.no_reference:
        res["OpenMM Reference"] = openmm_runs(system, pos, "Reference", (1, 1.0, 30.0), (2, 2, 1.0, 30.0))
        print(f"  OpenMM Reference: {res['OpenMM Reference']['steps_per_s']:.3f} steps/s", flush=True)
    ref = res["OpenMM CPU"]
    for name, r in res.items():
        r["energy_rel_diff_vs_cpu"] = (r["energy_eV"] - ref["energy_eV"]) / abs(ref["energy_eV"])
        r["force_rel_rms_vs_cpu"] = float(np.sqrt(np.mean((r["forces"] - ref["forces"]) ** 2))
                                          / np.sqrt(np.mean(ref["forces"] ** 2)))
    for r in res.values():
        r.pop("forces")
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes")
    for name, r in res.items():
        rows.append({"system": label, "atoms": n, "engine": name, "measured": when,
                     "load_average": round(os.getloadavg()[0], 1), **r})


def write_results(rows, args):
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "cpus": os.cpu_count(), "jax": jax.__version__,
            "backend": jax.default_backend(), "quick": bool(args.quick),
            "load_average_at_end": os.getloadavg()}
    (out / "bench_openmm.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# OpenMM import: villin in water, jaxpot vs OpenMM", "",
             f"{meta['date']}, {meta['cpus']} CPUs ({meta['backend']}), jax {meta['jax']}, "
             "shared machine: the load average when each system finished is in the table. "
             "amber14-all + TIP3P (flexible), PME 1.0 nm, tolerance 5e-4; NVT Langevin 0.5 fs. "
             "Times are the median call; NVT calls are 50 steps with one energy evaluation, for both engines. "
             "Generated by `experiments/bench_openmm.py`.", "",
             "| system | atoms | engine | E+F ms | NVT steps/s | steps/s ratio vs OpenMM CPU | compile/setup s "
             "| dE rel vs CPU | F rel RMS vs CPU | measured (load avg) |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        cpu = next(x for x in rows if x["system"] == r["system"] and x["engine"] == "OpenMM CPU")
        setup = r.get("md_compile_s", r.get("setup_s", 0.0))
        lines.append(f"| {r['system']} | {r['atoms']} | {r['engine']} | {r['ef_ms']:.1f} | "
                     f"{r['steps_per_s']:.3g} | {r['steps_per_s'] / cpu['steps_per_s']:.3f} | {setup:.1f} | "
                     f"{r['energy_rel_diff_vs_cpu']:.1e} | {r['force_rel_rms_vs_cpu']:.1e} | "
                     f"{r.get('measured', '')} ({r.get('load_average', '')}) |")
    (out / "bench_openmm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    from jaxpot.runtime import relaunch_with_tunables

    relaunch_with_tunables()      # the jaxpot command's huge-page malloc setting (jaxpot/runtime.py)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--scale4", action="store_true", help="also the 2x2x1 tiled box (35468 atoms)")
    ap.add_argument("--no-reference", action="store_true", help="skip OpenMM's Reference platform")
    ap.add_argument("--scale4-only", action="store_true",
                    help="only the 4x box, appended to the villin rows of results/bench_openmm.json")
    args = ap.parse_args()
    rows = []
    if args.scale4_only:
        old = json.loads((HERE / "results" / "bench_openmm.json").read_text())["rows"]
        rows = [r for r in old if r["system"] == "villin"]
    else:
        bench_system("villin", (1, 1, 1), args, rows)
        if not args.scale4:
            # keep 4x-box rows of an earlier --scale4-only run (each row says when it was measured)
            path = HERE / "results" / "bench_openmm.json"
            if path.exists():
                rows += [r for r in json.loads(path.read_text())["rows"] if r["system"] == "villin x4"]
        write_results(rows, args)
    if args.scale4 or args.scale4_only:
        bench_system("villin x4", (2, 2, 1), args, rows)
        write_results(rows, args)


if __name__ == "__main__":
    main()
