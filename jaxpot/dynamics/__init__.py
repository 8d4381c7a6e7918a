"""Dynamics: classical and path-integral integrators, the thermostats and
thermodynamic quantities they share, and observables (metal units: A, fs,
amu, eV, K).

Modules:
  :mod:`.quantity`     kinetic energy, temperature, pressure (written once);
  :mod:`.thermostats`  Ornstein-Uhlenbeck step, CSVR, Nose-Hoover chains;
  :mod:`.integrators`  classical ``(init_fn, step_fn)`` integrators
                       (NVE, Langevin BAOAB, Nose-Hoover chains, CSVR);
  :mod:`.pimd`         ring-polymer MD (PIMD, RPMD, TRPMD);
  :mod:`.observables`  block averages, RDF, MSD.

Heat convention: every integrator state's ``heat`` is the kinetic energy
the thermostat has removed (eV), so H + heat is conserved ((H_P + heat)/P
for a ring polymer). This package imports only from jaxpot's core layer.
"""
from . import integrators, observables, pimd, quantity, thermostats

__all__ = ["integrators", "observables", "pimd", "quantity", "thermostats"]
