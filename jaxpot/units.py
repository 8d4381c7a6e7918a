"""Physical constants and conversions in metal units.

energy eV, length Angstrom, time fs, mass amu, temperature K, charge e.
"""

KB = 8.617333262e-5
"""Boltzmann constant, eV/K."""

HBAR = 0.6582119569
"""Reduced Planck constant, eV fs."""

MVV2E = 103.642697
"""1 amu A^2/fs^2 in eV: kinetic energy = 0.5 * m * v^2 * MVV2E."""

KE = 14.3996454784
"""Coulomb constant e^2/(4 pi eps0), eV A / e^2."""

KCAL_MOL = 0.0433641042
"""1 kcal/mol in eV."""

KJ_MOL = 0.0103642697
"""1 kJ/mol in eV."""

NM = 10.0
"""1 nm in Angstrom."""

PS = 1000.0
"""1 ps in fs."""

EV_A3_TO_GPA = 160.21766208
"""1 eV/A^3 in GPa."""

AMU_A3_TO_G_CM3 = 1.66053906660
"""1 amu/A^3 in g/cm^3."""
