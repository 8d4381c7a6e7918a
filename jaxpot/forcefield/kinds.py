"""Registry kinds "lj" (Lennard-Jones over a neighbor list, from a
``[potential]`` table) and "harmonic" (atoms tethered to their starting
positions). Metal units: eV, A.

Each kind declares its ``[potential]`` keys as a typed table
(:data:`LJ_TABLE`, :data:`HARMONIC_TABLE`, defaults from :data:`LJ_DEFAULTS`)
and its registry entry (:data:`LJ_KIND`, :data:`HARMONIC_KIND`).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..config import REQUIRED, Key, Table
from ..space import minimum_image
from ..system import InputError, System
from ..potentials.base import Potential, esum
from ..potentials.registry import KindSpec
from .engine import _check_number, classical_potential
from .topology import COMBINATION_RULES, make_params, make_topology


LJ_DEFAULTS = dict(epsilon=None, sigma=None, elements=None, pairs=None, combination_rule="lorentz-berthelot",
                   cutoff=None, shift=False, switch_distance=None, dispersion_correction=False)
"""Defaults of kind "lj" (None: absent; ``cutoff`` None: 2.5 x the largest sigma)."""

LJ_TABLE = Table("[potential] kind = 'lj'", (
    Key("epsilon", float, LJ_DEFAULTS["epsilon"], "eV", "well depth for all atoms (with sigma; not with elements/pairs)"),
    Key("sigma", float, LJ_DEFAULTS["sigma"], "A", "LJ diameter for all atoms (with epsilon)"),
    Key("elements", dict, LJ_DEFAULTS["elements"], "",
        "per-element {epsilon (eV), sigma (A)} tables, combined by combination_rule"),
    Key("pairs", dict, LJ_DEFAULTS["pairs"], "",
        "explicit \"A-B\" = {epsilon (eV), sigma (A)} pair tables (override the rule)"),
    Key("combination_rule", str, LJ_DEFAULTS["combination_rule"], "", "how element parameters combine.",
        choices=COMBINATION_RULES),
    Key("cutoff", float, LJ_DEFAULTS["cutoff"], "A", "LJ cutoff (auto: 2.5 x the largest sigma)"),
    Key("shift", bool, LJ_DEFAULTS["shift"], "", "subtract the energy at the cutoff"),
    Key("switch_distance", float, LJ_DEFAULTS["switch_distance"], "A",
        "start of the OpenMM switch to the cutoff (none: no switch)"),
    Key("dispersion_correction", bool, LJ_DEFAULTS["dispersion_correction"], "",
        "add the long-range dispersion correction (periodic systems only)"),
), doc="Lennard-Jones over a neighbor list.")

HARMONIC_TABLE = Table("[potential] kind = 'harmonic'", (
    Key("k", float, REQUIRED, "eV/A^2", "spring constant tying each atom to its starting position (>= 0)"),
), doc="Atoms tethered to their starting positions (an external field).")


def _check_keys(kind, config, allowed):
    unknown = set(config) - set(allowed) - {"kind"}
    if unknown:
        raise InputError(f"unknown key(s) for potential kind {kind!r}: {', '.join(sorted(unknown))}")


def _lj_pair_params(where, table):
    if not isinstance(table, dict):
        raise InputError(f"{where} must be a table {{epsilon = ..., sigma = ...}}")
    _check_keys(where, table, ("epsilon", "sigma"))
    for k in ("epsilon", "sigma"):
        if k not in table:
            raise InputError(f"{where} is missing {k}")
    eps = _check_number(f"{where} epsilon", table["epsilon"])
    sig = _check_number(f"{where} sigma", table["sigma"], positive=True)
    if eps < 0:
        raise InputError(f"{where} epsilon must be non-negative, got {eps}")
    return sig, eps


def lj_from_config(config: dict, system: System) -> Potential:
    """Potential kind "lj" (metal units): Lennard-Jones over a neighbor list.

    Keys: either ``epsilon`` (eV) and ``sigma`` (A) for all atoms, or
    ``elements = {Ar = {epsilon, sigma}, ...}`` with ``combination_rule``
    ("lorentz-berthelot" default, or "geometric"), and/or an explicit
    ``pairs = {"Ar-Kr" = {epsilon, sigma}, ...}`` table (overrides the rule;
    alone it must cover every element pair of the system).
    ``cutoff`` A (default 2.5 x largest sigma), ``shift`` (false),
    ``switch_distance`` A (optional), ``dispersion_correction`` (false,
    periodic systems only)."""
    from ase.data import atomic_numbers, chemical_symbols

    config = dict(config)
    config.pop("kind", None)
    LJ_TABLE.check(config)
    z = np.asarray(system.species)
    present = sorted(set(int(x) for x in z))
    sym = [chemical_symbols[k] for k in present]
    rule = config.get("combination_rule", LJ_DEFAULTS["combination_rule"])
    if rule not in COMBINATION_RULES:
        raise InputError(f"unknown combination_rule {rule!r} (use one of {', '.join(COMBINATION_RULES)})")
    single = "epsilon" in config or "sigma" in config
    if single and ("elements" in config or "pairs" in config):
        raise InputError("lj: give either epsilon/sigma for all atoms or elements/pairs tables, not both")
    resolved = {"kind": "lj"}
    if single:
        sig, eps = _lj_pair_params("lj", {k: config[k] for k in ("epsilon", "sigma") if k in config})
        types = np.zeros(len(z), np.int32)
        lj_s, lj_e = np.array([sig]), np.array([eps])
        nbfix = None
        resolved.update(epsilon=eps, sigma=sig)
        sig_max = sig
    else:
        if "elements" not in config and "pairs" not in config:
            raise InputError("lj needs epsilon and sigma, or an elements table, or a pairs table")
        elements = config.get("elements", {})
        pair_tab = config.get("pairs", {})
        if not isinstance(elements, dict) or not isinstance(pair_tab, dict):
            raise InputError("lj elements and pairs must be tables")
        for el in elements:
            if el not in atomic_numbers:
                raise InputError(f"lj elements: unknown element {el!r}")
        types = np.asarray([present.index(int(x)) for x in z], np.int32)
        nt = len(present)
        lj_s, lj_e = np.ones(nt), np.zeros(nt)
        el_params = {}
        for el, tab in elements.items():
            el_params[el] = _lj_pair_params(f"lj elements.{el}", tab)
        pair_params = {}
        for key, tab in pair_tab.items():
            parts = str(key).split("-")
            if len(parts) != 2 or any(p not in atomic_numbers for p in parts):
                raise InputError(f"lj pairs key {key!r} must be 'A-B' with two element symbols")
            sp = _lj_pair_params(f"lj pairs.{key}", tab)
            pair_params[(parts[0], parts[1])] = sp
            pair_params[(parts[1], parts[0])] = sp
        nbfix = np.zeros((nt, nt), bool)
        nb_s, nb_e = np.ones((nt, nt)), np.zeros((nt, nt))
        missing = [s for s in sym if s not in el_params]
        for a, sa in enumerate(sym):
            if sa in el_params:
                lj_s[a], lj_e[a] = el_params[sa]
            for b, sb in enumerate(sym):
                if (sa, sb) in pair_params:
                    nbfix[a, b] = True
                    nb_s[a, b], nb_e[a, b] = pair_params[(sa, sb)]
                elif sa in missing or sb in missing:
                    if not pair_params:
                        raise InputError(f"lj has no parameters for element {sb if sb in missing else sa}: "
                                         "add it to elements")
                    raise InputError(f"lj has no parameters for the pair {sa}-{sb}: add it to pairs "
                                     "or give both elements in elements")
        sig_max = max([s for s, _ in el_params.values()] + [s for s, _ in pair_params.values()])
        resolved["combination_rule"] = rule
        if elements:
            resolved["elements"] = {el: {"epsilon": e_, "sigma": s_} for el, (s_, e_) in el_params.items()}
        if pair_tab:
            resolved["pairs"] = {str(k): {"epsilon": pair_params[tuple(str(k).split("-"))][1],
                                          "sigma": pair_params[tuple(str(k).split("-"))][0]}
                                 for k in pair_tab}
    cutoff = _check_number("lj cutoff", config.get("cutoff", 2.5 * sig_max), positive=True)
    shift = config.get("shift", LJ_DEFAULTS["shift"])
    disp = config.get("dispersion_correction", LJ_DEFAULTS["dispersion_correction"])
    for k, v in (("shift", shift), ("dispersion_correction", disp)):
        if not isinstance(v, bool):
            raise InputError(f"lj {k} must be true or false, got {v!r}")
    sw = config.get("switch_distance", LJ_DEFAULTS["switch_distance"])
    resolved.update(cutoff=cutoff, shift=shift, dispersion_correction=disp)
    if sw is not None:
        resolved["switch_distance"] = _check_number("lj switch_distance", sw)
    topo = make_topology(len(z), atom_types=types, n_types=len(lj_s), nbfix=nbfix, combination_rule=rule)
    kw = dict(lj_sigma=lj_s, lj_epsilon=lj_e)
    if nbfix is not None and nbfix.any():
        kw.update(nbfix_sigma=nb_s, nbfix_epsilon=nb_e)
    params = make_params(topo, dtype=system.positions.dtype, **kw)
    return classical_potential(topo, params, cutoff=cutoff, coulomb=None, lj_shift=shift,
                               switch_distance=resolved.get("switch_distance"),
                               dispersion_correction=disp,
                               cell=np.asarray(system.cell) if system.periodic else None,
                               name="lj", config=resolved)


def harmonic_from_config(config: dict, system: System) -> Potential:
    """Potential kind "harmonic": each atom tied to its starting position,
    E = 1/2 k sum_i |r_i - r_i(0)|^2 (k in eV/A^2, minimum image in
    periodic cells). An external field: ``translation_invariant=False``.
    Params: {"k": k} (trainable)."""
    config = dict(config)
    config.pop("kind", None)
    HARMONIC_TABLE.check(config)
    if "k" not in config:
        raise InputError("potential kind 'harmonic' needs k (eV/A^2)")
    k = _check_number("harmonic k", config["k"])
    if k < 0:
        raise InputError(f"harmonic k must be non-negative, got {k}")
    ref = np.asarray(system.positions, dtype=np.float64)
    periodic = system.periodic
    n = len(ref)

    def init(key, sys):
        if int(sys.positions.shape[0]) != n:
            raise InputError(f"the harmonic tether is for {n} atoms but the system has {sys.positions.shape[0]}")
        return {"k": jnp.asarray(k, dtype=sys.positions.dtype)}

    def energy(params, positions, context):
        d = positions - jnp.asarray(ref, positions.dtype)
        if periodic:
            d = minimum_image(d, context.cell.astype(positions.dtype))
        return esum(0.5 * params["k"] * jnp.sum(d * d, axis=-1))

    return Potential(energy=energy, init=init, cutoff=0.0, name="harmonic",
                     translation_invariant=False, config={"kind": "harmonic", "k": k})


LJ_KIND = KindSpec(name="lj", factory=lj_from_config, table=LJ_TABLE, doc=LJ_TABLE.doc)
HARMONIC_KIND = KindSpec(name="harmonic", factory=harmonic_from_config, table=HARMONIC_TABLE,
                         doc=HARMONIC_TABLE.doc)
