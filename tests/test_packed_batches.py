"""Packed training batches (many structures in one graph) against padded ones."""
import jax
import numpy as np
import pytest

from jaxpot.system import InputError
from jaxpot.training.data import Batcher, Labelled, PackedBatcher, read_labelled

MACE = {"kind": "mace", "species": ["H", "O"], "channels": 4, "l_max": 1, "layers": 2, "correlation": 2,
        "cutoff": 3.5, "radial_hidden": 8, "readout_hidden": 4, "avg_num_neighbors": 6.0}


def _per_structure_forces(batch, f, members):
    """Real-atom force blocks of each structure (padded (B, Np, 3) or packed (Na, 3))."""
    f = np.asarray(f)
    if f.ndim == 3:
        return [f[k, :int(batch.n_atoms[k])] for k in range(len(members))]
    seg = np.asarray(batch.atom_structure)
    return [f[seg == k] for k in range(len(members))]


def _predict_all(pot, params, batcher, use_stress):
    from jaxpot.training.fit import make_predict

    predict = jax.jit(make_predict(pot, use_stress))
    out = {}
    for members, batch in zip(batcher.plan(None), batcher.batches(None)):
        e, f, s = predict(params, batch)
        for k, (idx, fk) in enumerate(zip(members, _per_structure_forces(batch, f, members))):
            out[idx] = (float(e[k]), fk, None if s is None else np.asarray(s[k]))
    return out


def _periodic_ar(n_frames=6, seed=0):
    """Small rattled Ar cells (some shorter than twice the cutoff: images matter)."""
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_frames):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((1, 1, 1 + k % 2))
        atoms.set_cell(atoms.cell * (1.0 + 0.03 * rng.standard_normal((3, 3))), scale_atoms=True)
        atoms.positions += 0.2 * rng.standard_normal(atoms.positions.shape)
        n = len(atoms)
        out.append(Labelled(numbers=atoms.numbers, positions=atoms.positions, cell=np.asarray(atoms.cell),
                            pbc=True, energy=0.0, forces=np.zeros((n, 3)), stress=np.zeros((3, 3))))
    return out


def test_packed_and_padded_batches_give_the_same_energies_and_forces():
    from jaxpot.potentials import build_potential

    frames = read_labelled("jaxpot:water_clusters.extxyz")[::60]          # 3 .. 36 atoms
    pot = build_potential({"kind": "sum", "terms": [
        {"kind": "atomic_energies", "energies": {"H": -10.0, "O": -400.0}}, MACE]}, None)
    params = pot.init(jax.random.PRNGKey(3), None)
    packed = PackedBatcher(frames, pot.cutoff, batch_size=4)
    assert packed.plan(None)[0] != list(range(len(frames)))[:1]          # several structures per graph
    ref = _predict_all(pot, params, Batcher(frames, pot.cutoff, batch_size=4), False)
    got = _predict_all(pot, params, packed, False)
    assert sorted(got) == list(range(len(frames)))
    for k in ref:
        assert got[k][0] == pytest.approx(ref[k][0], rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(got[k][1], ref[k][1], rtol=1e-9, atol=1e-10)


def test_packed_periodic_cells_give_each_structure_its_own_stress():
    from jaxpot.potentials import build_potential

    frames = _periodic_ar()
    pot = build_potential({**MACE, "species": ["Ar"], "cutoff": 4.0}, None)
    params = pot.init(jax.random.PRNGKey(1), None)
    ref = _predict_all(pot, params, Batcher(frames, pot.cutoff, batch_size=3), True)
    got = _predict_all(pot, params, PackedBatcher(frames, pot.cutoff, batch_size=3), True)
    for k in ref:
        assert got[k][0] == pytest.approx(ref[k][0], rel=1e-12)
        np.testing.assert_allclose(got[k][1], ref[k][1], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(got[k][2], ref[k][2], rtol=1e-9, atol=1e-10)
        assert np.abs(ref[k][2]).max() > 1e-6        # a non-trivial stress was compared


def test_packing_plan_covers_every_structure_once_within_the_budgets():
    frames = read_labelled("jaxpot:water_clusters.extxyz")[:200]
    b = PackedBatcher(frames, 4.5, batch_size=8, seed=5)
    for epoch in (0, 1):
        plan = b.plan(epoch)
        assert sorted(k for m in plan for k in m) == list(range(len(frames)))
        for m in plan:
            assert 1 <= len(m) <= 8
            assert sum(frames[k].n_atoms for k in m) <= b.atom_slots
            assert sum(len(b._pairs[id(frames[k])][0]) for k in m) <= b.pair_slots
    assert b.plan(1) == PackedBatcher(frames, 4.5, batch_size=8, seed=5).plan(1)     # reproducible
    assert b.plan(0) != b.plan(1)                                                     # reshuffled
    # the slot budget is slack x batch_size x the mean size: batches are mostly full
    assert np.mean([len(m) for m in b.plan(0)]) > 6.0
    # a structure larger than a shared budget grows it instead of failing
    big = PackedBatcher(frames[-1:], 4.5, batch_size=8, budget=(4, 4))
    assert big.atom_slots >= frames[-1].n_atoms


def test_packed_batching_is_refused_with_a_reason_where_it_cannot_apply():
    from jaxpot.potentials import build_potential
    from jaxpot.training.fit import batching_mode

    from ase import Atoms

    from jaxpot.system import from_ase

    ar = from_ase(Atoms("Ar2", positions=[[0, 0, 0], [3.8, 0, 0]]))
    lj = build_potential({"kind": "lj", "epsilon": 0.01, "sigma": 3.4, "cutoff": 8.0}, ar)
    with pytest.raises(InputError, match="per-atom energies"):
        batching_mode(lj, "packed", True)
    assert batching_mode(lj, "auto", True) == "padded"
    mace = build_potential(MACE, None)
    assert batching_mode(mace, "auto", True) == "packed"
    assert batching_mode(mace, "auto", True, devices=2) == "padded"
    assert batching_mode(mace, "padded", True) == "padded"


def test_saved_model_directories_keep_terms_and_per_atom_energies(tmp_path):
    from jaxpot.potentials import build_potential
    from jaxpot.potentials.saved import save_model

    cfg = {"kind": "sum", "terms": [{"kind": "atomic_energies", "energies": {"H": -10.0, "O": -400.0}}, MACE]}
    pot = build_potential(cfg, None)
    params = pot.init(jax.random.PRNGKey(0), None)
    save_model(tmp_path / "m", pot.config, params)
    saved = build_potential({"kind": "model", "path": str(tmp_path / "m")}, None)
    assert len(saved.terms) == 2 and saved.atom_energies is not None     # contraction and packing apply
    frames = read_labelled("jaxpot:water_clusters.extxyz")[::200]
    ref = _predict_all(pot, params, PackedBatcher(frames, pot.cutoff, batch_size=4), False)
    got = _predict_all(saved, saved.init(None, None), PackedBatcher(frames, pot.cutoff, batch_size=4), False)
    for k in ref:
        assert got[k][0] == pytest.approx(ref[k][0], rel=1e-12)
