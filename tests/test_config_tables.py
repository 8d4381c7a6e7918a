"""The key tables of docs/config.md come from the declarations the checks
use (docs/gen_tables.py), and the potential kinds check their keys strictly
against their declared tables (jaxpot.config.Table via registry.check_keys)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jaxpot.errors import InputError
from jaxpot.potentials import build_potential, registry

ROOT = Path(__file__).resolve().parents[1]
FIX = "python docs/gen_tables.py"


def _gen_tables():
    spec = importlib.util.spec_from_file_location("gen_tables", ROOT / "docs" / "gen_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _gen_tables()


def test_docs_config_md_is_in_sync_with_the_declarations():
    text = (ROOT / "docs" / "config.md").read_text()
    assert gen.render(text) == text, f"docs/config.md is out of date: run `{FIX}`"


def test_every_generated_table_appears_in_docs_config_md():
    shown = set(gen.shown_labels((ROOT / "docs" / "config.md").read_text()))
    labels = gen.labelled_tables()
    missing = sorted({t.name for label, t in labels.items()
                      if not any(other in shown for other, u in labels.items() if u is t)})
    assert not missing, (f"docs/config.md has no generated block for {', '.join(missing)}: add "
                         f"'<!-- BEGIN GENERATED TABLE: <name> -->' / '<!-- END GENERATED TABLE -->' lines "
                         f"where each belongs and run `{FIX}`")


def test_generator_finds_the_training_tables_and_the_declared_kinds():
    labels = gen.labelled_tables()
    for name in ("[data]", "[model]", "[fit]"):
        assert name in labels
    assert "[output] (jaxpot.training.config)" in labels
    for kind in ("behler_parrinello", "nequip", "mace", "kernel", "atomic_energies", "model", "openmm"):
        assert registry.spec(kind).table is labels[f"[potential] kind = '{kind}'"]


def test_a_block_with_an_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="no table is labelled"):
        gen.render("<!-- BEGIN GENERATED TABLE: [nothing] -->\n<!-- END GENERATED TABLE -->\n")


def test_the_defaults_dicts_are_the_declared_defaults():
    from jaxpot.interop.openmm import kind as openmm_kind
    from jaxpot.kernels import potential as kernel
    from jaxpot.ml import behler_parrinello as bp
    from jaxpot.ml import equivariant

    assert bp.DEFAULTS == bp.TABLE.defaults() and "species" not in bp.DEFAULTS
    assert equivariant.MACE_DEFAULTS == equivariant.MACE_TABLE.defaults()
    assert equivariant.NEQUIP_DEFAULTS == equivariant.NEQUIP_TABLE.defaults()
    assert {**kernel.DEFAULTS, **kernel.FIT_DEFAULTS} == kernel.TABLE.defaults()
    assert set(openmm_kind.CONFIG_KEYS) == set(openmm_kind.TABLE.names)


BP = {"kind": "behler_parrinello", "species": ["H", "O"], "radial": 3, "angular": 2, "hidden": [4]}
MACE = {"kind": "mace", "species": ["H", "O"], "channels": 4, "l_max": 1}


@pytest.mark.parametrize("config,key", [
    (dict(BP, cutoff=True), "cutoff"),                          # true is not a number
    (dict(BP, seed=2.5), "seed"),                               # 2.5 is not an integer
    (dict(BP, energy_scale="0.5"), "energy_scale"),             # "0.5" is not a number
    (dict(BP, radial=8.0), "radial"),                           # a float count
    (dict(MACE, correlation=2.5), "correlation"),
    (dict(MACE, cutoff="5"), "cutoff"),
    ({"kind": "nequip", "species": ["H"], "layers": True}, "layers"),
    ({"kind": "atomic_energies", "energies": [1.0, 2.0]}, "energies"),
    ({"kind": "model", "path": 3}, "path"),
    ({"kind": "kernel", "regularization": "1e-8"}, "regularization"),
    ({"kind": "openmm", "system": "s.xml", "check_masses": 1}, "check_masses"),
])
def test_wrong_types_are_refused_naming_the_kind_and_the_key(config, key):
    with pytest.raises(InputError) as err:
        build_potential(config, None)
    message = str(err.value)
    assert f"potential kind '{config['kind']}'" in message and key in message and "must be" in message


@pytest.mark.parametrize("kind,config", [
    ("behler_parrinello", BP), ("mace", MACE), ("kernel", {"kind": "kernel"}),
    ("model", {"kind": "model"}), ("atomic_energies", {"kind": "atomic_energies"}),
])
def test_unknown_keys_are_refused_naming_the_kind_the_key_and_the_allowed_keys(kind, config):
    with pytest.raises(InputError) as err:
        build_potential(dict(config, colour=1), None)
    message = str(err.value)
    assert f"unknown key(s) for potential kind '{kind}': colour" in message
    assert "allowed: " + ", ".join(registry.spec(kind).table.names) in message


def test_kernel_fit_keys_are_refused_by_a_fitted_potential():
    with pytest.raises(InputError, match="baseline applies to fitting only"):
        build_potential({"kind": "kernel", "baseline": {"kind": "lj"}}, None)
