"""Fitting machinery: data, losses, optax loop, checkpoints, train/eval CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Icosahedron
from ase.io import write

from jaxpot import io
from jaxpot.cli import main
from jaxpot.system import InputError
from jaxpot.training import data as tdata
from jaxpot.training.fit import train

EPS, SIG, RC = 0.0104, 3.4, 8.5   # argon LJ, eV and A


def _ar_clusters(n_frames, seed=0, noise=0.15):
    """13-atom argon icosahedra, displaced at random, labelled by jaxpot's LJ."""
    from jaxpot.interop.ase import JaxpotCalculator

    rng = np.random.default_rng(seed)
    calc = JaxpotCalculator({"kind": "lj", "epsilon": EPS, "sigma": SIG, "cutoff": RC})
    frames = []
    for _ in range(n_frames):
        a = Icosahedron("Ar", 2, latticeconstant=5.26)
        a.positions += rng.normal(scale=noise, size=a.positions.shape)
        a.calc = calc
        b = Atoms(a.numbers, a.positions)
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy(), forces=a.get_forces())
        frames.append(b)
    return frames


@pytest.fixture(scope="module")
def ar_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ar") / "ar.extxyz"
    write(path, _ar_clusters(30), format="extxyz")
    return path


def _lj_config(data, out, epochs=60, **fit):
    f = {"epochs": epochs, "batch_size": 4, "learning_rate": 0.01, "warmup_epochs": 0,
         "ema_decay": 0.0, "checkpoint_every": 5}
    f.update(fit)
    return {"data": {"train": str(data), "validation_fraction": 0.2, "seed": 1},
            "model": {"kind": "lj", "epsilon": 0.008, "sigma": 3.2, "cutoff": RC, "atomic_energies": "none"},
            "fit": f, "output": {"directory": str(out)}}


def _params(model_dir):
    from flax import serialization

    return serialization.msgpack_restore((Path(model_dir) / "params.msgpack").read_bytes())


def test_fitting_lennard_jones_recovers_the_parameters_that_made_the_data(ar_file, tmp_path):
    """Noise-free LJ data, perturbed start (epsilon -23%, sigma -6%): the fit
    must return to the generating parameters; the remaining error is the
    optimiser's, far below the perturbation."""
    summary = train(_lj_config(ar_file, tmp_path / "fit", epochs=80), progress=False)
    p = _params(tmp_path / "fit")
    assert abs(float(p["lj_epsilon"][0]) / EPS - 1) < 0.01
    assert abs(float(p["lj_sigma"][0]) / SIG - 1) < 0.002
    # the data are exact, so the fitted model's force error is tiny compared
    # with the force scale of the data (~0.1 eV/A)
    f_scale = np.sqrt(np.mean(np.concatenate([a.get_forces().ravel() for a in _ar_clusters(5)]) ** 2))
    assert summary["validation"]["forces_rmse_eV_per_A"] < 0.02 * f_scale
    for key in ("energy_mae_eV_per_atom", "energy_rmse_eV_per_atom", "forces_mae_eV_per_A", "forces_rmse_eV_per_A"):
        assert key in summary["train"] and key in summary["validation"]
    m = io.read_thermo(tmp_path / "fit" / "metrics.csv")
    assert len(m["epoch"]) == 80
    assert m["val_forces_rmse_eV_per_A"][-1] < 0.1 * m["val_forces_rmse_eV_per_A"][0]


def test_resumed_training_gives_the_same_parameters_as_an_uninterrupted_run(ar_file, tmp_path):
    """Interrupted after 5 of 10 epochs and continued with --restart: the
    parameters, the EMA and the per-epoch losses equal the straight run's
    bit for bit (shuffling is seeded per epoch, the optimiser state is saved)."""
    train(_lj_config(ar_file, tmp_path / "ten", epochs=10, ema_decay=0.9, schedule="constant"), progress=False)
    train(_lj_config(ar_file, tmp_path / "half", epochs=5, ema_decay=0.9, schedule="constant"), progress=False)
    cfg = io.read_toml(tmp_path / "half" / "train_config.toml")
    cfg["fit"]["epochs"] = 10
    io.write_toml(tmp_path / "half" / "train_config.toml", cfg)
    assert main(["train", "--restart", str(tmp_path / "half"), "--no-progress"]) == 0
    a, b = _params(tmp_path / "ten"), _params(tmp_path / "half")
    np.testing.assert_array_equal(a["lj_epsilon"], b["lj_epsilon"])
    np.testing.assert_array_equal(a["lj_sigma"], b["lj_sigma"])
    ma = io.read_thermo(tmp_path / "ten" / "metrics.csv")
    mb = io.read_thermo(tmp_path / "half" / "metrics.csv")
    np.testing.assert_array_equal(ma["train_loss"], mb["train_loss"])


