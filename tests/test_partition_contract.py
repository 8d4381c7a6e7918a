"""The declared neighbor-list contract (jaxpot.partition.contract): both
concrete neighbor-function objects, the pair list and the cluster-pair
list, satisfy it and each of its methods runs on a tiny system; and the
exclusion lookups copied into jaxpot.partition.exclusions agree with the
force field's (a guard until the issue-18 consolidation deletes those)."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk

from jaxpot.partition import (ClusterListFns, ClusterNeighborList, NeighborFns, NeighborList, NeighborListFns,
                              NeighborListLike, cluster_list, neighbor_list)
from jaxpot.partition import exclusions as px
from jaxpot.errors import InputError

RC, SKIN = 3.5, 0.5


def argon():
    """256 atoms of shaken fcc argon in a 21.04 A cube (wide enough for clusters)."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(4)
    rng = np.random.default_rng(0)
    pos = atoms.positions + rng.normal(scale=0.1, size=atoms.positions.shape)
    return jnp.asarray(pos), jnp.asarray(np.asarray(atoms.cell))


def both_fns(n):
    cell = np.asarray(argon()[1])
    excluded = np.array([(2 * k, 2 * k + 1) for k in range(0, n // 2, 3)])
    return [(neighbor_list(RC, cell, True, skin=SKIN), NeighborListFns, NeighborList, "pairs"),
            (cluster_list(RC, cell, n, skin=SKIN, excluded=excluded), ClusterListFns, ClusterNeighborList,
             "clusters")]


@pytest.mark.parametrize("which", [0, 1], ids=["pairs", "clusters"])
def test_neighbor_fns_satisfy_the_contract(which):
    pos, cell = argon()
    fns, fns_cls, list_cls, layout = both_fns(len(pos))[which]
    assert isinstance(fns, fns_cls) and isinstance(fns, NeighborFns)
    assert fns.layout == list_cls.layout == layout
    assert fns._build_jit is fns.build_jit          # the old private name stays an alias

    nbr = fns.allocate(pos, cell)
    assert isinstance(nbr, list_cls) and isinstance(nbr, NeighborListLike)
    assert nbr.layout == layout and not nbr.did_overflow() and int(nbr.n_builds) == 1
    assert nbr.capacity >= int(nbr.n_pairs) and nbr.row_capacity >= int(nbr.max_row)

    # update: no rebuild within skin / 2, a rebuild beyond it
    still = pos.at[0, 0].add(0.2 * SKIN)
    moved = pos.at[0, 0].add(0.6 * SKIN)
    assert not bool(fns.needs_rebuild(still, nbr)) and bool(fns.needs_rebuild(moved, nbr))
    update = jax.jit(fns.update)                      # as the MD loop and the ASE calculator run it
    assert int(update(still, nbr, cell).n_builds) == 1
    rebuilt = update(moved, nbr, cell)
    assert int(rebuilt.n_builds) == 2 and not rebuilt.did_overflow()
    assert np.array_equal(np.asarray(rebuilt.reference), np.asarray(moved))

    # a build at the list's own capacities reproduces it (the checkpoint-restart path)
    again = fns.build_jit(pos, cell, nbr.capacity, nbr.row_capacity, nbr.cell_capacity)
    assert int(again.n_pairs) == int(nbr.n_pairs) and again.capacity == nbr.capacity

    # too small a list overflows, the flag stays set through later builds, and reallocate grows it
    small = fns.build_jit(pos, cell, 8, nbr.row_capacity, nbr.cell_capacity)
    assert small.did_overflow()
    after = jax.jit(fns.build, static_argnums=(2, 3, 4))(pos, cell, nbr.capacity, nbr.row_capacity,
                                                         nbr.cell_capacity, prev=small)
    assert after.did_overflow() and int(after.n_builds) == 2 and int(after.n_pairs) == int(nbr.n_pairs)
    grown = fns.reallocate(small, pos, cell)
    assert not grown.did_overflow() and grown.capacity >= int(grown.n_pairs)
    cleared = small.replace(overflow=jnp.zeros_like(small.overflow))
    assert isinstance(cleared, list_cls) and not cleared.did_overflow()


def test_the_partition_layer_imports_no_potential():
    code = ("import sys, jaxpot.partition; "
            "bad = sorted(m for m in sys.modules if m.startswith('jaxpot.') and "
            "not m.startswith(('jaxpot.partition', 'jaxpot.space', 'jaxpot.system', 'jaxpot.errors'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("case", ["near", "far", "empty"])
def test_exclusion_lookup_matches_the_excluded_set_by_brute_force(case):
    """The one exclusion lookup (bit mask within 256 indices, sorted keys beyond)
    answers (i, j) -> excluded exactly for the given pairs, both orders, and
    never for the padding index n."""
    n = 300
    rng = np.random.default_rng(1)
    i = rng.integers(0, n - 3, 60)
    if case == "near":      # within the bit-mask window (<= 256 indices apart)
        excluded = np.stack([i, i + rng.integers(1, 3, 60)], axis=1)
        excluded = np.concatenate([excluded, [[5, 5 + 256], [40, 39]]])
    elif case == "far":     # beyond it: sorted pair keys
        excluded = np.concatenate([np.stack([i, i + 1], axis=1), [[2, 2 + 257], [n - 1, 0]]])
    else:
        excluded = np.zeros((0, 2), np.int64)
    mask = px.exclusion_bitmask(n, excluded)
    assert (mask is None) == (case != "near")
    want = np.zeros((n + 1, n + 1), bool)
    for p, q in excluded.tolist():
        want[p, q] = want[q, p] = True
    a, b = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")   # index n: padding
    if mask is not None:
        got = np.asarray(px.excluded_pairs_lookup(mask, jnp.asarray(a[:n, :n]), jnp.asarray(b[:n, :n])))
        assert np.array_equal(got, want[:n, :n])
    got = np.asarray(px.exclusion_lookup(n, excluded)(jnp.asarray(a), jnp.asarray(b)))
    assert np.array_equal(got, want)
    with pytest.raises(InputError, match="with itself"):
        px.exclusion_bitmask(n, [[3, 3]])
