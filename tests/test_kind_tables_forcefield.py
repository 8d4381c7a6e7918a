"""The typed key tables of the force-field and electrostatics kinds (lj,
harmonic, qtip4pf, spcfw, gaussian_electrostatics): a wrong-typed key and an
unknown key are InputErrors that name the kind and the key, and each table's
defaults are the ones its kind uses."""
import re

import jax.numpy as jnp
import numpy as np
import pytest

from jaxpot.electrostatics import gaussian as ge
from jaxpot.forcefield import kinds, water
from jaxpot.potentials import build_potential
from jaxpot.potentials.registry import KindSpec
from jaxpot.system import InputError, System, default_masses, species_from_symbols

WATER = [[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.24, 0.927, 0.0]]


def _system(symbols, pos):
    z = species_from_symbols(symbols)
    return System(positions=jnp.asarray(pos, jnp.float64), species=jnp.asarray(z),
                  masses=jnp.asarray(default_masses(z)), cell=jnp.zeros((3, 3), jnp.float64), pbc=(False,) * 3)


ARGON = (["Ar", "Ar"], [[0.0, 0.0, 0.0], [3.8, 0.0, 0.0]])
H2O = (["O", "H", "H"], WATER)
GE_FIXED = {"kind": "gaussian_electrostatics", "charges": {"H": 0.4, "O": -0.8}}
GE_QEQ = {"kind": "gaussian_electrostatics", "charge_model": "qeq", "widths": {"H": 0.6, "O": 0.9},
          "electronegativity": {"H": 4.5, "O": 8.5}, "hardness": {"H": 9.0, "O": 11.0}}

# kind -> (spec, a valid config, its tiny system)
KINDS = {
    "lj": (kinds.LJ_KIND, {"kind": "lj", "epsilon": 0.0104, "sigma": 3.4}, ARGON),
    "harmonic": (kinds.HARMONIC_KIND, {"kind": "harmonic", "k": 1.5}, ARGON),
    "qtip4pf": (water.QTIP4PF_KIND, {"kind": "qtip4pf"}, H2O),
    "spcfw": (water.SPCFW_KIND, {"kind": "spcfw"}, H2O),
    "gaussian_electrostatics": (ge.GAUSSIAN_ELECTROSTATICS_KIND, GE_FIXED, H2O),
}

# (kind, key, wrong-typed value): true for a number, 2.5 for an integer, "0.5" for a number, ...
WRONG_TYPES = [
    ("lj", "cutoff", True), ("lj", "epsilon", "0.5"), ("lj", "shift", 1), ("lj", "combination_rule", 2),
    ("harmonic", "k", True), ("harmonic", "k", "0.5"),
    ("qtip4pf", "cutoff", "9.0"), ("qtip4pf", "lj_shift", 1), ("qtip4pf", "part", 3),
    ("spcfw", "accuracy", True), ("spcfw", "parameters", [1.0]),
    ("gaussian_electrostatics", "pme_order", 2.5), ("gaussian_electrostatics", "cutoff", "8.0"),
    ("gaussian_electrostatics", "neutralize", "yes"), ("gaussian_electrostatics", "cg_maxiter", True),
]


def test_each_kind_declares_a_spec_with_its_table():
    for kind, (spec, _, _) in KINDS.items():
        assert isinstance(spec, KindSpec) and spec.name == kind
        assert spec.table.name == f"[potential] kind = {kind!r}"
        assert all(k.doc for k in spec.table.keys)
    assert ge.GAUSSIAN_ELECTROSTATICS_KIND.padded_batches
    assert not any(spec.padded_batches for k, (spec, _, _) in KINDS.items() if k != "gaussian_electrostatics")


@pytest.mark.parametrize("kind", list(KINDS))
def test_valid_config_builds_through_the_registry(kind):
    spec, cfg, (sym, pos) = KINDS[kind]
    assert build_potential(cfg, _system(sym, pos)).name == kind


