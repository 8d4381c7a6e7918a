"""The command line as a user meets it: ``jaxpot demo`` from nothing, help,
and one-line refusals (existing run directory, unavailable commands).

The console script is used when it is on PATH (what ``pip install -e .``
provides), else ``python -m jaxpot.cli``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# summary.json keys every run carries (docs/outputs.md)
SUMMARY_KEYS = ("atoms", "beads", "steps", "time_ps", "temperature_K", "potential_energy_eV",
                "kinetic_energy_eV", "kinetic_energy_per_atom_eV", "conserved_drift_eV_per_ps_per_atom",
                "steps_per_second", "compile_seconds")
MEAN_SEM_KEYS = ("temperature_K", "potential_energy_eV", "kinetic_energy_eV")
THERMO_COLUMNS = ("step", "time_fs", "temperature_K", "potential_energy_eV", "kinetic_energy_eV",
                  "conserved_eV")


def _command():
    exe = shutil.which("jaxpot")
    return [exe] if exe else [sys.executable, "-m", "jaxpot.cli"]


def jaxpot(*args, cwd=None, timeout=600):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([*_command(), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _one_line_error(proc):
    """Non-zero exit with exactly one non-empty line on stderr and no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line message, got:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """One quick demo run shared by the tests below (about a minute)."""
    directory = tmp_path_factory.mktemp("cli") / "demo"
    proc = jaxpot("demo", "--quick", "--directory", directory, "--no-progress",
                  cwd=directory.parent)
    assert proc.returncode == 0, f"jaxpot demo failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return directory, proc


def _check_summary(summary, name):
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    assert not missing, f"{name}/summary.json lacks API keys {missing}"
    for key in MEAN_SEM_KEYS:
        assert set(summary[key]) >= {"mean", "sem"}, (name, key, summary[key])
    assert set(summary["kinetic_energy_per_atom_eV"]) == {"H", "O"}
    for el, d in summary["kinetic_energy_per_atom_eV"].items():
        assert set(d) >= {"mean", "sem"}, (name, el, d)
        assert d["mean"] > 0
    assert summary["atoms"] == 96   # the demo's 32 water molecules
    assert summary["steps"] > 0 and summary["time_ps"] > 0
    assert 100.0 < summary["temperature_K"]["mean"] < 500.0, summary["temperature_K"]
    assert summary["potential_energy_eV"]["mean"] < 0.0   # bound liquid


def test_demo_quick_writes_classical_and_pimd_summaries_and_figure(demo_dir):
    directory, proc = demo_dir
    classical = json.loads((directory / "classical" / "summary.json").read_text())
    pimd = json.loads((directory / "pimd" / "summary.json").read_text())
    _check_summary(classical, "classical")
    _check_summary(pimd, "pimd")
    assert classical["beads"] == 1
    assert pimd["beads"] > 1
    assert set(pimd["kinetic_energy_primitive_eV"]) >= {"mean", "sem"}
    # zero-point motion: a quantum H moves faster than a classical one, even in a short run
    assert (pimd["kinetic_energy_per_atom_eV"]["H"]["mean"]
            > classical["kinetic_energy_per_atom_eV"]["H"]["mean"])
    for sub in ("classical", "pimd"):
        for name in ("thermo.csv", "trajectory.extxyz", "config.toml"):
            assert (directory / sub / name).is_file(), f"{sub}/{name} missing"
        header = (directory / sub / "thermo.csv").read_text().splitlines()[0].split(",")
        assert set(THERMO_COLUMNS) <= set(header), (sub, header)
    assert "kinetic_energy_primitive_eV" in (directory / "pimd" / "thermo.csv").read_text().splitlines()[0]
    png = directory / "demo.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "kinetic energy of H" in proc.stdout


def test_demo_refuses_to_overwrite_existing_directory(demo_dir):
    directory, _ = demo_dir
    before = (directory / "classical" / "summary.json").read_bytes()
    proc = jaxpot("demo", "--quick", "--directory", directory, "--no-progress", cwd=directory.parent)
    line = _one_line_error(proc)
    assert "overwrite" in line, line
    assert (directory / "classical" / "summary.json").read_bytes() == before


def test_help_lists_the_commands():
    proc = jaxpot("--help")
    assert proc.returncode == 0, proc.stderr
    for verb in ("md", "train", "eval", "demo"):
        assert verb in proc.stdout
    demo = jaxpot("demo", "--help")
    assert demo.returncode == 0 and "--quick" in demo.stdout and "--overwrite" in demo.stdout


def test_train_with_missing_config_exits_with_one_line(tmp_path):
    line = _one_line_error(jaxpot("train", "x.toml", cwd=tmp_path))
    assert line.startswith("jaxpot"), line
