import os
from pathlib import Path

import pytest

import jaxpot  # noqa: F401  (enables float64)

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def shared_data():
    """Path to tests/data: the water boxes the tests read (they ship with the
    repository, so nothing is skipped on a fresh clone; see tests/data/README.md)."""
    return DATA


def assert_restart_bit_identical(tmp_path, make_config, steps: int):
    """Run ``steps`` in one go and, separately, ``steps // 2``, then extend the
    second run's config to ``steps`` and continue it with ``jaxpot md
    --restart``: every thermo column must be identical to the last bit."""
    import numpy as np

    from jaxpot import io
    from jaxpot.cli import main
    from jaxpot.simulate import run_md

    run_md(make_config(tmp_path / "full", steps=steps), progress=False)
    run_md(make_config(tmp_path / "part", steps=steps // 2), progress=False)
    cfg = io.read_toml(tmp_path / "part" / "config.toml")
    cfg["md"]["steps"] = steps
    io.write_toml(tmp_path / "part" / "config.toml", cfg)
    assert main(["md", "--restart", str(tmp_path / "part"), "--no-progress"]) == 0
    a = io.read_thermo(tmp_path / "full" / "thermo.csv")
    b = io.read_thermo(tmp_path / "part" / "thermo.csv")
    assert len(a["step"]) == len(b["step"])
    for col in a:
        np.testing.assert_array_equal(a[col], b[col], err_msg=col)
