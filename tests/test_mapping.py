"""Mapping over beads/structures: sequential (lax.map), chunked and grouped
maps give what vmap gives, in PIMD and in training predictions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpot.dynamics import pimd as pm
from jaxpot.mapping import auto_batch, map_leading
from jaxpot.system import InputError
from jaxpot.units import KB


def _pair_energy(x, idx):
    # a gather-based pair sum, the pattern that batching over beads slows on CPU
    d = x[idx[1]] - x[idx[0]]
    r2 = jnp.sum(d * d, axis=-1)
    return jnp.sum(jnp.exp(-r2)) + 0.5 * jnp.sum(x ** 2)


@pytest.mark.parametrize("batch,groups", [(1, 1), (3, 1), (8, 1), (1, 2), (2, 4), (0, 1)])
def test_map_leading_matches_vmap(batch, groups):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(8, 6, 3)))
    w = jnp.asarray(rng.normal(size=(8,)))
    idx = jnp.asarray(np.array([[0, 0, 1, 2, 3], [1, 2, 3, 4, 5]]))
    fn = jax.value_and_grad(lambda y, s: s * _pair_energy(y, idx))
    ref = jax.vmap(fn)(x, w)
    got = jax.jit(lambda a, b: map_leading(fn, a, b, batch=batch, groups=groups))(x, w)
    for r, g in zip(jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(got)):
        assert g.shape == r.shape
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-13, atol=1e-13)


def test_auto_batch_follows_backend():
    expect = 1 if jax.default_backend() == "cpu" else 8
    assert auto_batch(0, 8) == expect
    assert auto_batch(3, 8) == 3
    assert auto_batch(0, 8, gathers=False) == 8


def test_map_leading_rejects_uneven_groups_and_bad_batch():
    x = jnp.zeros((6, 2))
    with pytest.raises(InputError, match="4 equal groups"):
        map_leading(lambda y: y, x, groups=4)
    with pytest.raises(InputError, match="groups must be a positive integer"):
        map_leading(lambda y: y, x, groups=0)
    with pytest.raises(InputError, match="bead_batch"):
        pm.bead_energy_and_forces(lambda y: jnp.sum(y), bead_batch=-1)


def test_pimd_trajectory_independent_of_bead_batch():
    idx = jnp.asarray(np.array([[0, 0, 1, 2], [1, 2, 3, 4]]))
    P, N, kT = 6, 5, KB * 300.0
    masses = jnp.linspace(1.0, 16.0, N)
    x0 = jnp.asarray(np.random.default_rng(1).normal(size=(N, 3)))
    out = []
    for bb in (1, 4, P):
        init_fn, step_fn = pm.pimd(lambda x: _pair_energy(x, idx), 0.5, kT, P, tau=10.0,
                                   bead_batch=bb, sample_internal_modes=True)
        run = jax.jit(lambda s: jax.lax.fori_loop(0, 30, lambda i, s: step_fn(s), s))
        out.append(run(init_fn(jax.random.PRNGKey(0), x0, masses)))
    for s in out[1:]:
        np.testing.assert_allclose(np.asarray(s.positions), np.asarray(out[0].positions), rtol=0, atol=1e-11)
        np.testing.assert_allclose(np.asarray(s.energies), np.asarray(out[0].energies), rtol=1e-12)


def test_training_predictions_independent_of_structure_batch():
    from jaxpot.potentials import build_potential
    from jaxpot.training.data import Batcher, read_labelled
    from jaxpot.training.fit import _system_for, make_predict

    frames = read_labelled("jaxpot:water_clusters.extxyz")[:10]
    system = _system_for(frames[0])
    pot = build_potential({"kind": "behler_parrinello", "species": ["H", "O"], "cutoff": 4.0}, system)
    params = pot.init(jax.random.PRNGKey(0), system)
    batch = next(Batcher(frames, pot.cutoff, batch_size=5, max_shapes=1).batches())
    ref = jax.jit(make_predict(pot, False, structure_batch=5))(params, batch)
    got = jax.jit(make_predict(pot, False, structure_batch=1))(params, batch)
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(ref[0]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(ref[1]), rtol=1e-10, atol=1e-12)