@pytest.mark.parametrize("kind, key, value", WRONG_TYPES, ids=[f"{k}-{key}-{v!r}" for k, key, v in WRONG_TYPES])
def test_wrong_typed_key_is_rejected_naming_kind_and_key(kind, key, value):
    spec, cfg, (sym, pos) = KINDS[kind]
    with pytest.raises(InputError, match=re.escape(f"kind = {kind!r} {key} must be")):
        build_potential({**cfg, key: value}, _system(sym, pos))


@pytest.mark.parametrize("kind", list(KINDS))
def test_unknown_key_is_rejected_naming_kind_key_and_allowed_keys(kind):
    spec, cfg, (sym, pos) = KINDS[kind]
    with pytest.raises(InputError) as err:
        build_potential({**cfg, "colour": 1}, _system(sym, pos))
    msg = str(err.value)
    assert f"kind = {kind!r}" in msg and "colour" in msg
    assert "allowed: " + ", ".join(spec.table.names) in msg


def test_lj_table_defaults_are_the_kinds():
    assert kinds.LJ_TABLE.defaults() == kinds.LJ_DEFAULTS
    pot = build_potential(KINDS["lj"][1], _system(*ARGON))
    d = kinds.LJ_TABLE.defaults()
    assert pot.config["shift"] == d["shift"] and pot.config["dispersion_correction"] == d["dispersion_correction"]
    assert d["cutoff"] is None and pot.config["cutoff"] == pytest.approx(2.5 * 3.4)   # auto: 2.5 sigma
    assert "switch_distance" not in pot.config and d["switch_distance"] is None
    elements = build_potential({"kind": "lj", "elements": {"Ar": {"epsilon": 0.0104, "sigma": 3.4}}},
                               _system(*ARGON))
    assert elements.config["combination_rule"] == d["combination_rule"]


def test_harmonic_table_has_k_required():
    assert kinds.HARMONIC_TABLE.defaults() == {} and kinds.HARMONIC_TABLE.names == ("k",)
    with pytest.raises(InputError, match="needs k"):
        build_potential({"kind": "harmonic"}, _system(*ARGON))


@pytest.mark.parametrize("kind", ["qtip4pf", "spcfw"])
def test_water_table_defaults_are_the_kinds(kind):
    table = KINDS[kind][0].table
    d = table.defaults()
    assert d.pop("parameters") is None and d == water._DEFAULTS
    pot = build_potential({"kind": kind}, _system(*H2O))
    for key, value in d.items():
        if key != "coulomb":
            assert pot.config[key] == value, key
    assert d["coulomb"] is None and pot.config["coulomb"] == "direct"      # auto, for a cluster
    assert "parameters" not in pot.config


def test_gaussian_electrostatics_table_defaults_are_the_kinds():
    table = ge.GAUSSIAN_ELECTROSTATICS_TABLE
    d = table.defaults()
    assert d == ge.GE_DEFAULTS
    assert set(ge._GE_KEYS) == {"kind", *table.names}
    fixed = build_potential(GE_FIXED, _system(*H2O)).config
    for key in ("charge_model", "yukawa_combination", "cutoff", "switch_width", "accuracy", "pme_order",
                "neutralize"):
        assert fixed[key] == d[key], key
    assert d["coulomb"] == "auto" and fixed["coulomb"] == "direct"     # auto, for a cluster
    assert fixed["widths"] == {"H": 0.0, "O": 0.0} and fixed["yukawa_z"] == {"H": 0.0, "O": 0.0}
    qeq = build_potential(GE_QEQ, _system(*H2O)).config
    for key in ("total_charge", "qeq_solver", "cg_tol", "cg_maxiter"):
        assert qeq[key] == d[key], key


def test_integers_are_accepted_for_numbers_and_give_the_same_potential():
    sys = _system(*ARGON)
    a = build_potential({"kind": "lj", "epsilon": 0.0104, "sigma": 3.4, "cutoff": 8}, sys)
    b = build_potential({"kind": "lj", "epsilon": 0.0104, "sigma": 3.4, "cutoff": 8.0}, sys)
    assert a.config == b.config and isinstance(a.config["cutoff"], float)
    assert np.isclose(build_potential({"kind": "harmonic", "k": 2}, sys).config["k"], 2.0)
