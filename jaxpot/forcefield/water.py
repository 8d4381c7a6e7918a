"""Flexible water models as ready-made potentials: q-TIP4P/F and SPC/Fw.

q-TIP4P/F (Habershon, Markland, Manolopoulos, JCP 131, 024501 (2009)):
  V_OH(r)   = D_r [a^2 dr^2 - a^3 dr^3 + (7/12) a^4 dr^4],  dr = r - r_eq
              (quartic expansion of a Morse bond), D_r = 116.09 kcal/mol,
              a = 2.287 1/A, r_eq = 0.9419 A
  V_HOH     = (1/2) k_theta (theta - theta_eq)^2, k_theta = 87.85 kcal/mol/rad^2,
              theta_eq = 107.4 deg
  V_LJ(O-O) = 4 eps [(s/r)^12 - (s/r)^6], eps = 0.1852 kcal/mol, s = 3.1589 A,
              truncated at 9 A without shift or tail correction (as in the paper)
  Coulomb between molecules only: q_H = +0.5564 e on the hydrogens and
  q_M = -1.1128 e on the massless M site r_M = gamma r_O + (1 - gamma)/2 (r_H1 + r_H2),
  gamma = 0.73612. The M site is a function of O, H, H positions, so autodiff
  distributes its force onto them (the chain rule replaces the usual
  hand-written virtual-site force redistribution).
SPC/Fw (Wu, Tepper, Voth, JCP 124, 024503 (2006)): harmonic bonds
  (k_b = 1059.162 kcal/mol/A^2, r0 = 1.012 A, E = k_b/2 dr^2) and angle
  (k_theta = 75.90 kcal/mol/rad^2, theta0 = 113.24 deg), q_O = -0.82 e,
  q_H = +0.41 e, O-O LJ eps = 0.1554253 kcal/mol, sigma = 3.165492 A.

Molecules are recognised from the atom order O, H, H or, failing that, by
assigning every H to its nearest O (minimum image); each O must own exactly
two H. Bonded geometry uses minimum-image vectors, so molecules split across
the periodic boundary in the input are handled.

Each model is a topology (O-H bonds, H-O-H angle, O/H LJ types with
epsilon_H = 0, charges, intramolecular exclusions) plus the M site as a
virtual site, run through the general engine
(:func:`jaxpot.forcefield.engine.classical_potential`).

The registry kinds "qtip4pf" and "spcfw" declare their ``[potential]`` keys
in :data:`QTIP4PF_TABLE` and :data:`SPCFW_TABLE` (defaults from
:data:`_DEFAULTS`) and their entries in :data:`QTIP4PF_KIND` and
:data:`SPCFW_KIND`.
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from .. import units
from ..config import Key, Table
from ..system import InputError, System, check_choice
from ..potentials.base import Context, Potential
from ..potentials.registry import KindSpec
from .engine import COULOMB_METHODS, classical_potential
from .topology import ForceFieldParams, Topology, make_topology

QTIP4PF = dict(
    D_r=116.09 * units.KCAL_MOL, a_r=2.287, r_eq=0.9419,
    k_theta=87.85 * units.KCAL_MOL, theta_eq=107.4,
    epsilon=0.1852 * units.KCAL_MOL, sigma=3.1589,
    q_H=0.5564, gamma=0.73612, bond="quartic_morse",
)
SPCFW = dict(
    k_b=1059.162 * units.KCAL_MOL, r_eq=1.012,
    k_theta=75.90 * units.KCAL_MOL, theta_eq=113.24,
    epsilon=0.1554253 * units.KCAL_MOL, sigma=3.165492,
    q_H=0.41, gamma=1.0, bond="harmonic",
)

_DEFAULTS = dict(cutoff=9.0, coulomb=None, accuracy=1e-5, images="all",
                 lj_tail_correction=False, lj_shift=False, part="all")
PARTS = ("all", "intramolecular", "intermolecular")


def _water_table(kind, model_name):
    """The typed ``[potential]`` table of a water kind; defaults from :data:`_DEFAULTS`."""
    return Table(f"[potential] kind = {kind!r}", (
        Key("cutoff", float, _DEFAULTS["cutoff"], "A", "LJ and real-space Coulomb cutoff"),
        Key("coulomb", str, _DEFAULTS["coulomb"], "",
            "Coulomb method (auto: ewald for periodic cells, direct for clusters).", choices=COULOMB_METHODS),
        Key("accuracy", float, _DEFAULTS["accuracy"], "", "Ewald/PME relative accuracy"),
        Key("images", str, _DEFAULTS["images"], "",
            "neighbor convention for small cells: \"all\" periodic images or the \"minimum\" image"),
        Key("lj_tail_correction", bool, _DEFAULTS["lj_tail_correction"], "",
            "add the LJ long-range (mean-field) correction in periodic cells"),
        Key("lj_shift", bool, _DEFAULTS["lj_shift"], "", "subtract V_LJ(cutoff) (not in the published model)"),
        Key("part", str, _DEFAULTS["part"], "",
            "which terms: all, the intramolecular ones or the intermolecular ones.", choices=PARTS),
        Key("parameters", dict, None, "",
            f"overrides of {model_name} parameter entries (eV, A, degrees, e; the start of a fit)"),
    ), doc=f"The flexible {model_name} water model.")


QTIP4PF_TABLE = _water_table("qtip4pf", "q-TIP4P/F")
SPCFW_TABLE = _water_table("spcfw", "SPC/Fw")


def find_water_molecules(system: System) -> np.ndarray:
    """(M, 3) atom indices (O, H1, H2) of every water molecule.

    Raises InputError if the system is not made only of water."""
    z = np.asarray(system.species)
    n = len(z)
    bad = sorted(set(int(x) for x in z) - {1, 8})
    if bad:
        from ase.data import chemical_symbols
        raise InputError("water model got non-water elements: "
                         + ", ".join(chemical_symbols[b] for b in bad))
    if n % 3 == 0 and np.all(z[0::3] == 8) and np.all(z[1::3] == 1) and np.all(z[2::3] == 1):
        return np.arange(n).reshape(-1, 3)
    o = np.where(z == 8)[0]
    h = np.where(z == 1)[0]
    if len(h) != 2 * len(o):
        raise InputError(f"water model needs two H per O, got {len(o)} O and {len(h)} H")
    pos = np.asarray(system.positions, dtype=np.float64)
    d = pos[h][:, None, :] - pos[o][None, :, :]
    if system.periodic:
        cell = np.asarray(system.cell, dtype=np.float64)
        f = d @ np.linalg.inv(cell)
        d = (f - np.round(f)) @ cell
    owner = np.argmin(np.linalg.norm(d, axis=-1), axis=1)
    counts = np.bincount(owner, minlength=len(o))
    if np.any(counts != 2):
        k = int(np.argmax(counts != 2))
        raise InputError(f"cannot recognise water molecules: O atom {o[k]} has {counts[k]} "
                         "nearest H atoms (expected 2)")
    mols = np.zeros((len(o), 3), dtype=np.int64)
    for k in range(len(o)):
        mols[k] = [o[k], *h[owner == k]]
    return mols


def water_topology(mols: np.ndarray, n_atoms: int, bond: str, part: str = "all") -> Topology:
    """Topology of M water molecules ``mols`` (M, 3) = (O, H1, H2): O-H bonds
    ("harmonic" or "quartic_morse") and the H-O-H angle (omitted for
    ``part="intermolecular"``), LJ type 0 for O and 1 for H, the
    intramolecular pairs excluded, and the M site of each molecule as a
    virtual site (O, H1, H2) whose charge is O's (omitted, with the
    exclusions, for ``part="intramolecular"``)."""
    o, h1, h2 = mols[:, 0], mols[:, 1], mols[:, 2]
    types = np.ones(n_atoms, np.int32)
    types[o] = 0
    kw = {}
    if part != "intermolecular":
        oh = np.concatenate([np.stack([o, h1], 1), np.stack([o, h2], 1)])
        kw["quartic_morse_bonds" if bond == "quartic_morse" else "bonds"] = oh
        kw["angles"] = np.stack([h1, o, h2], 1)
    if part != "intramolecular":
        kw["exclusions"] = np.concatenate([np.stack([o, h1], 1), np.stack([o, h2], 1), np.stack([h1, h2], 1)])
        kw["virtual_sites"] = mols
    return make_topology(n_atoms, atom_types=types, n_types=2, **kw)


def water_force_field_params(params: dict, topology: Topology, bond: str, with_nonbonded: bool,
                             dtype=jnp.float64) -> ForceFieldParams:
    """The :class:`ForceFieldParams` of a water topology from the model's
    named parameters (metal units, ``theta_eq`` in degrees); differentiable
    in them, so fitting acts on the named parameters."""
    m = len(topology.angles) if len(topology.angles) else len(topology.virtual_sites)
    f = {}

    def per(x, k):
        return jnp.full((k,), x, dtype)
    if len(topology.angles):
        nb = 2 * m
        if bond == "quartic_morse":
            f.update(qmorse_depth=per(params["D_r"], nb), qmorse_alpha=per(params["a_r"], nb),
                     qmorse_r0=per(params["r_eq"], nb))
        else:
            f.update(bond_k=per(params["k_b"], nb), bond_r0=per(params["r_eq"], nb))
        f.update(angle_k=per(params["k_theta"], m), angle_theta0=per(jnp.deg2rad(params["theta_eq"]), m))
    if with_nonbonded:
        is_o = np.zeros(topology.n_atoms, bool)
        is_o[topology.virtual_sites[:, 0]] = True
        g = jnp.asarray(params["gamma"], dtype)
        w_h = 0.5 * (1.0 - g)
        f.update(charges=jnp.where(jnp.asarray(is_o), -2.0 * params["q_H"], params["q_H"]).astype(dtype),
                 lj_sigma=jnp.stack([params["sigma"], params["sigma"]]).astype(dtype),
                 lj_epsilon=jnp.stack([jnp.asarray(params["epsilon"], dtype), jnp.zeros((), dtype)]),
                 vsite_weights=jnp.broadcast_to(jnp.stack([g, w_h, w_h]), (m, 3)))
    return ForceFieldParams(**f)


def water_potential(model: dict, system: System, *, cutoff: float = 9.0,
                    coulomb: str | None = None, accuracy: float = 1e-5,
                    images: str = "all", lj_tail_correction: bool = False,
                    lj_shift: bool = False, part: str = "all", name: str = "water") -> Potential:
    """A flexible water potential for ``system`` (energies eV, lengths A).

    ``model`` is a parameter table (:data:`QTIP4PF` or :data:`SPCFW`, metal
    units); its floats are the trainable params returned by ``init``.
    ``coulomb``: "ewald" (default for periodic cells), "pme", or "direct"
    (default for clusters). ``images``: neighbor convention for small cells.
    ``lj_shift``: subtract V_LJ(cutoff) so the energy is continuous at the
    cutoff (not in the published models, which truncate; useful for tight
    NVE energy conservation, since each O-O pair crossing 9 A otherwise
    changes the energy by |V_LJ(9 A)| = 6e-5 eV).
    ``part``: "all" (default), "intramolecular" (bonds and angle only, no
    neighbor list) or "intermolecular" (LJ and Coulomb only); the two parts
    sum to "all". Ring-polymer contraction puts them on different bead
    numbers (``[md] contraction``).

    The model is a :func:`water_topology` with the M site as a virtual site,
    evaluated by :func:`jaxpot.forcefield.engine.classical_potential`; its
    named parameters map onto :class:`ForceFieldParams` at every call
    (:func:`water_force_field_params`).
    """
    check_choice("part", part, PARTS)
    mols = find_water_molecules(system)
    n = system.n_atoms
    periodic = system.periodic
    if coulomb is None:
        coulomb = "ewald" if periodic else "direct"
    if periodic and coulomb == "direct":
        raise InputError("coulomb = 'direct' is for clusters; use 'ewald' or 'pme' in a periodic cell")
    if not periodic and coulomb in ("ewald", "pme"):
        raise InputError(f"coulomb = {coulomb!r} needs a periodic cell; use 'direct' for clusters")
    bond_kind = model["bond"]
    params0 = {k: float(v) for k, v in model.items() if k not in ("bond",)}
    with_nonbonded = part != "intramolecular"
    topology = water_topology(mols, n, bond_kind, part)
    ff0 = water_force_field_params(params0, topology, bond_kind, with_nonbonded)
    # margin so that every site pair within the cutoff is an atom pair in the list:
    # the M site sits ~0.15 A from its O
    margin = 0.35 if params0["gamma"] < 1.0 else 0.0
    engine = classical_potential(
        topology, ff0, cutoff=cutoff if with_nonbonded else None,
        coulomb=coulomb if with_nonbonded else None, lj_cutoff=cutoff if with_nonbonded else None,
        lj_shift=lj_shift and with_nonbonded, accuracy=accuracy, coulomb_options={"n_sites": n},
        dispersion_correction=bool(lj_tail_correction and periodic and with_nonbonded),
        dispersion_counting="mean_field", site_margin=margin,
        cell=np.asarray(system.cell) if periodic else None, name=name, neighbor_images=images)

    def energy(params, positions, context: Context):
        ff = water_force_field_params(params, topology, bond_kind, with_nonbonded, positions.dtype)
        return engine.energy(ff, positions, context)

    def init(key, system_):
        return {k: jnp.asarray(v) for k, v in params0.items()}

    is_o = jnp.asarray(np.isin(np.arange(n), mols[:, 0]))

    def charges(params, positions, context):
        q = jnp.where(is_o, -2.0 * params["q_H"], params["q_H"])
        return q.astype(positions.dtype)

    config = {"cutoff": cutoff, "coulomb": coulomb, "accuracy": accuracy,
              "images": images, "lj_tail_correction": lj_tail_correction, "lj_shift": lj_shift,
              "part": part}
    return Potential(energy=energy, init=init, cutoff=engine.cutoff, name=name,
                     charges=None if part == "intramolecular" else charges, config=config,
                     neighbor_images=images)


def _from_config(model, kind, table=None):
    """Factory of a water kind (``table``: its typed key table). ``parameters = {q_H = 0.55, ...}`` overrides
    entries of the parameter table (metal units: eV, A, degrees, e; the
    starting point of a force-field fit); the fitted values live in params."""
    def factory(config: dict, system: System) -> Potential:
        tab = table if table is not None else _water_table(kind, kind)
        given = {k: v for k, v in config.items() if k != "kind"}
        tab.check(given)
        override = dict(config.get("parameters") or {})
        bad = set(override) - (set(model) - {"bond"})
        if bad:
            raise InputError(f"unknown {kind} parameter(s) {', '.join(sorted(bad))} "
                             f"(known: {', '.join(sorted(set(model) - {'bond'}))})")
        opts = {**_DEFAULTS, **{k: v for k, v in config.items() if k not in ("kind", "parameters")}}
        pot = water_potential({**model, **{k: float(v) for k, v in override.items()}}, system, name=kind, **opts)
        pot.config["kind"] = kind
        if override:
            pot.config["parameters"] = {k: float(v) for k, v in override.items()}
        return pot
    return factory


qtip4pf_from_config = _from_config(QTIP4PF, "qtip4pf", QTIP4PF_TABLE)
spcfw_from_config = _from_config(SPCFW, "spcfw", SPCFW_TABLE)

QTIP4PF_KIND = KindSpec(name="qtip4pf", factory=qtip4pf_from_config, table=QTIP4PF_TABLE, doc=QTIP4PF_TABLE.doc)
SPCFW_KIND = KindSpec(name="spcfw", factory=spcfw_from_config, table=SPCFW_TABLE, doc=SPCFW_TABLE.doc)
