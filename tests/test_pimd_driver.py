"""PIMD through `jaxpot md`: outputs of the API, exact restart, beads
sharded over (forced host) devices equal to one device."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import assert_restart_bit_identical

from jaxpot import io
from jaxpot.simulate import run_md


def water_pimd_config(directory, steps=40, beads=4, **md):
    return {
        "system": {"build": {"kind": "water_cluster", "molecules": 3, "seed": 0}},
        "potential": {"kind": "qtip4pf"},
        "md": {"ensemble": "pimd", "beads": beads, "thermostat": "pile_l", "temperature": 300.0,
               "timestep": 0.25, "steps": steps, "equilibration_steps": steps // 2, "block_steps": 20, **md},
        "output": {"directory": str(directory), "every": 5, "all_beads": True},
    }


def test_pimd_run_writes_centroids_beads_and_quantum_estimators(tmp_path):
    run_md(water_pimd_config(tmp_path / "run"), progress=False)
    d = tmp_path / "run"
    on_disk = json.loads((d / "summary.json").read_text())
    assert on_disk["beads"] == 4
    for key in ("kinetic_energy_eV", "kinetic_energy_primitive_eV", "kinetic_energy_per_atom_eV"):
        assert key in on_disk
    assert set(on_disk["kinetic_energy_per_atom_eV"]) == {"H", "O"}
    th = io.read_thermo(d / "thermo.csv")
    assert "kinetic_energy_primitive_eV" in th and "spring_energy_eV" in th
    from ase.io import read
    cents = read(d / "trajectory.extxyz", index=":")
    beads = read(d / "trajectory_beads.extxyz", index=":")
    assert len(cents) == 8 and len(beads) == 8 * 4
    # the centroid frame is the mean of its beads
    np.testing.assert_allclose(cents[0].positions, np.mean([b.positions for b in beads[:4]], axis=0), atol=1e-8)
    # per-element centroid-virial kinetic energies add up to the total
    n = {"H": 6, "O": 3}
    total = sum(n[el] * th[f"kinetic_energy_per_atom_{el}_eV"] for el in n)
    np.testing.assert_allclose(total, th["kinetic_energy_eV"], rtol=1e-10)


def test_pimd_restart_is_bit_identical(tmp_path):
    assert_restart_bit_identical(tmp_path, water_pimd_config, steps=40)


@pytest.mark.slow   # CI budget: test_pimd's sharded-beads test covers the sharding on every run
def test_beads_sharded_over_four_devices_match_one_device(tmp_path):
    script = textwrap.dedent(f"""
        import sys, json
        from jaxpot.simulate import run_md
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from test_pimd_driver import water_pimd_config
        import jax
        assert jax.device_count() == 4
        for name, dev in (("one", 1), ("four", 4)):
            run_md(water_pimd_config({str(tmp_path)!r} + "/" + name, devices=dev), progress=False)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    a = io.read_thermo(tmp_path / "one" / "thermo.csv")
    b = io.read_thermo(tmp_path / "four" / "thermo.csv")
    for col in ("potential_energy_eV", "kinetic_energy_eV", "kinetic_energy_primitive_eV", "conserved_eV"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-9, atol=1e-10, err_msg=col)


def _split_water(directory, contraction, steps=40):
    cfg = water_pimd_config(directory, steps=steps, contraction=contraction)
    cfg["potential"] = {"kind": "sum", "terms": [{"kind": "qtip4pf", "part": "intramolecular"},
                                                 {"kind": "qtip4pf", "part": "intermolecular"}]}
    return cfg


@pytest.mark.slow   # CI budget: test_pimd checks contracted forces and contracted NVE on every run
def test_contraction_over_all_beads_reproduces_uncontracted_run_and_centroid_contraction_stays_close(tmp_path):
    run_md(water_pimd_config(tmp_path / "plain"), progress=False)
    run_md(_split_water(tmp_path / "split", [0, 4]), progress=False)
    run_md(_split_water(tmp_path / "rpc", [0, 1]), progress=False)
    a = io.read_thermo(tmp_path / "plain" / "thermo.csv")
    b = io.read_thermo(tmp_path / "split" / "thermo.csv")
    for col in ("potential_energy_eV", "kinetic_energy_eV", "conserved_eV"):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-9, atol=1e-10, err_msg=col)
    c = io.read_thermo(tmp_path / "rpc" / "thermo.csv")
    assert np.all(np.isfinite(c["conserved_eV"]))
    # same seed, 40 steps of 0.25 fs: contracting the soft intermolecular part to
    # the centroid changes the potential by a small fraction of its fluctuation
    assert np.max(np.abs(c["potential_energy_eV"] - a["potential_energy_eV"])) < 0.05 * np.ptp(a["potential_energy_eV"]) + 2e-3


def test_contraction_needs_a_sum_with_matching_terms(tmp_path):
    import pytest

    from jaxpot.system import InputError

    with pytest.raises(InputError, match="kind = 'sum'"):
        run_md(water_pimd_config(tmp_path / "x", contraction=[0, 1]), progress=False)
    with pytest.raises(InputError, match="between 1 and"):
        run_md(_split_water(tmp_path / "y", [0, 9]), progress=False)
