"""Issue 24: blow-ups that stay finite stop with a one-line reason (physical
sanity guards of the MD driver); corrupt checkpoints and parameter files give
one-line errors; SIGINT ends `jaxpot md` cleanly with how to continue."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxpot import io
from jaxpot.cli import main
from jaxpot.simulate import SimulationError, run_md

ARGON = {"kind": "lj", "epsilon": 0.0104, "sigma": 3.40, "cutoff": 8.5}


def argon(directory, steps=100, **md):
    return {
        "system": {"build": {"kind": "bulk", "name": "Ar", "crystalstructure": "fcc", "a": 5.26,
                             "cubic": True, "repeat": [2, 2, 2]}},
        "potential": dict(ARGON),
        "md": {"ensemble": "nvt", "temperature": 80.0, "timestep": 5.0, "steps": steps,
               "block_steps": 50, **md},
        "output": {"directory": str(directory), "every": 10},
    }


def water(directory, steps=10, every=5, **md):
    return {
        "system": {"build": {"kind": "molecule", "name": "H2O"}},
        "potential": {"kind": "qtip4pf"},
        "md": {"ensemble": "nvt", "temperature": 300.0, "timestep": 0.5, "steps": steps,
               "block_steps": steps, **md},
        "output": {"directory": str(directory), "every": every},
    }


def _kept(d, trip_step):
    thermo = io.read_thermo(d / "thermo.csv")
    _, meta = io.load_checkpoint(d / "checkpoint.npz")
    assert np.all(np.isfinite(thermo["temperature_K"])) if len(thermo["step"]) else True
    assert all(s < trip_step for s in thermo["step"])
    assert meta["step"] <= trip_step
    return thermo, meta


def test_lj_nve_at_200_fs_stops_with_a_guard(tmp_path):
    # NVE has no target temperature to hold: energy conservation (drift) and the force bound watch it
    with pytest.raises(SimulationError, match=r"^step \d+: .*max_(drift_eV_per_atom|force_eV_per_A)") as err:
        run_md(argon(tmp_path / "run", ensemble="nve", thermostat="none", timestep=200.0), progress=False)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "run") in msg
    _kept(tmp_path / "run", int(msg.split()[1].rstrip(":")))


def test_water_nvt_at_50_fs_stops_and_keeps_rows_frames_checkpoint(tmp_path):
    d = tmp_path / "run"
    # rows every step: at 50 fs the energy overflows within 10 steps (then the non-finite check stops it)
    with pytest.raises(SimulationError, match=r"^step 1: temperature .*\[md\] max_temperature_factor") as err:
        run_md(water(d, timestep=50.0, every=1), progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    _kept(d, int(msg.split()[1].rstrip(":")))


def test_each_guard_names_its_key_and_zero_turns_it_off(tmp_path):
    # LJ NVE at 200 fs with only the drift or the force guard on: each trips, naming its key
    # (the temperature guard: test_water_nvt_at_50_fs_stops_and_keeps_rows_frames_checkpoint)
    off = {"max_temperature_factor": 0.0, "max_drift_eV_per_atom": 0.0, "max_force_eV_per_A": 0.0}
    for key in ("max_drift_eV_per_atom", "max_force_eV_per_A"):
        md = dict(off, **{key: {"max_temperature_factor": 5.0, "max_drift_eV_per_atom": 1.0,
                                "max_force_eV_per_A": 1000.0}[key]})
        with pytest.raises(SimulationError, match=key):
            run_md(argon(tmp_path / key, steps=50, ensemble="nve", thermostat="none", timestep=200.0, **md),
                   progress=False)
    # all off: the blow-up is finite and the run finishes (what issue 24 reported)
    summary = run_md(argon(tmp_path / "off", steps=50, ensemble="nve", thermostat="none", timestep=200.0, **off),
                     progress=False)
    assert summary["temperature_K"]["mean"] > 1e6


def test_well_behaved_runs_do_not_trip(tmp_path):
    a = run_md(argon(tmp_path / "a", steps=100), progress=False)
    run_md(water(tmp_path / "w", steps=20, ensemble="nve", thermostat="none"), progress=False)
    run_md(argon(tmp_path / "p", steps=20, ensemble="pimd", beads=2), progress=False)
    # the NVE reference temperature is kept in the checkpoint for restarts
    _, meta = io.load_checkpoint(tmp_path / "w" / "checkpoint.npz")
    assert meta["guard_temperature_K"] >= 300.0
    assert np.isfinite(a["temperature_K"]["mean"])


def test_guard_limits_are_checked_config_keys(tmp_path):
    from jaxpot.errors import InputError
    with pytest.raises(InputError, match="max_force_eV_per_A"):
        run_md(argon(tmp_path / "r", max_force_eV_per_A=-1.0), progress=False)
    with pytest.raises(InputError, match="max_temperature_factor"):
        run_md(argon(tmp_path / "r", max_temperature_factor=True), progress=False)


# --- files that survive faults -------------------------------------------------------------

def _one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("jaxpot: error:"), err
    return lines[0]


def test_corrupt_checkpoint_gives_one_line_error(tmp_path, capsys):
    d = tmp_path / "run"
    run_md(argon(d, steps=20), progress=False)
    assert not [p for p in d.iterdir() if ".tmp" in p.name]   # atomic writes leave no temporaries
    ck = d / "checkpoint.npz"
    data = ck.read_bytes()
    for damaged in (data[:len(data) // 2], os.urandom(500), b""):
        ck.write_bytes(damaged)
        line = _one_line_error(capsys, ["md", "--restart", str(d), "--no-progress"])
        assert "checkpoint.npz" in line


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_params_give_one_line_error_in_md_and_eval(tmp_path, capsys, damage):
    from ase.build import bulk
    from ase.io import write

    from jaxpot.potentials.saved import PARAMS_FILE, save_model
    model = tmp_path / "model"
    save_model(model, {"kind": "atomic_energies", "energies": {"Ar": -1.0}}, {"energies": np.asarray([-1.0])})
    assert not [p for p in model.iterdir() if ".tmp" in p.name]   # atomic writes leave no temporaries
    f = model / PARAMS_FILE
    data = f.read_bytes()
    f.write_bytes({"truncate": data[:len(data) // 2], "garbage": os.urandom(300)}[damage])
    cfg = argon(tmp_path / "run", steps=20)
    cfg["potential"] = {"kind": "model", "path": str(model)}
    io.write_toml(tmp_path / "c.toml", cfg)
    line = _one_line_error(capsys, ["md", str(tmp_path / "c.toml"), "--no-progress"])
    assert PARAMS_FILE in line
    atoms = bulk("Ar", "fcc", a=5.26)
    atoms.info["energy"] = -1.0
    write(tmp_path / "d.extxyz", [atoms], format="extxyz")
    line = _one_line_error(capsys, ["eval", str(model), str(tmp_path / "d.extxyz")])
    assert PARAMS_FILE in line


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from jaxpot.files import atomic_open
    f = tmp_path / "x.json"
    f.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(f, "w") as fh:
            fh.write("new, half")
            raise RuntimeError("disk full")
    assert f.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
    g = tmp_path / "new.json"
    with atomic_open(g, "w") as fh:
        fh.write("{}")
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert g.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_sigint_ends_md_cleanly_with_how_to_continue(tmp_path):
    d = tmp_path / "run"
    io.write_toml(tmp_path / "c.toml", argon(d, steps=200000, block_steps=100))
    proc = subprocess.Popen([sys.executable, "-m", "jaxpot.cli", "md", str(tmp_path / "c.toml"), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if (d / "thermo.csv").exists() and len((d / "thermo.csv").read_text().splitlines()) > 2:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted at step" in lines[0] and f"jaxpot md --restart {d}" in lines[0]
    step = int(lines[0].split("interrupted at step ")[1].split(";")[0])
    _, meta = io.load_checkpoint(d / "checkpoint.npz")
    assert meta["step"] == step and step > 0
