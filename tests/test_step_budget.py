"""CPU-side guard for GPU speed (issue 19): the kernels and host transfers of
one compiled MD step must not grow above the budget recorded in
``experiments/results/step_budget.json``.

A GPU step of jaxpot at a few hundred atoms costs what its kernel launches
and host round trips cost, not its arithmetic (``jaxpot/profiling.py``), and
both can be counted from the optimized HLO on a CPU. Two blocks are compiled
exactly as ``jaxpot md`` compiles them (``resolve_config`` ->
``jaxpot.assembly.prepare`` -> ``classical_engine`` / ``pimd_engine`` ->
``make_block``, jitted with its outputs): 32 q-TIP4P/F waters
(tests/data/water_32.pdb), float32, NVT Langevin, and PIMD PILE-L with 4
beads. Host transfers inside a block must be 0.

After a deliberate change of the counts (a new fused kernel, a jax upgrade),
rewrite the budget with today's counts plus the stated margin:

    JAXPOT_UPDATE_STEP_BUDGET=1 python -m pytest tests/test_step_budget.py -q

and commit ``experiments/results/step_budget.json`` with a line saying why.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from jaxpot.profiling import compiled_hlo_counts, count_hlo_text

ROOT = Path(__file__).resolve().parents[1]
BUDGET = ROOT / "experiments" / "results" / "step_budget.json"
MARGIN = 0.05          # budget = ceil(count * (1 + MARGIN))
EVERY, ROWS = 4, 2     # steps per thermo row, rows per block
GUARDED = ("per_step", "per_step_min", "per_step_average")

CASES = {
    "classical_nvt_langevin": {"ensemble": "nvt", "thermostat": "langevin"},
    "pimd_pile_l_4_beads": {"ensemble": "pimd", "thermostat": "pile_l", "beads": 4},
}


def md_block_counts(md_table: dict, data_dir: Path):
    """HloCounts of the block ``jaxpot md`` compiles for water_32.pdb with
    q-TIP4P/F in float32 and ``md_table``: the calls of ``run_md``, in order."""
    from jaxpot.assembly import prepare
    from jaxpot.simulate import classical_engine, load_atoms, make_block, neighbor_skin, pimd_engine, resolve_config
    from jaxpot.system import from_ase, to_ase

    config = resolve_config({"system": {"file": str(data_dir / "water_32.pdb")}, "potential": {"kind": "qtip4pf"},
                             "md": {**md_table, "dtype": "float32", "steps": EVERY * ROWS},
                             "output": {"every": EVERY}})
    md = config["md"]
    system = from_ase(to_ase(from_ase(load_atoms(config["system"]))), dtype=jnp.float32)
    key, pkey = jax.random.split(jax.random.PRNGKey(int(md["seed"])))
    prep = prepare(config["potential"], system, dtype=jnp.float32, skin=neighbor_skin(md),
                   layout=md["neighbor_layout"], key=pkey)
    make = pimd_engine if md["ensemble"] == "pimd" else classical_engine
    engine = make(prep.potential, prep.params, system, prep.context, md)[0]
    state = engine.init(key, prep.neighbors)
    nbr = engine.place(prep.neighbors)
    block = make_block(engine, prep.neighbor_fns, system.cell, EVERY, ROWS)
    return compiled_hlo_counts(block, (state, nbr), steps=EVERY * ROWS)[0]


def _load():
    return json.loads(BUDGET.read_text()) if BUDGET.exists() else {}


def _update(name: str, counts) -> None:
    data = _load()
    backend = jax.default_backend()
    entry = data.setdefault(backend, {})
    entry["_recorded"] = {"date": datetime.date.today().isoformat(), "jax": jax.__version__,
                          "machine": f"{platform.machine()}, {platform.platform()}",
                          "margin": f"budget = ceil(count x {1 + MARGIN:g}) for {', '.join(GUARDED)}; "
                                    "host transfers: 0",
                          "system": f"water_32.pdb q-TIP4P/F float32, block of {ROWS} rows x {EVERY} steps"}
    entry[name] = {"counted": counts.summary(),
                   "budget": {**{k: math.ceil(getattr(counts, k) * (1 + MARGIN)) for k in GUARDED},
                              "host_transfers": 0}}
    BUDGET.parent.mkdir(parents=True, exist_ok=True)
    BUDGET.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize("name", list(CASES))
def test_md_step_kernels_and_host_transfers_within_budget(name, shared_data):
    counts = md_block_counts(CASES[name], shared_data)
    assert counts.per_step is not None, "no step loop (a while loop at scan depth 2) in the compiled block"
    assert counts.host_transfers == 0, (
        f"{name}: {counts.host_transfers:g} host transfers inside one block (must be 0): "
        f"{ {k: v for k, v in counts.ops.items() if 'callback' in k or k in ('send', 'recv', 'infeed', 'outfeed')} }")
    if os.environ.get("JAXPOT_UPDATE_STEP_BUDGET"):
        _update(name, counts)
        return
    entry = _load().get(jax.default_backend(), {})
    if name not in entry:
        pytest.skip(f"no step budget recorded for backend {jax.default_backend()!r}: record one with "
                    "JAXPOT_UPDATE_STEP_BUDGET=1 python -m pytest tests/test_step_budget.py")
    budget = entry[name]["budget"]
    over = {k: (getattr(counts, k), budget[k]) for k in GUARDED if getattr(counts, k) > budget[k]}
    assert not over, (
        f"{name}: kernels per step above the budget in {BUDGET.relative_to(ROOT)} "
        f"(count, budget): {over}; all counts now: {counts.summary()}; recorded "
        f"{entry['_recorded']['date']} with jax {entry['_recorded']['jax']}: {entry[name]['counted']}. "
        "If the change is deliberate, rewrite the budget: JAXPOT_UPDATE_STEP_BUDGET=1 python -m pytest "
        "tests/test_step_budget.py, and commit the json with the reason.")


def test_counter_sees_the_step_loop_and_host_callbacks():
    """The counter on a toy block: rows of steps, with a host callback in the step."""
    def step(x, _):
        y = jax.pure_callback(lambda a: a, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
        return jnp.sin(y) * 2.0 + x, None

    def block(x):
        def row(c, _):
            c, _ = jax.lax.scan(step, c, None, length=3)
            return c, jnp.sum(c)
        return jax.lax.scan(row, x, None, length=2)

    counts, _, _ = compiled_hlo_counts(block, jnp.ones(8), steps=6)
    assert counts.per_step_host_transfers == 1
    assert counts.host_transfers == 6
    assert counts.per_step >= 2                       # the callback and the arithmetic
    assert counts.kernels >= 6 * counts.per_step
    # a module without loops: no step loop, counts of the entry alone
    plain = count_hlo_text(jax.jit(lambda x: jnp.sin(x) + 1).lower(jnp.ones(4)).compile().as_text())
    assert plain.per_step is None and plain.host_transfers == 0 and plain.kernels >= 1


@pytest.mark.slow   # ~2-4 min on 2 CPU cores; run with -m slow
def test_bench_gpu_smoke_run_writes_its_table(tmp_path):
    """``experiments/bench_gpu.py --smoke`` runs every row at tiny sizes and writes its json and md."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_gpu.py"), "--smoke", "--villin",
                    "--max-seconds", "1000", "--out", str(tmp_path)], check=True, env=env, timeout=900)
    data = json.loads((tmp_path / "bench_gpu_smoke.json").read_text())
    assert (tmp_path / "bench_gpu_smoke.md").read_text().startswith("# GPU table")
    assert {"date", "device", "machine", "versions", "smoke", "elapsed_s", "command"} <= set(data["meta"])
    assert {"jax", "jaxlib", "openmm", "torch", "mace-torch"} <= set(data["meta"]["versions"])
    measured = [r for r in data["rows"] if "jaxpot" in r]
    assert {r["workload"].split(" ")[0] for r in measured} >= {"q-TIP4P/F", "mace", "nequip"}
    assert sum("beads" in r["workload"] for r in measured) == 2
    for r in measured:
        j = r["jaxpot"]
        assert {"compile_s", "counts"} <= set(j) and ("steps_per_s" in j or "ms" in j), r["workload"]
        assert {"kernels", "per_step", "per_step_min", "host_transfers"} <= set(j["counts"])
        assert j["counts"]["host_transfers"] == 0, r["workload"]
        assert "ratio" in r
