"""Run outputs: thermo logs, trajectories, checkpoints, summaries, configs.

Files are described in ``docs/outputs.md``: ``thermo.csv`` (one row every ``every``
steps), ``trajectory.extxyz``, ``checkpoint.npz`` (exact restart),
``config.toml`` (the resolved configuration) and ``summary.json``.
Everything is written so that a run that dies midway keeps what it wrote:
rows and frames are appended and flushed, and the checkpoint, config and
summary are replaced atomically (:mod:`jaxpot.files`), so a ``kill -9`` at
any moment leaves the last complete checkpoint readable. A damaged
checkpoint is an InputError that names the file.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

import jax

from .errors import InputError
from .files import atomic_open

THERMO = "thermo.csv"
TRAJECTORY = "trajectory.extxyz"
CHECKPOINT = "checkpoint.npz"
CONFIG = "config.toml"
SUMMARY = "summary.json"

# TOML files: moved to the L0 module tomlio (model directories of potentials/saved.py need them)
from .tomlio import read_toml, write_toml  # noqa: E402,F401


def prepare_directory(directory, overwrite: bool = False) -> Path:
    """Create the run directory; refuse to reuse a non-empty one unless asked."""
    d = Path(directory)
    if d.exists() and any(d.iterdir()):
        if not overwrite:
            raise InputError(f"run directory {d} exists and is not empty (use --overwrite to replace it)")
        for name in (THERMO, TRAJECTORY, CHECKPOINT, CONFIG, SUMMARY):
            if (d / name).exists():
                (d / name).unlink()
    d.mkdir(parents=True, exist_ok=True)
    return d


class ThermoLog:
    """Appends rows to thermo.csv, flushing each block to disk."""

    def __init__(self, path, columns, append: bool = False):
        self.path = Path(path)
        self.columns = list(columns)
        if not append or not self.path.exists():
            with open(self.path, "w", newline="") as fh:
                csv.writer(fh).writerow(self.columns)

    def write(self, rows: dict) -> None:
        n = len(next(iter(rows.values())))
        with open(self.path, "a", newline="") as fh:
            w = csv.writer(fh)
            for k in range(n):
                w.writerow([_fmt(rows[c][k]) for c in self.columns])
            fh.flush()
            os.fsync(fh.fileno())


def _fmt(x):
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return repr(float(x))


def read_thermo(path) -> dict:
    """thermo.csv as a dict of numpy columns."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    data = np.asarray(body, dtype=np.float64).reshape(len(body), len(header))
    return {h: data[:, k] for k, h in enumerate(header)}


def truncate_thermo(path, last_step: int) -> None:
    """Drop rows after ``last_step`` (before appending on restart)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    keep = [rows[0]] + [r for r in rows[1:] if _row_step(r) <= last_step]
    with atomic_open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)


def _row_step(row) -> float:
    """The step of a thermo row; inf for a row cut short by a crash (dropped)."""
    try:
        return float(row[0])
    except (IndexError, ValueError):
        return float("inf")


def append_frames(path, atoms_list) -> None:
    from ase.io import write

    with open(path, "a") as fh:
        write(fh, atoms_list, format="extxyz")
        fh.flush()


def truncate_trajectory(path, last_step: int) -> None:
    """Keep frames whose ``step`` info is <= last_step."""
    from ase.io import read

    if not Path(path).exists():
        return
    frames = [a for a in read(path, index=":") if int(a.info.get("step", 0)) <= last_step]
    if not frames:
        Path(path).unlink()
        return
    from ase.io import write

    with atomic_open(path, "w") as fh:
        write(fh, frames, format="extxyz")


def save_checkpoint(path, carry, meta: dict) -> None:
    """Leaves of a pytree plus JSON metadata, written atomically."""
    leaves = jax.tree_util.tree_leaves(carry)
    arrays = {f"leaf{k:05d}": np.asarray(x) for k, x in enumerate(leaves)}
    with atomic_open(path, "wb") as fh:
        np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def load_checkpoint(path, required=("step",)):
    """(list of leaves, meta dict); InputError naming the file when it is
    missing, truncated or not a jaxpot checkpoint (its metadata lacks one of
    the ``required`` keys: ``step`` for MD, ``meta``/``history`` for training)."""
    if not Path(path).exists():
        raise InputError(f"no checkpoint in {Path(path).parent}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "__meta__" not in z.files:
                raise ValueError("no __meta__ entry")
            meta = json.loads(bytes(z["__meta__"]).decode())
            missing = [k for k in required if not isinstance(meta, dict) or k not in meta]
            if missing:
                raise ValueError(f"metadata without {', '.join(map(repr, missing))}")
            leaves = [z[k] for k in sorted(k for k in z.files if k.startswith("leaf"))]
    except Exception as err:   # zipfile, zlib, numpy and json raise many kinds
        reason = (str(err).splitlines() or [""])[0] or type(err).__name__
        raise InputError(f"{path} is not a readable jaxpot checkpoint (truncated or damaged: {reason}); "
                         f"start the run again without --restart") from None
    return leaves, meta


def restore_like(template, leaves):
    """A pytree with the structure of ``template`` and the saved leaves."""
    flat, treedef = jax.tree_util.tree_flatten(template)
    if len(flat) != len(leaves):
        raise InputError("checkpoint does not match this run's configuration")
    out = []
    for t, x in zip(flat, leaves):
        if np.shape(t) != np.shape(x):
            raise InputError("checkpoint does not match this run's configuration (array shapes differ)")
        out.append(jax.numpy.asarray(x, dtype=getattr(t, "dtype", None)) if hasattr(t, "dtype") else x)
    return jax.tree_util.tree_unflatten(treedef, out)


def write_json(path, data) -> None:
    """``data`` as indented JSON, written atomically."""
    with atomic_open(path, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
