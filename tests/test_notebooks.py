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


def _execute(path, workdir):
    """Run one notebook in its own kernel; returns None or the failure message."""
    import nbformat
    import nbclient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()   # cwd = resources' metadata path = workdir
    except CellExecutionError as err:
        # the message names the cell's source and the error it raised
        return f"{path.name}: a cell failed:\n{err}"
    except (CellTimeoutError, DeadKernelError) as err:
        return f"{path.name}: {type(err).__name__}: {err}"
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    return f"{path.name}: error outputs {errors}" if errors else None


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook executed, two kernels at a time: their run time is
    mostly single-threaded XLA compilation, so two overlap well on CI's two
    cores (~40% less wall time than one after another)."""
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    from concurrent.futures import ThreadPoolExecutor

    _ensure_kernel()
    # the kernels inherit the environment: quick mode, a non-interactive
    # matplotlib backend, and this interpreter's bin dir first on PATH
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXPOT_QUICK", "1")
        mp.setenv("MPLBACKEND", "Agg")
        mp.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {p: pool.submit(_execute, p, tmp_path_factory.mktemp(p.stem)) for p in NOTEBOOKS}
            return {p: f.result() for p, f in futures.items()}


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks in notebooks/")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_in_quick_mode(path, executed):
    failure = executed[path]
    if failure:
        pytest.fail(failure, pytrace=False)
