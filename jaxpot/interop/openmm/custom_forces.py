"""OpenMM custom forces that jaxpot recognises by their energy expression:
harmonic impropers (``CustomTorsionForce``, charmm36.xml's unwrapped form and
CharmmPsfFile's wrapped one) and the CHARMM 1-4 Lennard-Jones
(``CustomBondForce``), plus the small extra potential for the terms that
ForceFieldParams has no slot for (unwrapped impropers with theta0 != 0,
bonded LJ pairs that are not excluded nonbonded pairs).

Units: kJ/mol -> eV (``units.KJ_MOL``), nm -> A (``units.NM``); angles rad.
Energy forms as OpenMM documents them (see the package docstring).
"""
from __future__ import annotations

import math
import re

import jax.numpy as jnp
import numpy as np

from ... import units
from ... import forcefield as cl
from ...potentials.base import Potential, esum
from ...system import InputError


def _norm_expr(expr: str) -> str:
    return re.sub(r"\s+", "", expr).rstrip(";")


_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


def _prefactor(match) -> float:
    c = match.group("c")
    return 1.0 if c is None else float(c[:-1])


def _per_item_names(force, kind):
    n = getattr(force, f"getNumPer{kind}Parameters")()
    return [getattr(force, f"getPer{kind}ParameterName")(i) for i in range(n)]


def _no_globals(force, what):
    if force.getNumGlobalParameters():
        names = [force.getGlobalParameterName(i) for i in range(force.getNumGlobalParameters())]
        raise InputError(f"{what} uses global parameters ({', '.join(names)}): not supported")
    if hasattr(force, "getNumEnergyParameterDerivatives") and force.getNumEnergyParameterDerivatives():
        raise InputError(f"{what} requests energy parameter derivatives: not supported")


# ---------------------------------------------------------------------------
# recognisers for the custom forms OpenMM's own force fields write
# ---------------------------------------------------------------------------

_IMPROPER_PLAIN = re.compile(rf"^(?P<c>{_NUMBER}\*)?k\*\(theta-theta0\)\^2$")
_IMPROPER_WRAPPED = re.compile(rf"^(?P<c>{_NUMBER}\*)?k\*dtheta\^2;dtheta=min\(dt,2\*pi-dt\);"
                               rf"dt=abs\(theta-theta0\);pi=(?P<pi>{_NUMBER})$")
_LJ14 = re.compile(rf"^(?P<c>{_NUMBER}\*)?epsilon\*\(\(sigma/r\)\^12-\(sigma/r\)\^6\)$")
_NBFIX = "acoef(type1,type2)/r^12-bcoef(type1,type2)/r^6"



def _read_custom_torsion(force, label):
    expr = _norm_expr(force.getEnergyFunction())
    _no_globals(force, label)
    m_plain, m_wrap = _IMPROPER_PLAIN.match(expr), _IMPROPER_WRAPPED.match(expr)
    if m_wrap and abs(float(m_wrap.group("pi")) - math.pi) > 1e-6:
        m_wrap = None
    if not (m_plain or m_wrap):
        raise InputError(f"{label}: unrecognised energy expression {force.getEnergyFunction()!r} "
                         "(only harmonic impropers are imported)")
    names = _per_item_names(force, "Torsion")
    if sorted(names) != ["k", "theta0"]:
        raise InputError(f"{label}: expected per-torsion parameters k and theta0, got {names}")
    ik, it = names.index("k"), names.index("theta0")
    c = _prefactor(m_plain or m_wrap)
    idx, k, t0 = [], [], []
    for n in range(force.getNumTorsions()):
        a, b, cc, d, p = force.getTorsionParameters(n)
        idx.append((a, b, cc, d))
        k.append(float(p[ik]) * c)
        t0.append(float(p[it]))
    # E = c k (theta - theta0)^2 = 1/2 k' dtheta^2 with k' = 2 c k (kJ/mol/rad^2 -> eV/rad^2)
    return (np.asarray(idx, np.int64).reshape(-1, 4), 2.0 * np.asarray(k) * units.KJ_MOL,
            np.asarray(t0, np.float64), bool(m_wrap))


def _read_lj14(force, label):
    expr = _norm_expr(force.getEnergyFunction())
    _no_globals(force, label)
    m = _LJ14.match(expr)
    if not m:
        raise InputError(f"{label}: unrecognised energy expression {force.getEnergyFunction()!r} "
                         "(only the 1-4 Lennard-Jones form c*epsilon*((sigma/r)^12-(sigma/r)^6) is imported)")
    names = _per_item_names(force, "Bond")
    if sorted(names) != ["epsilon", "sigma"]:
        raise InputError(f"{label}: expected per-bond parameters sigma and epsilon, got {names}")
    isg, ie = names.index("sigma"), names.index("epsilon")
    scale = _prefactor(m) / 4.0          # c eps (...) = 4 (c/4 eps) (...)
    pairs, sig, eps = [], [], []
    for n in range(force.getNumBonds()):
        a, b, p = force.getBondParameters(n)
        pairs.append((a, b))
        sig.append(float(p[isg]) * units.NM)
        eps.append(float(p[ie]) * scale * units.KJ_MOL)
    return np.asarray(pairs, np.int64).reshape(-1, 2), np.asarray(sig), np.asarray(eps)


# ---------------------------------------------------------------------------
# extra terms that ForceFieldParams has no slot for
# ---------------------------------------------------------------------------

def _extra_potential(lj_pairs, lj_sigma, lj_eps, imp_idx, imp_k, imp_t0, cell, dtype):
    """Bonded LJ pairs (CustomBondForce) that are not excluded nonbonded
    pairs, and unwrapped harmonic impropers E = 1/2 k (theta - theta0)^2 with
    theta in (-pi, pi] (charmm36.xml's expression). Params: a dict (eV, A, rad)."""
    periodic = cell is not None
    lj_pairs = np.asarray(lj_pairs, np.int32).reshape(-1, 2)
    imp_idx = np.asarray(imp_idx, np.int32).reshape(-1, 4)
    params = {}
    if len(lj_pairs):
        params.update(lj14_sigma=jnp.asarray(lj_sigma, dtype), lj14_epsilon=jnp.asarray(lj_eps, dtype))
    if len(imp_idx):
        params.update(improper_k=jnp.asarray(imp_k, dtype), improper_theta0=jnp.asarray(imp_t0, dtype))

    def energy(p, positions, context):
        c = context.cell.astype(positions.dtype)
        inv = jnp.linalg.inv(c) if periodic else None
        e = jnp.zeros((), jnp.float64)
        if len(lj_pairs):
            r = cl.bond_lengths(positions, lj_pairs, c, periodic, inv)
            e += esum(cl.lj_energy(r, p["lj14_sigma"].astype(positions.dtype), p["lj14_epsilon"].astype(positions.dtype)))
        if len(imp_idx):
            phi = cl.dihedral_values(positions, imp_idx, c, periodic, inv)
            d = phi - p["improper_theta0"].astype(positions.dtype)
            e += esum(0.5 * p["improper_k"].astype(positions.dtype) * d * d)
        return e

    def init(key, system):
        return params

    return Potential(energy=energy, init=init, cutoff=0.0, name="openmm_extra",
                     config={"kind": "openmm_extra"})