def test_eval_cli_reports_the_api_error_keys_and_matches_a_direct_computation(ar_file, tmp_path, capsys):
    train(_lj_config(ar_file, tmp_path / "fit", epochs=3), progress=False)
    held = tmp_path / "held.extxyz"
    write(held, _ar_clusters(6, seed=7), format="extxyz")
    from ase.io import read

    frames = read(held, index=":")   # the labels as stored (extxyz rounds them)
    assert main(["eval", str(tmp_path / "fit"), str(held), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    # independent: the model through the ASE calculator, errors in NumPy
    from jaxpot.interop.ase import JaxpotCalculator

    calc = JaxpotCalculator(str(tmp_path / "fit"))
    de, df = [], []
    for a in frames:
        ref_e, ref_f = a.get_potential_energy(), a.get_forces()
        b = a.copy()
        b.calc = calc
        de.append((b.get_potential_energy() - ref_e) / len(a))
        df.append(b.get_forces() - ref_f)
    de, df = np.asarray(de), np.concatenate(df).ravel()
    np.testing.assert_allclose(got["energy_mae_eV_per_atom"], np.mean(np.abs(de)), rtol=1e-9)
    np.testing.assert_allclose(got["energy_rmse_eV_per_atom"], np.sqrt(np.mean(de ** 2)), rtol=1e-9)
    np.testing.assert_allclose(got["forces_mae_eV_per_A"], np.mean(np.abs(df)), rtol=1e-9)
    np.testing.assert_allclose(got["forces_rmse_eV_per_A"], np.sqrt(np.mean(df ** 2)), rtol=1e-9)
    assert got["structures"] == 6


def test_labels_are_read_from_calculator_results_or_named_keys(tmp_path):
    a = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    a.info["REF_energy"] = -1.5
    a.arrays["REF_forces"] = np.arange(9.0).reshape(3, 3)
    a.info["dft_e"] = -2.5
    write(tmp_path / "a.extxyz", [a], format="extxyz")
    s = tdata.read_labelled(tmp_path / "a.extxyz")[0]
    assert s.energy == -1.5 and np.array_equal(s.forces, np.arange(9.0).reshape(3, 3))
    s = tdata.read_labelled(tmp_path / "a.extxyz", energy_key="dft_e")[0]
    assert s.energy == -2.5
    b = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
    write(tmp_path / "b.extxyz", [b], format="extxyz")
    with pytest.raises(InputError, match="no energy label"):
        tdata.read_labelled(tmp_path / "b.extxyz")


def test_split_is_reproducible_and_disjoint():
    a = tdata.split_indices(50, 0.2, seed=3)
    b = tdata.split_indices(50, 0.2, seed=3)
    c = tdata.split_indices(50, 0.2, seed=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert len(a[1]) == 10 and not set(a[0]) & set(a[1]) and len(set(a[0]) | set(a[1])) == 50


def test_padded_batches_hold_each_periodic_pair_once_with_its_image_shift():
    """The host-built half list must contain every pair within the cutoff
    exactly once, with every periodic image (a cell narrower than 2 rc)."""
    rng = np.random.default_rng(0)
    cell = np.array([[5.0, 0, 0], [1.0, 5.5, 0], [0.5, 0.3, 6.0]])
    pos = rng.uniform(size=(7, 3)) @ cell
    s = tdata.Labelled(numbers=np.full(7, 18), positions=pos, cell=cell, pbc=True, energy=0.0,
                       forces=None, stress=None)
    rc = 6.5
    i, j, S = tdata.half_pairs(s, rc)
    got = sorted(round(float(np.linalg.norm(pos[b] - pos[a] + sh @ cell)), 9) for a, b, sh in zip(i, j, S))
    ref = []
    rng3 = range(-3, 4)
    for a in range(7):
        for b in range(7):
            for sh in [(x, y, z) for x in rng3 for y in rng3 for z in rng3]:
                d = np.linalg.norm(pos[b] - pos[a] + np.asarray(sh) @ cell)
                if 1e-9 < d < rc:
                    ref.append(round(float(d), 9))
    ref = sorted(ref)[::2]   # every pair appears twice (i->j and j->i) in the full enumeration
    assert got == ref


def test_unknown_training_keys_and_missing_files_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="unknown key"):
        train({"data": {"train": "x.extxyz"}, "model": {"kind": "mace"}, "fit": {"epochz": 3}},
              progress=False)
    with pytest.raises(InputError, match="not found"):
        train({"data": {"train": str(tmp_path / "missing.extxyz")}, "model": {"kind": "lj"},
               "output": {"directory": str(tmp_path / "o")}}, progress=False)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="forced host devices")
def test_data_parallel_training_over_four_devices_equals_one_device(ar_file, tmp_path):
    """The batch axis sharded over 4 forced host devices: same parameters to rounding."""
    script = f"""
import json, sys
from jaxpot.training.fit import train
from flax import serialization
cfg = {json.dumps(_lj_config(ar_file, tmp_path / 'X', epochs=3))}
for n in (1, 4):
    cfg["fit"]["devices"] = n
    cfg["output"]["directory"] = "{tmp_path}/dev%d" % n
    train(cfg, progress=False)
"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _params(tmp_path / "dev1"), _params(tmp_path / "dev4")
    np.testing.assert_allclose(a["lj_epsilon"], b["lj_epsilon"], rtol=1e-10)
    np.testing.assert_allclose(a["lj_sigma"], b["lj_sigma"], rtol=1e-10)


def test_fitting_qtip4pf_parameters_to_reference_forces_recovers_them(tmp_path):
    """Force-field fitting with the same machinery: frames of a water
    tetramer labelled by q-TIP4P/F; the fit starts from a charge 10% low,
    an angle constant 20% high and an LJ sigma 3% high, and must return
    to the published values (noise-free data, so only the optimiser limits
    the accuracy)."""
    from jaxpot.build import water_cluster
    from jaxpot.interop.ase import JaxpotCalculator
    from jaxpot.forcefield.water import QTIP4PF

    rng = np.random.default_rng(0)
    base = water_cluster(4, seed=1)
    calc = JaxpotCalculator({"kind": "qtip4pf"})
    frames = []
    for _ in range(16):
        a = base.copy()
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.calc = calc
        b = Atoms(a.numbers, a.positions)
        b.calc = SinglePointCalculator(b, energy=a.get_potential_energy(), forces=a.get_forces())
        frames.append(b)
    write(tmp_path / "w.extxyz", frames, format="extxyz")
    start = {"q_H": 0.9 * QTIP4PF["q_H"], "k_theta": 1.2 * QTIP4PF["k_theta"], "sigma": 1.03 * QTIP4PF["sigma"]}
    cfg = {"data": {"train": str(tmp_path / "w.extxyz"), "validation_fraction": 0.25},
           "model": {"kind": "qtip4pf", "parameters": start, "atomic_energies": "none"},
           "fit": {"epochs": 150, "batch_size": 4, "learning_rate": 0.02, "warmup_epochs": 0,
                   "ema_decay": 0.0, "energy_weight": 0.0, "forces_weight": 1.0, "patience": 1000},
           "output": {"directory": str(tmp_path / "fit")}}
    train(cfg, progress=False)
    p = _params(tmp_path / "fit")
    for name in ("q_H", "k_theta", "sigma"):
        assert abs(float(p[name]) / QTIP4PF[name] - 1) < 0.02, (name, float(p[name]), QTIP4PF[name])


def _small_water_file(tmp_path, n_frames=24, max_molecules=3):
    from ase.io import read

    from jaxpot.training.data import shipped_data

    frames = [a for a in read(shipped_data("water_clusters.extxyz"), index=":")
              if a.info["n_molecules"] <= max_molecules]
    pick = np.random.default_rng(0).permutation(len(frames))[:n_frames]
    path = tmp_path / "small.extxyz"
    write(path, [frames[k] for k in sorted(pick)], format="extxyz")
    return path


@pytest.mark.slow
def test_delta_learning_fits_baseline_and_network_together_and_a_frozen_baseline_stays_put(tmp_path):
    """Gaussian-charge baseline + tiny MACE on shipped GFN2-xTB frames: in one
    optimisation both parameter sets move; with ``trainable = false`` the
    baseline's parameters are exactly the initial ones; both fits lower the
    validation force error below its value after the first epoch."""
    from jaxpot.training.fit import FIT_DEFAULTS  # noqa: F401

    data = _small_water_file(tmp_path)
    base = {"kind": "gaussian_electrostatics", "charges": {"H": 0.4, "O": -0.8}, "widths": {"H": 0.7, "O": 0.9},
            "cutoff": 6.0}
    ml = {"kind": "mace", "cutoff": 4.0, "channels": 4, "l_max": 1, "correlation": 2, "layers": 1}
    for frozen in (False, True):
        b = dict(base, trainable=False) if frozen else dict(base)
        out = tmp_path / f"fit{int(frozen)}"
        cfg = {"data": {"train": str(data), "validation_fraction": 0.25},
               "model": {"kind": "sum", "terms": [b, ml]},
               "fit": {"epochs": 12, "batch_size": 6, "learning_rate": 1e-2, "warmup_epochs": 0, "ema_decay": 0.0},
               "output": {"directory": str(out)}}
        train(cfg, progress=False)
        p = _params(out)
        cfg_saved = io.read_toml(out / "model.toml")["potential"]
        assert [t["kind"] for t in cfg_saved["terms"]] == ["atomic_energies", "gaussian_electrostatics", "mace"]
        charges = np.asarray(p["1"]["charges"])
        if frozen:
            np.testing.assert_array_equal(charges, [0.4, -0.8])
        else:
            assert np.max(np.abs(charges - [0.4, -0.8])) > 1e-4
        m = io.read_thermo(out / "metrics.csv")
        assert m["val_forces_rmse_eV_per_A"].min() < 0.8 * m["val_forces_rmse_eV_per_A"][0]


def test_kernel_model_trains_and_evaluates_from_the_command_line(tmp_path, capsys):
    data = _small_water_file(tmp_path, n_frames=30, max_molecules=2)
    cfg = {"data": {"train": str(data), "validation_fraction": 0.2},
           "model": {"kind": "kernel", "descriptor": "coulomb_eigen", "kernel": "gaussian"},
           "output": {"directory": str(tmp_path / "k")}}
    io.write_toml(tmp_path / "k.toml", cfg)
    assert main(["train", str(tmp_path / "k.toml"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "k" / "summary.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "k"), str(data), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["structures"] == 30
    # train + validation = the whole file: the per-structure MAE is their weighted mean
    n_t, n_v = summary["train"]["structures"], summary["validation"]["structures"]
    expect = (n_t * summary["train"]["energy_mae_eV_per_atom"] + n_v * summary["validation"]["energy_mae_eV_per_atom"]) / 30
    np.testing.assert_allclose(got["energy_mae_eV_per_atom"], expect, rtol=1e-9)
    # a model directory that exists is never overwritten without --overwrite
    assert main(["train", str(tmp_path / "k.toml"), "--no-progress"]) == 2


def test_kernel_training_rejects_fit_keys_it_does_not_use_and_a_per_element_baseline(tmp_path):
    """A closed-form kernel fit takes no gradient-training [fit] keys (the
    error names each one) and no [model] atomic_energies other than 'none'
    (it fits its own per-element offset); batch_size (evaluation batches) and
    atomic_energies = 'none' are accepted."""
    data = _small_water_file(tmp_path, n_frames=12, max_molecules=2)

    def cfg(out, fit=None, **model):
        c = {"data": {"train": str(data), "validation_fraction": 0.25},
             "model": {"kind": "kernel", "descriptor": "coulomb_eigen", "kernel": "gaussian", **model},
             "output": {"directory": str(tmp_path / out)}}
        if fit is not None:
            c["fit"] = fit
        return c

    with pytest.raises(InputError, match=r"\[fit\] epochs, learning_rate: not used by kind = 'kernel'"):
        train(cfg("a", {"epochs": 10, "learning_rate": 0.01, "batch_size": 4}), progress=False)
    for e0 in ("fit", {"H": -13.6, "O": -2040.0}):
        with pytest.raises(InputError, match="atomic_energies .* does not apply to kind = 'kernel'"):
            train(cfg("b", atomic_energies=e0), progress=False)
    summary = train(cfg("c", {"batch_size": 4}, atomic_energies="none"), progress=False)
    assert summary["model"] == "kernel" and summary["epochs"] == 0
