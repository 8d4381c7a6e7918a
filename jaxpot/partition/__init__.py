"""Neighbor lists (layer L1): the pair list, the cluster-pair list and the
pair sum that reads it, excluded pairs, the choice of layout, and the
contract both lists satisfy.

  contract.py     NeighborFns / NeighborListLike protocols (allocate, update, overflow)
  pairs.py        NeighborList, NeighborListFns, neighbor_list: half pair lists with image shifts
  clusters.py     ClusterNeighborList, ClusterListFns, cluster_list: cluster-pair lists
  cluster_sum.py  cluster_pair_sum: the pair sum over cluster-pair tiles
  exclusions.py   exclusion_lookup: jit-able excluded-pair tests
  layout.py       neighbor_fns_for: which list a potential gets

Imports only the core layer (jaxpot.space, jaxpot.system). Lengths in A.
"""
from .cluster_sum import cluster_pair_sum, computed_once, gather_slots
from .clusters import ClusterLayoutError, ClusterListFns, ClusterNeighborList, cluster_layout_problem, cluster_list
from .contract import CLUSTERS, LAYOUTS, PAIRS, NeighborFns, NeighborListLike
from .exclusions import exclusion_bitmask, exclusion_lookup, excluded_pairs_lookup
from .layout import CLUSTER_MIN_ATOMS, NEIGHBOR_LAYOUTS, NeighborRequest, neighbor_fns_for
from .pairs import (NeighborList, NeighborListFns, NeighborListOverflow, cutoff_scheme_hint, image_shifts,
                    neighbor_list)

__all__ = [
    "CLUSTERS", "CLUSTER_MIN_ATOMS", "ClusterLayoutError", "ClusterListFns", "ClusterNeighborList", "LAYOUTS",
    "NEIGHBOR_LAYOUTS", "NeighborFns", "NeighborList", "NeighborListFns", "NeighborListLike",
    "NeighborListOverflow", "NeighborRequest", "PAIRS", "cluster_layout_problem", "cluster_list",
    "cluster_pair_sum", "computed_once", "cutoff_scheme_hint", "exclusion_bitmask", "exclusion_lookup",
    "excluded_pairs_lookup", "gather_slots", "image_shifts", "neighbor_fns_for", "neighbor_list",
]
