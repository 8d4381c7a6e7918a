"""The shipped GFN2-xTB water-cluster labels are the gradient of their energies."""
import numpy as np
import pytest
from ase.io import read

from jaxpot.training.data import shipped_data


@pytest.mark.parametrize("name", ["water_clusters.extxyz", "water_clusters_hot.extxyz"])
def test_isolated_clusters_have_no_net_force(name):
    # an isolated cluster's forces sum to zero (translation invariance); forces
    # adjusted by the MD run's centre-of-mass constraint do not (the first shipped set)
    frames = read(str(shipped_data(name)), index=":")
    net = np.asarray([np.abs(a.get_forces().sum(axis=0)).max() for a in frames])
    assert net.max() < 1e-6


def test_labels_match_a_fresh_gfn2_calculation():
    tblite = pytest.importorskip("tblite.ase")
    frames = read(str(shipped_data()), index=":")
    for k in (3, 400, 998):
        a = frames[k].copy()
        a.calc = tblite.TBLite(method="GFN2-xTB", verbosity=0)
        assert a.get_potential_energy() == pytest.approx(frames[k].get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(a.get_forces(), frames[k].get_forces(), rtol=1e-3, atol=1e-4)   # SCC convergence
