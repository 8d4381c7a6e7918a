"""Neighbor lists: completeness against ASE, multiple images in small cells,
overflow detection, rebuild criterion."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_neighbor_list

from jaxpot.partition import neighbor_list
from jaxpot.space import pair_vectors


def _distances(atoms, rc, images="all"):
    fns = neighbor_list(rc, atoms.cell.array, True, skin=0.0, images=images)
    pos = jnp.asarray(atoms.positions)
    nbr = fns.allocate(pos, jnp.asarray(atoms.cell.array))
    d = pair_vectors(pos, jnp.asarray(atoms.cell.array), nbr.idx, nbr.shifts)
    d = np.linalg.norm(np.asarray(d)[np.asarray(nbr.mask)], axis=1)
    return np.sort(d[d < rc]), nbr


@pytest.mark.parametrize("repeat,rc,cubic", [(3, 5.0, True), (3, 3.0, False), (2, 7.0, False), (1, 6.0, True)])
def test_half_list_matches_ase_all_images_orthorhombic_and_triclinic(repeat, rc, cubic):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=cubic).repeat(repeat)
    atoms.positions += np.random.default_rng(0).normal(0, 0.1, atoms.positions.shape)
    d, nbr = _distances(atoms, rc)
    i, j, S = ase_neighbor_list("ijS", atoms, rc)
    ref = np.linalg.norm(atoms.positions[j] - atoms.positions[i] + S @ atoms.cell.array, axis=1)
    ref = np.sort(ref)[::2]  # ASE gives each pair twice
    assert len(d) == len(ref)
    np.testing.assert_allclose(d, ref, atol=1e-10)
    assert not nbr.did_overflow()


def test_minimum_image_convention_counts_each_pair_once():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)   # 4 atoms, 5.26 A box, cutoff beyond half the box
    d_min, _ = _distances(atoms, 4.0, images="minimum")
    d_all, _ = _distances(atoms, 4.0, images="all")
    assert len(d_min) == 6          # each of the 6 pairs once, at its minimum image (3.72 A)
    np.testing.assert_allclose(d_min, 5.26 / np.sqrt(2), rtol=1e-12)
    assert len(d_all) == 4 * 12 / 2  # fcc: 12 nearest neighbours per atom, all through images


def test_overflow_is_detected_on_device_and_reallocation_recovers():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)
    cell = jnp.asarray(atoms.cell.array)
    fns = neighbor_list(6.0, atoms.cell.array, True, skin=0.5)
    pos = jnp.asarray(atoms.positions)
    nbr = fns.allocate(pos, cell)
    # clump the atoms into one corner: many more pairs than capacity
    squeezed = pos * 0.5
    nbr2 = jax.jit(fns.update)(squeezed, nbr, cell)
    assert bool(nbr2.overflow)
    bigger = fns.allocate(squeezed, cell)
    assert not bigger.did_overflow() and int(bigger.n_pairs) > nbr.capacity


def test_update_rebuilds_only_after_half_skin_displacement():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    cell = jnp.asarray(atoms.cell.array)
    fns = neighbor_list(5.0, atoms.cell.array, True, skin=1.0)
    pos = jnp.asarray(atoms.positions)
    nbr = fns.allocate(pos, cell)
    small = pos.at[0, 0].add(0.4)
    assert int(fns.update(small, nbr, cell).n_builds) == 1
    big = pos.at[0, 0].add(0.6)
    assert int(fns.update(big, nbr, cell).n_builds) == 2


def test_cluster_without_pbc_lists_all_close_pairs():
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 8, (40, 3))
    fns = neighbor_list(3.0, np.zeros((3, 3)), False, skin=0.0)
    nbr = fns.allocate(jnp.asarray(pos), jnp.zeros((3, 3)))
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    n_ref = int(np.sum(np.triu(d < 3.0, 1)))
    assert int(nbr.n_pairs) == n_ref


def test_cell_list_finds_exactly_the_pairs_of_the_all_pairs_search():
    rng = np.random.default_rng(3)
    L = 30.0
    pos = rng.uniform(-L, 2 * L, (1500, 3))       # unwrapped: atoms outside the cell too
    cell = np.diag([L, L * 1.1, L * 0.9])
    out = []
    for use in (True, False):
        fns = neighbor_list(6.0, cell, True, skin=1.0, cell_list=use)
        assert (fns._cells != (0, 0, 0)) == use
        nbr = fns.allocate(jnp.asarray(pos), jnp.asarray(cell))
        assert not nbr.did_overflow()
        m = np.asarray(nbr.mask)
        i, j = np.asarray(nbr.idx)[:, m]
        s = np.asarray(nbr.shifts)[m]
        out.append(sorted(zip(i.tolist(), j.tolist(), map(tuple, s.tolist()))))
    assert out[0] == out[1] and len(out[0]) > 10000


def test_cell_list_overflow_when_atoms_crowd_into_one_cell():
    rng = np.random.default_rng(4)
    L = 30.0
    pos = jnp.asarray(rng.uniform(0, L, (800, 3)))
    cell = jnp.asarray(np.eye(3) * L)
    fns = neighbor_list(6.0, np.eye(3) * L, True, skin=1.0, cell_list=True)
    nbr = fns.allocate(pos, cell)
    crowded = pos.at[:200].set(pos[:200] * 0.2)   # 200 atoms into the first cells
    assert bool(jax.jit(fns.update)(crowded, nbr, cell).overflow)
