"""The `jaxpot md` driver end to end: API outputs, exact restart, refusal to
overwrite, clear errors on bad input, neighbor overflow re-run, failure
midway keeps outputs."""
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_restart_bit_identical

from jaxpot import io
from jaxpot.cli import main
from jaxpot.simulate import SimulationError, run_md

ARGON = {"kind": "lj", "epsilon": 0.0104, "sigma": 3.40, "cutoff": 8.5}


def argon_config(directory, steps=200, every=10, **md):
    return {
        "system": {"build": {"kind": "bulk", "name": "Ar", "crystalstructure": "fcc", "a": 5.26,
                             "cubic": True, "repeat": [2, 2, 2]}},
        "potential": dict(ARGON),
        "md": {"ensemble": "nvt", "thermostat": "langevin", "temperature": 80.0, "timestep": 5.0,
               "steps": steps, "equilibration_steps": steps // 2, "block_steps": 50, "tau": 200.0, **md},
        "output": {"directory": str(directory), "every": every},
    }


def test_nvt_run_writes_every_output_of_the_api(tmp_path):
    summary = run_md(argon_config(tmp_path / "run"), progress=False)
    d = tmp_path / "run"
    for name in ("thermo.csv", "trajectory.extxyz", "checkpoint.npz", "config.toml", "summary.json"):
        assert (d / name).exists(), name
    on_disk = json.loads((d / "summary.json").read_text())
    for key in ("atoms", "beads", "steps", "time_ps", "temperature_K", "potential_energy_eV",
                "kinetic_energy_eV", "kinetic_energy_per_atom_eV", "conserved_drift_eV_per_ps_per_atom",
                "steps_per_second", "compile_seconds"):
        assert key in on_disk, key
    assert on_disk["atoms"] == 32 and on_disk["steps"] == 200 and on_disk["time_ps"] == pytest.approx(1.0)
    thermo = io.read_thermo(d / "thermo.csv")
    for col in ("step", "time_fs", "temperature_K", "potential_energy_eV", "kinetic_energy_eV", "conserved_eV"):
        assert col in thermo
    assert len(thermo["step"]) == 20 and thermo["step"][-1] == 200
    from ase.io import read
    frames = read(d / "trajectory.extxyz", index=":")
    assert len(frames) == 20 and frames[-1].info["step"] == 200
    resolved = io.read_toml(d / "config.toml")
    assert resolved["md"]["skin"] == 1.0 and resolved["potential"]["shift"] is False
    # per-element kinetic energy of the only element equals K / N
    ar = summary["kinetic_energy_per_atom_eV"]["Ar"]["mean"]
    assert ar == pytest.approx(summary["kinetic_energy_eV"]["mean"] / 32, rel=1e-9)


def test_restart_continues_bit_identically(tmp_path):
    assert_restart_bit_identical(tmp_path, argon_config, steps=200)


def test_existing_run_directory_is_not_overwritten_without_flag(tmp_path, capsys):
    from jaxpot.io import write_toml
    cfg = argon_config(tmp_path / "run", steps=20)
    write_toml(tmp_path / "c.toml", cfg)
    assert main(["md", str(tmp_path / "c.toml"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["md", str(tmp_path / "c.toml"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert main(["md", str(tmp_path / "c.toml"), "--no-progress", "--overwrite"]) == 0


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c["potential"].update(kind="nonsense"), "unknown potential kind 'nonsense'"),
    (lambda c: c["potential"].pop("epsilon"), "epsilon"),
    (lambda c: c["md"].update(ensemble="npt"), "unknown ensemble"),
    (lambda c: c["md"].update(thermostat="pile_l"), "does not go with ensemble"),
    (lambda c: c["md"].update(colour="blue"), "unknown key(s) in [md]: colour"),
    (lambda c: c.update(system={"file": "/nonexistent/water.xyz"}), "structure file not found"),
    (lambda c: c["system"]["build"].update(a=0.3), "overlap"),
])
def test_bad_input_gives_one_line_error(tmp_path, capsys, mutate, expected):
    cfg = argon_config(tmp_path / "run", steps=20)
    mutate(cfg)
    io.write_toml(tmp_path / "c.toml", cfg)
    assert main(["md", str(tmp_path / "c.toml"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1


def test_unknown_element_in_structure_file_is_named(tmp_path, capsys):
    (tmp_path / "x.xyz").write_text("2\n\nAr 0 0 0\nQq 0 0 3\n")
    cfg = argon_config(tmp_path / "run", steps=20)
    cfg["system"] = {"file": str(tmp_path / "x.xyz")}
    io.write_toml(tmp_path / "c.toml", cfg)
    assert main(["md", str(tmp_path / "c.toml"), "--no-progress"]) == 2
    assert "Qq" in capsys.readouterr().err


def test_neighbor_overflow_reruns_block_and_matches_a_roomy_list(tmp_path, monkeypatch):
    ref = run_md(argon_config(tmp_path / "ref", steps=100, skin=0.2), progress=False)
    import jaxpot.partition as nb
    original_allocate = nb.NeighborListFns.allocate
    original_reallocate = nb.NeighborListFns.reallocate
    calls = []

    def exact_fit(self, positions, cell, capacity=None, row_capacity=None, cell_capacity=None):
        if capacity is None:   # the driver's first allocation: no margin at all
            probe = original_allocate(self, positions, cell)
            return self.build(positions, cell, int(probe.n_pairs), int(probe.max_row), probe.cell_capacity)
        return original_allocate(self, positions, cell, capacity, row_capacity, cell_capacity)

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original_reallocate(self, *args, **kwargs)

    monkeypatch.setattr(nb.NeighborListFns, "allocate", exact_fit)
    monkeypatch.setattr(nb.NeighborListFns, "reallocate", counting)
    tight = run_md(argon_config(tmp_path / "tight", steps=100, skin=0.2), progress=False)
    assert calls, "the list never overflowed: the test did not exercise the re-run"
    a = io.read_thermo(tmp_path / "ref" / "thermo.csv")
    b = io.read_thermo(tmp_path / "tight" / "thermo.csv")
    np.testing.assert_allclose(a["potential_energy_eV"], b["potential_energy_eV"], rtol=1e-9)
    assert tight["potential_energy_eV"]["mean"] == pytest.approx(ref["potential_energy_eV"]["mean"], rel=1e-9)


def test_blow_up_stops_with_reason_and_keeps_rows_and_checkpoint(tmp_path):
    # a stiff tether integrated far beyond the Verlet stability limit (omega dt ~ 30):
    # amplitudes grow ~1000x per step until the energy overflows
    cfg = argon_config(tmp_path / "run", steps=400, timestep=60.0)
    cfg["potential"] = {"kind": "harmonic", "k": 1000.0}
    cfg["system"] = {"build": {"kind": "molecule", "name": "CH4"}}   # no cell: the tether is unbounded
    cfg["md"].update(ensemble="nve", thermostat="none")
    # the physical sanity guards (issue 24) would stop this first: off, to reach the non-finite check
    cfg["md"].update(max_temperature_factor=0.0, max_drift_eV_per_atom=0.0, max_force_eV_per_A=0.0)
    with pytest.raises(SimulationError, match="non-finite energy at step"):
        run_md(cfg, progress=False)
    d = tmp_path / "run"
    thermo = io.read_thermo(d / "thermo.csv")
    assert len(thermo["step"]) >= 1
    assert np.all(np.isfinite(thermo["potential_energy_eV"]))
    assert (d / "checkpoint.npz").exists()
    leaves, meta = io.load_checkpoint(d / "checkpoint.npz")
    assert meta["step"] <= thermo["step"][-1]


def test_cli_entry_point_runs_as_a_program(tmp_path):
    io.write_toml(tmp_path / "c.toml", argon_config(tmp_path / "run", steps=20))
    res = subprocess.run([sys.executable, "-m", "jaxpot.cli", "md", str(tmp_path / "c.toml"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "temperature" in res.stdout


def test_float32_run_conserves_energy_like_float64(tmp_path):
    """NVE argon in float32 and float64 (the random velocities differ between
    precisions, so the trajectories are compared statistically): both keep
    the conserved energy within a small fraction of the kinetic-energy
    fluctuations, and the float32 run's thermo values are float64 sums."""
    for name, dtype in (("f64", "float64"), ("f32", "float32")):
        cfg = argon_config(tmp_path / name, steps=200, dtype=dtype, timestep=2.0)
        cfg["md"].update(ensemble="nve", thermostat="none")
        cfg["potential"]["shift"] = True   # no energy jumps at the cutoff
        run_md(cfg, progress=False)
        th = io.read_thermo(tmp_path / name / "thermo.csv")
        assert np.all(np.isfinite(th["conserved_eV"]))
        assert th["conserved_eV"].std() < 0.05 * th["kinetic_energy_eV"].std(), name
    resolved = io.read_toml(tmp_path / "f32" / "config.toml")
    assert resolved["md"]["dtype"] == "float32"


@pytest.mark.parametrize("ensemble,thermostat", [("nvt", "langevin"), ("pimd", "pile_l")])
def test_forces_only_steps_between_rows_give_the_same_rows_and_state(ensemble, thermostat):
    """Large systems compute the potential energy only on the steps that a
    row reports; every row and the final state must equal those of a block
    that evaluates it each step (forces are the same computation)."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    from ase.build import bulk

    from jaxpot.partition import neighbor_fns_for
    from jaxpot.potentials import build_potential
    from jaxpot.potentials.base import Context
    from jaxpot.simulate import (MD_DEFAULTS, cast_params, classical_engine, make_block, neighbor_skin,
                                 pimd_engine, without_bead_energies, without_potential_energy)
    from jaxpot.system import from_ase

    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=3)
    system = from_ase(atoms, dtype=jnp.float64)
    pot = build_potential(dict(ARGON), system)
    params = cast_params(pot.init(jax.random.PRNGKey(0), system), jnp.float64)
    ctx = Context(species=system.species, cell=system.cell, neighbors=None, charges=system.charges)
    md = {**MD_DEFAULTS, "ensemble": ensemble, "thermostat": thermostat, "temperature": 80.0,
          "timestep": 5.0 if ensemble == "nvt" else 2.0, "tau": 200.0, "beads": 4 if ensemble == "pimd" else 1}
    make, forget = ((classical_engine, without_potential_energy) if ensemble == "nvt"
                    else (pimd_engine, without_bead_energies))
    engine = make(pot, params, system, ctx, md)[0]
    assert engine.without_energy is None            # 108 atoms: below the size that skips energies
    fns = neighbor_fns_for(pot, np.asarray(system.cell), True, system.n_atoms, skin=neighbor_skin(md))
    nbr = fns.allocate(system.positions, system.cell)
    state = engine.init(jax.random.PRNGKey(1), nbr)
    every, rows = 5, 3
    out = {}
    for name, skip in (("each step", None), ("rows only", forget)):
        block = make_block(dataclasses.replace(engine, without_energy=skip), fns, system.cell, every, rows)
        out[name] = jax.jit(block)((state, nbr))
    (s1, _), (r1, _) = out["each step"]
    (s2, _), (r2, _) = out["rows only"]
    for key in r1:
        np.testing.assert_allclose(r2[key], r1[key], rtol=1e-12, atol=1e-12, err_msg=key)
    assert np.all(np.isfinite(r2["potential_energy_eV"]))
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # a forces-only step leaves the energy unknown, not stale
    forgotten = forget(s1)
    assert np.all(np.isnan(np.asarray(forgotten.potential_energy if ensemble == "nvt" else forgotten.energies)))
