"""The errors jaxpot raises on purpose.

Each carries a one-line message that names the problem (the table and key,
the file, the element, the quantity and its unit); the command line prints
that line and exits non-zero instead of showing a traceback.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message names the problem in one line."""


class SimulationError(RuntimeError):
    """A run that had to stop (non-finite energies, ...); outputs are kept."""


class Interrupted(SimulationError):
    """A run stopped by SIGINT or SIGTERM; outputs and the last checkpoint are kept."""
