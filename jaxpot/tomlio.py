"""Reading and writing TOML files (configurations, model directories'
``model.toml``): the one place that knows the TOML libraries.

TOML has no null: :func:`write_toml` drops keys whose value is None and
writes numpy scalars as Python numbers. No units of its own.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_open


def read_toml(path) -> dict:
    """Parse a TOML file; InputError with the file name on failure."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"configuration file not found: {path}")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"cannot parse {path}: {err}") from None


def write_toml(path, data: dict) -> None:
    import tomli_w

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if v is not None}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, (np.floating, np.integer)):
            return x.item()
        return x

    with atomic_open(path, "wb") as fh:   # all of the file or none of it
        tomli_w.dump(clean(data), fh)
