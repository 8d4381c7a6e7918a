# SHIM (issue 18 consolidation): old path, re-exports from jaxpot.forcefield.water
"""Old path of the water models; they live in :mod:`jaxpot.forcefield.water`."""
from ..forcefield.water import (PARTS, QTIP4PF, SPCFW, _DEFAULTS, _from_config,  # noqa: F401
                                find_water_molecules, qtip4pf_from_config, spcfw_from_config,
                                water_potential)
