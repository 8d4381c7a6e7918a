# SHIM (issue 18 consolidation): old path, re-exports from jaxpot.partition
"""Old path of the cluster-pair list; the code lives in
:mod:`jaxpot.partition.clusters`, :mod:`jaxpot.partition.cluster_sum` and
:mod:`jaxpot.partition.layout`."""
from .partition.cluster_sum import _is_primal, cluster_pair_sum, computed_once, gather_slots  # noqa: F401
from .partition.clusters import (ClusterLayoutError, ClusterListFns, ClusterNeighborList,  # noqa: F401
                                 cluster_layout_problem, cluster_list)
from .partition.layout import CLUSTER_MIN_ATOMS, NEIGHBOR_LAYOUTS, neighbor_fns_for  # noqa: F401
from .partition.pairs import NeighborListOverflow, _compact, _round_up  # noqa: F401
