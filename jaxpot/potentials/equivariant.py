# SHIM (issue 18 consolidation): old path, re-exports from jaxpot.ml (equivariant, nequip, mace, equivariant_layers)
"""Old path of the NequIP and MACE kinds; the code lives in :mod:`jaxpot.ml.equivariant`,
:mod:`jaxpot.ml.nequip`, :mod:`jaxpot.ml.mace` and :mod:`jaxpot.ml.equivariant_layers`."""
from ..ml.equivariant import (COMMON_DEFAULTS, MACE_DEFAULTS, MIN_EDGE_LENGTH, NEQUIP_DEFAULTS,  # noqa: F401
                              build_module, graph_inputs, intermediate_features, mace_from_config,
                              nequip_from_config, resolve_config)
from ..ml.equivariant_layers import (Convolution, edge_features, hidden_irreps,  # noqa: F401
                                     polynomial_envelope, radial_basis)
from ..ml.mace import MACE, MACELayer, ProductBasis  # noqa: F401
from ..ml.nequip import NequIP, NequIPBlock  # noqa: F401
