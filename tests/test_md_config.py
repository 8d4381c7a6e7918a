"""The run configuration of `jaxpot md` (jaxpot.simulate.config): strict types,
path-integral keys refused outside PIMD, a written config.toml that restarts,
starting velocities from the input file, and remove_com reaching PIMD.
Fast: resolve_config and engines built for a molecule, no run."""
from pathlib import Path

import numpy as np
import pytest

from jaxpot import io
from jaxpot.errors import InputError
from jaxpot.simulate import resolve_config
from jaxpot.simulate.config import config_to_save, saved_config

DATA = Path(__file__).resolve().parents[1] / "jaxpot" / "data"


def config(ensemble="nvt", **md):
    return {"system": {"build": {"kind": "bulk", "name": "Ar", "crystalstructure": "fcc", "a": 5.26,
                                 "cubic": True}},
            "potential": {"kind": "lj", "epsilon": 0.0104, "sigma": 3.40, "cutoff": 8.5},
            "md": {"ensemble": ensemble, "steps": 100, **md}, "output": {"directory": "unused", "every": 10}}


@pytest.mark.parametrize("key,value,kind", [
    ("timestep", True, "a number"),
    ("steps", 200.7, "an integer"),
    ("beads", 2.5, "an integer"),
    ("timestep", "0.5", "a number"),
    ("temperature", "300", "a number"),
    ("remove_com", 1, "true or false"),
])
def test_wrong_types_are_rejected_naming_table_and_key(key, value, kind):
    with pytest.raises(InputError) as err:
        resolve_config(config(**{key: value}))
    msg = str(err.value)
    assert f"[md] {key} must be {kind}" in msg, msg


def test_integers_for_numbers_are_accepted_as_floats():
    md = resolve_config(config(temperature=80, timestep=5, tau=200))["md"]
    assert md["temperature"] == 80.0 and isinstance(md["temperature"], float)
    assert md["timestep"] == 5.0 and md["tau"] == 200.0


@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
@pytest.mark.parametrize("table,key,value", [
    ("md", "pile_lambda", 0.5), ("md", "splitting", "obabo"), ("md", "propagator", "cayley"),
    ("md", "centroid_thermostat", False), ("md", "devices", 1), ("md", "bead_batch", 2),
    ("md", "contraction", [1]), ("output", "all_beads", True),
])
def test_path_integral_keys_are_refused_outside_pimd(ensemble, table, key, value):
    cfg = config(ensemble)
    cfg[table][key] = value
    with pytest.raises(InputError) as err:
        resolve_config(cfg)
    msg = str(err.value)
    assert f"[{table}] {key}" in msg and "ensemble = 'pimd'" in msg, msg
    # and accepted with PIMD
    cfg = config("pimd", beads=2)
    cfg[table][key] = value
    resolve_config(cfg)


def test_unknown_key_names_table_and_allowed_keys():
    with pytest.raises(InputError, match=r"unknown key\(s\) in \[output\]: colour \(allowed: directory"):
        resolve_config({**config(), "output": {"colour": 1}})
    with pytest.raises(InputError, match=r"\[system\] needs exactly one"):
        resolve_config({**config(), "system": {}})


@pytest.mark.parametrize("ensemble,md", [("nvt", {}), ("nve", {"thermostat": "none"}),
                                          ("pimd", {"beads": 4, "contraction": [2]})])
def test_written_config_resolves_again_to_the_same(tmp_path, ensemble, md):
    resolved = resolve_config(config(ensemble, **md))
    io.write_toml(tmp_path / "config.toml", config_to_save(resolved))
    again = resolve_config(saved_config(io.read_toml(tmp_path / "config.toml")))
    assert again == resolved


def test_config_written_before_the_checks_still_restarts():
    """Earlier versions saved every [md] key, the PIMD ones at their defaults, also for nvt."""
    from jaxpot.simulate import MD_DEFAULTS
    old = config()
    old["md"].update({k: v for k, v in MD_DEFAULTS.items() if v is not None and k not in old["md"]})
    old["output"]["all_beads"] = False
    assert resolve_config(saved_config(old))["md"]["ensemble"] == "nvt"
    old["md"]["pile_lambda"] = 0.7     # a value that was never the default is still refused
    with pytest.raises(InputError, match="pile_lambda"):
        resolve_config(saved_config(old))


def test_velocities_in_the_structure_file_start_classical_runs(tmp_path):
    import jax
    from ase.build import bulk
    from ase.io import write

    from jaxpot.assembly import prepare
    from jaxpot.simulate import classical_engine, load_atoms, starting_velocities
    from jaxpot.system import from_ase

    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    v = np.random.default_rng(0).normal(size=(4, 3)) * 0.01    # A/fs
    from ase import units
    atoms.set_velocities(v / units.fs)
    write(tmp_path / "ar.extxyz", atoms)
    read_back = load_atoms({"file": str(tmp_path / "ar.extxyz")})
    np.testing.assert_allclose(starting_velocities(read_back), v, rtol=1e-6)   # extxyz: 8 decimals
    assert starting_velocities(bulk("Ar", "fcc", a=5.26, cubic=True)) is None

    vel = starting_velocities(read_back)
    cfg = resolve_config(config(remove_com=False))
    p = prepare(cfg["potential"], from_ase(read_back))
    engine = classical_engine(p.potential, p.params, p.system, p.context, cfg["md"], velocities=vel)[0]
    state = engine.init(jax.random.PRNGKey(0), p.neighbors)
    np.testing.assert_allclose(state.momenta, vel * np.asarray(p.system.masses)[:, None], rtol=1e-12)


@pytest.mark.parametrize("remove_com", [False, True])
def test_remove_com_reaches_pimd_and_keeps_the_centroid_at_rest(remove_com):
    import jax
    from ase.io import read

    from jaxpot.assembly import prepare
    from jaxpot.simulate import make_block, neighbor_skin, pimd_engine

    atoms = read(DATA / "water_clusters.extxyz", index=0)     # one H2O
    cfg = resolve_config({"system": {"file": "unused"}, "potential": {"kind": "qtip4pf"},
                          "md": {"ensemble": "pimd", "beads": 4, "timestep": 0.25, "steps": 10,
                                 "remove_com": remove_com},
                          "output": {"every": 5}})
    md = cfg["md"]
    p = prepare(cfg["potential"], atoms, skin=neighbor_skin(md))
    engine = pimd_engine(p.potential, p.params, p.system, p.context, md)[0]
    state = engine.init(jax.random.PRNGKey(3), p.neighbors)
    (state, _), _ = jax.jit(make_block(engine, p.neighbor_fns, p.system.cell, 5, 2))((state, p.neighbors))
    com = np.abs(np.asarray(state.momenta).mean(axis=0).sum(axis=0)).max()   # centroid total momentum
    scale = np.abs(np.asarray(state.momenta).mean(axis=0)).max()
    if remove_com:
        assert com < 1e-10 * scale, (com, scale)
    else:
        assert com > 1e-3 * scale, (com, scale)
