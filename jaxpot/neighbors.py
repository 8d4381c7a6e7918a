# SHIM (issue 18 consolidation): old path, re-exports from jaxpot.partition
"""Old path of the pair list; the code lives in :mod:`jaxpot.partition.pairs`."""
from .partition.pairs import (NeighborList, NeighborListFns, NeighborListOverflow, _compact,  # noqa: F401
                              _lex_positive, _round_up, cutoff_scheme_hint, image_shifts, neighbor_list)
