"""OpenMM's ``NonbondedForce`` read into metal units: charges, per-particle
LJ, exceptions, cutoff, switching, dispersion correction, and the Ewald/PME
parameters OpenMM derives from its error tolerance (NonbondedForceImpl::
calcEwaldParameters / calcPMEParameters, or explicit setPMEParameters).

Units: charges e, sigma and cutoffs nm -> A, epsilon kJ/mol -> eV,
alpha 1/nm -> 1/A.
"""
from __future__ import annotations

import math

import numpy as np

from ... import units
from ...system import InputError
from .system_io import NONBONDED_METHODS, _num, _openmm


def _read_nonbonded(force, label, system):
    mm = _openmm()
    method_id = force.getNonbondedMethod()
    names = {mm.NonbondedForce.NoCutoff: "NoCutoff", mm.NonbondedForce.CutoffNonPeriodic: "CutoffNonPeriodic",
             mm.NonbondedForce.CutoffPeriodic: "CutoffPeriodic", mm.NonbondedForce.Ewald: "Ewald",
             mm.NonbondedForce.PME: "PME", mm.NonbondedForce.LJPME: "LJPME"}
    method = names.get(method_id, str(method_id))
    if method not in NONBONDED_METHODS:
        raise InputError(f"{label}: nonbonded method {method} is not supported (use one of {', '.join(NONBONDED_METHODS)})")
    if force.getNumGlobalParameters() or force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        raise InputError(f"{label}: global parameters and parameter offsets are not supported")
    n = force.getNumParticles()
    q, sig, eps = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        qi, si, ei = force.getParticleParameters(i)
        q[i], sig[i], eps[i] = _num(qi), _num(si), _num(ei)
    exc = []
    for k in range(force.getNumExceptions()):
        a, b, qq, s, e = force.getExceptionParameters(k)
        exc.append((a, b, _num(qq), _num(s), _num(e)))
    cutoff = _num(force.getCutoffDistance()) * units.NM
    out = dict(method=method, charges=q, sigma=sig * units.NM, eps=eps * units.KJ_MOL,
               exceptions=exc, cutoff=cutoff,
               switch=(_num(force.getSwitchingDistance()) * units.NM if force.getUseSwitchingFunction()
                       and method != "NoCutoff" else None),
               dispersion=bool(force.getUseDispersionCorrection()) and method in ("CutoffPeriodic", "Ewald", "PME"),
               dielectric=float(force.getReactionFieldDielectric()),
               tolerance=float(force.getEwaldErrorTolerance()))
    if method in ("Ewald", "PME"):
        box = np.asarray([[_num(x) for x in v] for v in system.getDefaultPeriodicBoxVectors()])   # nm
        tol = out["tolerance"]
        rc_nm = cutoff / units.NM
        alpha_nm = math.sqrt(-math.log(2.0 * tol)) / rc_nm
        if method == "Ewald":
            # calcEwaldParameters: smallest k with the error estimate below tol, made odd;
            # OpenMM's reciprocal sum then runs over |m_a| <= kmax_a - 1 (a box, no sphere)
            kmax = []
            for w in np.diag(box):
                def err(k, w=w):
                    t = k * math.pi / (w * alpha_nm)
                    return tol - 0.05 * math.sqrt(w * alpha_nm) * k * math.exp(-t * t)
                k = 10
                if err(k) > 0:
                    while err(k) > 0 and k > 0:
                        k -= 1
                    k += 1
                else:
                    while err(k) < 0:
                        k += 1
                kmax.append(k + 1 if k % 2 == 0 else k)
            out["ewald"] = dict(alpha=alpha_nm / units.NM, kmax=[k - 1 for k in kmax])
        else:
            a0, nx, ny, nz = force.getPMEParameters()
            a0 = _num(a0)
            if a0 != 0.0:
                grid, alpha_nm = [nx, ny, nz], a0
            else:
                # calcPMEParameters; the CPU and Reference platforms use these sizes
                # as they are (no rounding to FFT-friendly sizes; checked with
                # getPMEParametersInContext in the tests)
                grid = [max(int(math.ceil(2 * alpha_nm * w / (3 * tol ** 0.2))), 6) for w in np.diag(box)]
            out["pme"] = dict(alpha=alpha_nm / units.NM, grid=[int(g) for g in grid])
    return out
