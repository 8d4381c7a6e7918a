"""Every notebook in notebooks/ executes top to bottom in quick mode.

The notebooks are the users' entry point to the physics (classical water,
nuclear quantum effects); each asserts its own sanity checks (finite-
difference forces, equipartition, ...) so a clean execution is itself a
test. ``JAXPOT_QUICK=1`` tells a notebook to use tiny step counts.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
KERNEL = "python3"


def _ensure_kernel():
    """The python3 kernel spec, installed for this interpreter only if missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(user=True, kernel_name=KERNEL)


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks in notebooks/")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_in_quick_mode(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    _ensure_kernel()
    # the kernel inherits the environment: quick mode, a non-interactive
    # matplotlib backend, and this interpreter's bin dir first on PATH
    monkeypatch.setenv("JAXPOT_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()   # cwd = resources' metadata path = tmp_path
    except CellExecutionError as err:
        # the message names the cell's source and the error it raised
        pytest.fail(f"{path.name}: a cell failed:\n{err}", pytrace=False)
    except (CellTimeoutError, DeadKernelError) as err:
        pytest.fail(f"{path.name}: {type(err).__name__}: {err}", pytrace=False)
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{path.name}: error outputs {errors}"
