"""``jaxpot minimize`` and the ``[minimize]`` table (issue 25, part 3), and the
optional velocity / force arrays of trajectory.extxyz (issue 25, part 2),
read back with ase.io. A distorted q-TIP4P/F water molecule relaxes in tens
of steps; the MD runs are a few steps of 3 waters."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from ase.build import molecule
from ase.io import read, write

from jaxpot.errors import InputError
from jaxpot.minimize import MINIMIZE_TABLE, max_force, resolve_minimize_config, run_minimize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _distorted_water(path):
    atoms = molecule("H2O")
    atoms.positions[1] += [0.1, 0.05, 0.0]
    write(path, atoms, format="extxyz")
    return atoms


def _config(tmp_path, **minimize):
    _distorted_water(tmp_path / "w.extxyz")
    return {"system": {"file": str(tmp_path / "w.extxyz")}, "potential": {"kind": "qtip4pf"},
            "minimize": {"directory": str(tmp_path / "out"), **minimize}}


def test_table_defaults_and_refusals(tmp_path):
    assert MINIMIZE_TABLE.defaults() == {"optimizer": "fire", "fmax": 0.05, "steps": 1000,
                                         "directory": "runs/minimize"}
    cfg = _config(tmp_path)
    with pytest.raises(InputError, match="unknown optimizer"):
        resolve_minimize_config({**cfg, "minimize": {"optimizer": "newton"}})
    with pytest.raises(InputError, match="unknown key"):
        resolve_minimize_config({**cfg, "md": {}})
    with pytest.raises(InputError, match=r"\[minimize\] fmax"):
        resolve_minimize_config({**cfg, "minimize": {"fmax": -1.0}})
    with pytest.raises(InputError, match=r"no \[potential\]"):
        resolve_minimize_config({"system": cfg["system"]})


@pytest.mark.parametrize("optimizer", ["fire", "bfgs", "lbfgs"])
def test_relaxes_and_writes_outputs(tmp_path, optimizer):
    summary = run_minimize(_config(tmp_path, optimizer=optimizer, fmax=0.01))
    out = tmp_path / "out"
    assert summary["converged"] and summary["fmax"] < 0.01
    assert json.loads((out / "summary.json").read_text())["energy_eV"] == summary["energy_eV"]
    relaxed = read(out / "relaxed.extxyz")
    assert relaxed.get_potential_energy() == pytest.approx(summary["energy_eV"], abs=1e-10)
    assert max_force(relaxed.get_forces()) == pytest.approx(summary["fmax"], abs=1e-8)
    # q-TIP4P/F gas-phase minimum: r_OH = 0.9419 A (the model's r_eq), energy ~ 0
    d = relaxed.get_all_distances()
    assert d[0, 1] == pytest.approx(0.9419, abs=2e-3) and d[0, 2] == pytest.approx(0.9419, abs=2e-3)
    assert abs(summary["energy_eV"]) < 1e-4
    lines = (out / "minimize.csv").read_text().splitlines()
    assert lines[0] == "step,energy_eV,fmax_eV_per_A"
    trace = np.array([[float(x) for x in ln.split(",")] for ln in lines[1:]])
    assert trace[0, 0] == 0 and trace[-1, 0] == summary["steps"]
    assert trace[-1, 1] < trace[0, 1] and trace[-1, 2] == pytest.approx(summary["fmax"])


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "jaxpot.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_not_converged_warns_and_exits_zero_and_refuses_an_existing_directory(tmp_path):
    import tomli_w

    cfg = _config(tmp_path, steps=2, fmax=1e-6)
    (tmp_path / "min.toml").write_text(tomli_w.dumps(cfg))
    proc = _cli("minimize", "min.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning: not converged" in proc.stdout
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["converged"] is False
    proc = _cli("minimize", "min.toml", cwd=tmp_path)          # existing directory: refused, one line
    assert proc.returncode == 2 and "exists and is not empty" in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1 and "Traceback" not in proc.stderr


# ---- trajectory.extxyz with [output] velocities / forces (issue 25, part 2) ----

ARGON = {"kind": "lj", "epsilon": 0.0104, "sigma": 3.40, "cutoff": 8.5}


def _argon_md(directory, **md):
    return {"system": {"build": {"kind": "bulk", "name": "Ar", "crystalstructure": "fcc", "a": 5.26,
                                 "cubic": True, "repeat": [2, 2, 2]}},
            "potential": dict(ARGON),
            "md": {"temperature": 80.0, "timestep": 5.0, "steps": 20, "block_steps": 10, **md},
            "output": {"directory": str(directory), "every": 5, "velocities": True, "forces": True,
                       **({"all_beads": True} if md.get("ensemble") == "pimd" else {})}}


_CALC = []


def _reference_forces(atoms):
    """Forces (eV/A) of ``atoms`` through the ASE calculator (one, compiled once)."""
    from jaxpot.interop.ase import JaxpotCalculator

    if not _CALC:
        _CALC.append(JaxpotCalculator(dict(ARGON)))
    atoms = atoms.copy()
    atoms.calc = _CALC[0]
    return atoms.get_forces()


def test_trajectory_carries_velocities_and_forces_that_ase_reads(tmp_path):
    from jaxpot import io
    from jaxpot.dynamics import quantity
    from jaxpot.simulate import run_md

    run_md(_argon_md(tmp_path / "nvt"), progress=False)
    frames = read(tmp_path / "nvt" / "trajectory.extxyz", index=":")
    thermo = io.read_thermo(tmp_path / "nvt" / "thermo.csv")
    assert [a.info["step"] for a in frames] == [5, 10, 15, 20]
    for k, a in enumerate(frames):
        v = a.arrays["velocities"]                                  # A/fs
        assert v.shape == (len(a), 3) and np.all(np.isfinite(v))
        kin = float(quantity.kinetic_energy(a.get_masses()[:, None] * v, a.get_masses()))
        assert kin == pytest.approx(thermo["kinetic_energy_eV"][k], rel=1e-6)
        np.testing.assert_allclose(a.get_forces(), _reference_forces(a), atol=1e-6)   # eV/A
    # off by default: positions only
    from jaxpot.simulate import OUTPUT_DEFAULTS
    from jaxpot.simulate.output import write_frames

    assert OUTPUT_DEFAULTS["velocities"] is False and OUTPUT_DEFAULTS["forces"] is False
    from ase import Atoms

    template = Atoms(frames[0].numbers, frames[0].positions, cell=frames[0].cell, pbc=True)
    write_frames(tmp_path / "plain.extxyz", template, np.stack([template.positions]), np.array([5]), 5.0)
    a = read(tmp_path / "plain.extxyz")
    assert "velocities" not in a.arrays and a.calc is None


def test_pimd_trajectory_carries_centroid_velocities_and_forces(tmp_path):
    from jaxpot.simulate import run_md

    run_md(_argon_md(tmp_path / "pimd", ensemble="pimd", beads=2), progress=False)
    frames = read(tmp_path / "pimd" / "trajectory.extxyz", index=":")
    beads = read(tmp_path / "pimd" / "trajectory_beads.extxyz", index=":")
    assert len(frames) == 4 and len(beads) == 8
    for k, a in enumerate(frames):
        assert a.arrays["velocities"].shape == (len(a), 3) and np.all(np.isfinite(a.arrays["velocities"]))
        bead_forces = np.mean([_reference_forces(b) for b in beads[2 * k:2 * k + 2]], axis=0)
        np.testing.assert_allclose(a.get_forces(), bead_forces, atol=1e-6)
        assert "velocities" not in beads[2 * k].arrays
