"""The classical force-field engine: :func:`classical_potential` joins a
:class:`~jaxpot.forcefield.topology.Topology` and its
:class:`~jaxpot.forcefield.topology.ForceFieldParams` into one
:class:`~jaxpot.potentials.base.Potential` (bonded terms, Lennard-Jones,
Coulomb, exclusions and scaled 1-4 pairs), reading a pair list or a
cluster-pair list (:mod:`jaxpot.partition`), or summing all pairs.

Units (metal): positions and lengths A, energies eV, charges e.

Conventions follow OpenMM (NonbondedForce exceptions for 1-4 pairs, its LJ
switch and dispersion correction); the term formulas and their sources are
in :mod:`.bonded` and :mod:`.nonbonded`; Coulomb goes through
:mod:`jaxpot.electrostatics`.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import units
from ..space import minimum_image, pair_vectors, times3
from ..system import InputError
from ..partition import CLUSTERS, cluster_pair_sum, gather_slots
from ..partition.exclusions import exclusion_lookup
from ..potentials.base import Potential, esum, pairs, safe_norm
from ..electrostatics import make_coulomb
from .bonded import (angle_values, bond_lengths, cmap_energy, dihedral_values, harmonic_angle_energy,
                     harmonic_bond_energy, harmonic_improper_energy, periodic_torsion_energy,
                     quartic_morse_bond_energy)
from .nonbonded import _lj_tables, _safe_sqrt, dispersion_correction_energy, lj_energy, switch_function
from .topology import ForceFieldParams, Topology

COULOMB_METHODS = ("direct", "cutoff", "ewald", "pme")


def _check_number(name, v, *, positive=False, allow_none=False):
    if v is None and allow_none:
        return None
    if not isinstance(v, numbers.Real) or isinstance(v, bool) or not np.isfinite(v):
        raise InputError(f"{name} must be a finite number, got {v!r}")
    if positive and v <= 0:
        raise InputError(f"{name} must be positive, got {v!r}")
    return float(v)


# ---------------------------------------------------------------------------
# bonded terms: index batches fixed at build time, energy per call
# ---------------------------------------------------------------------------

class _BondedPlan(NamedTuple):
    """Bonded index batches of a topology (numpy, static)."""
    all_bonds: np.ndarray       # bonds, Urey-Bradley 1-3 pairs, quartic Morse bonds
    n_bond: int
    n_ub: int
    all_dihedrals: np.ndarray   # torsions, impropers, first and second CMAP dihedrals
    n_tor: int
    n_imp: int
    n_cm: int
    per: jnp.ndarray            # torsion periodicities
    cmap_groups: list           # (map index, rows) per CMAP map


def _bonded_plan(topology: Topology) -> _BondedPlan:
    per = jnp.asarray(topology.torsion_periodicity)
    cmap_groups = [(m, np.nonzero(topology.cmap_map == m)[0]) for m in np.unique(topology.cmap_map)]
    # every dihedral of every term in one batch (one small graph to compile):
    # rows [0, D) torsions, [D, D+I) impropers, then first and second CMAP dihedrals
    n_tor, n_imp, n_cm = len(topology.torsions), len(topology.impropers), len(topology.cmap)
    all_dihedrals = np.concatenate([topology.torsions, topology.impropers,
                                    topology.cmap[:, :4], topology.cmap[:, 4:]]).astype(np.int32)
    n_bond = len(topology.bonds)
    n_ub = len(topology.urey_bradley)
    all_bonds = np.concatenate([topology.bonds, topology.urey_bradley,
                                topology.quartic_morse_bonds]).astype(np.int32)
    return _BondedPlan(all_bonds, n_bond, n_ub, all_dihedrals, n_tor, n_imp, n_cm, per, cmap_groups)


def _bonded_energy(plan: _BondedPlan, top: Topology, p: ForceFieldParams, positions, c, periodic, inv):
    """Bonds, Urey-Bradley, quartic Morse bonds, angles, torsions,
    impropers and CMAP (eV, float64)."""
    e = jnp.zeros((), jnp.float64)
    if len(plan.all_bonds):
        r = bond_lengths(positions, plan.all_bonds, c, periodic, inv)
        if plan.n_bond:
            e += esum(harmonic_bond_energy(r[:plan.n_bond], p.bond_k, p.bond_r0))
        n_b2 = plan.n_bond + plan.n_ub
        if plan.n_ub:
            e += esum(harmonic_bond_energy(r[plan.n_bond:n_b2], p.ub_k, p.ub_r0))
        if len(top.quartic_morse_bonds):
            e += esum(quartic_morse_bond_energy(r[n_b2:], p.qmorse_depth, p.qmorse_alpha, p.qmorse_r0))
    if len(top.angles):
        e += esum(harmonic_angle_energy(angle_values(positions, top.angles, c, periodic, inv), p.angle_k, p.angle_theta0))
    if len(plan.all_dihedrals):
        n_tor, n_imp, n_cm = plan.n_tor, plan.n_imp, plan.n_cm
        phi = dihedral_values(positions, plan.all_dihedrals, c, periodic, inv)
        if n_tor:
            e += esum(periodic_torsion_energy(phi[:n_tor], p.torsion_k, plan.per, p.torsion_phase))
        if n_imp:
            e += esum(harmonic_improper_energy(phi[n_tor:n_tor + n_imp], p.improper_k, p.improper_phi0))
        cm_phi = phi[n_tor + n_imp:n_tor + n_imp + n_cm]
        cm_psi = phi[n_tor + n_imp + n_cm:]
        for m, rows in plan.cmap_groups:
            e += esum(cmap_energy(cm_phi[rows], cm_psi[rows], p.cmap_grids[int(m)]))
    return e


# ---------------------------------------------------------------------------
# nonbonded pieces
# ---------------------------------------------------------------------------

def _lj_pairs_energy(r, mask, ti, tj, sig_t, eps_t, dtype, lj_cutoff, switch_distance, lj_shift):
    """LJ energy (eV) of the listed pairs at distances r (A), with the
    cutoff, switch or shift of the potential."""
    sig, eps = sig_t[ti, tj], eps_t[ti, tj]
    lj_mask = mask if lj_cutoff is None else mask & (r < lj_cutoff)
    r_lj = jnp.where(lj_mask, r, 1.0e3)   # keep masked pairs finite
    u = lj_energy(r_lj, sig, eps)
    if switch_distance is not None:
        u = u * switch_function(r_lj, switch_distance, lj_cutoff)
    elif lj_shift:
        u = u - lj_energy(jnp.asarray(lj_cutoff, dtype), sig, eps)
    return esum(jnp.where(lj_mask, u, 0.0))


def _add_pairs14_energy(e, top: Topology, p: ForceFieldParams, positions, c, periodic, inv, types, has_lj,
                        sig_t, eps_t, with_coulomb: bool):
    """e plus the scaled or explicit 1-4 pairs (eV): no cutoff, switch or
    shift, minimum image, as OpenMM's NonbondedForce exceptions. (Added
    term by term onto e, so the float64 sum keeps its order.)"""
    a, b = top.pairs14[:, 0], top.pairs14[:, 1]
    d = positions[b] - positions[a]
    r14 = safe_norm(minimum_image(d, c, inv) if periodic else d)
    if p.pair14_chargeprod is not None:
        qq, s14, e14 = p.pair14_chargeprod, p.pair14_sigma, p.pair14_epsilon
    else:
        qq = None if p.charges is None else top.coulomb14_scale * p.charges[a] * p.charges[b]
        if has_lj:
            s14 = sig_t[types[a], types[b]]
            e14 = top.lj14_scale * eps_t[types[a], types[b]]
        else:
            s14 = e14 = None
    if s14 is not None:
        e += esum(lj_energy(r14, s14, e14))
    if qq is not None and with_coulomb:
        e += esum(units.KE * qq / r14)
    return e


def _cluster_pair_fn(coul, cutoff, nb_cut, has_lj, use_nbfix, rule, lj_cutoff, switch_distance, lj_shift):
    """The pair energy u(r^2, features_i, features_j, shared) (eV) of the
    cluster-pair tiles: Coulomb kernel, then LJ from per-atom factors of the
    combination rule (or the NBFIX tables by type)."""
    def cluster_pair_fn(r2, fi, fj, shared):
        r = jnp.sqrt(r2)
        u = jnp.zeros(r2.shape, r2.dtype)
        k = 0
        if coul is not None:
            uc = units.KE * fi[0] * fj[0] * coul.pair_kernel(r)
            if cutoff is not None and cutoff < nb_cut:
                uc = jnp.where(r2 < cutoff * cutoff, uc, 0.0)
            u = u + uc
            k = 1
        if has_lj:
            if use_nbfix:
                sig_t, eps_t = shared
                ti, tj = fi[k].astype(jnp.int32), fj[k].astype(jnp.int32)
                sig, eps = sig_t[ti, tj], eps_t[ti, tj]
            elif rule == "lorentz-berthelot":
                sig, eps = fi[k] + fj[k], fi[k + 1] * fj[k + 1]      # sigma/2 and sqrt(eps) per atom
            else:
                sig, eps = fi[k] * fj[k], fi[k + 1] * fj[k + 1]      # sqrt(sigma) and sqrt(eps)
            ul = lj_energy(r, sig, eps)
            if switch_distance is not None:
                ul = ul * switch_function(r, switch_distance, lj_cutoff)
            elif lj_shift:
                ul = ul - lj_energy(jnp.asarray(lj_cutoff, r.dtype), sig, eps)
            if lj_cutoff < nb_cut:
                ul = jnp.where(r2 < lj_cutoff * lj_cutoff, ul, 0.0)
            u = u + ul
        return u
    return cluster_pair_fn


def _cluster_nonbonded(cluster_sum, topology: Topology, types, has_lj, use_nbfix, with_coulomb,
                       p, positions, c, nbl):
    """Energy (eV) of the nonbonded pairs of a cluster-pair list."""
    dtype = positions.dtype
    nc, cs = nbl.n_clusters, nbl.cluster_size

    def per_slot(v, fill=0.0):
        return gather_slots(jnp.asarray(v, dtype), nbl.slots, nc, cs, fill)
    xc = per_slot(positions - times3(nbl.wrap.astype(dtype), c))
    feats, shared = [], ()
    if with_coulomb:
        feats.append(per_slot(p.charges))
    if has_lj:
        if use_nbfix:
            feats.append(per_slot(types.astype(dtype)))
            shared = _lj_tables(topology, p)
        else:
            # per-atom factors of the combination rule, so a pair costs no sqrt
            sig_a = p.lj_sigma[types]
            sig_f = 0.5 * sig_a if topology.combination_rule == "lorentz-berthelot" else _safe_sqrt(sig_a)
            feats += [per_slot(sig_f, 1.0), per_slot(_safe_sqrt(p.lj_epsilon[types]))]
    return cluster_sum(xc, times3(nbl.shifts.astype(dtype), c), tuple(feats), shared,
                       nbl.pair_a, nbl.pair_b, nbl.pair_mask)


def _site_positions(vsites, w, positions, c, periodic, inv):
    """Positions (N, 3) A with each virtual site's charge-centre atom a
    replaced by the site w_a r_a + w_b r_b + w_c r_c, written as
    (w_a + w_b + w_c) r_a + w_b d_ab + w_c d_ac with minimum-image
    d_ab = r_b - r_a (molecules may be split across the box)."""
    a, b, cc = vsites[:, 0], vsites[:, 1], vsites[:, 2]
    dab, dac = positions[b] - positions[a], positions[cc] - positions[a]
    if periodic:
        dab, dac = minimum_image(dab, c, inv), minimum_image(dac, c, inv)
    site = (jnp.sum(w, axis=-1)[:, None] * positions[a] + w[:, 1:2] * dab + w[:, 2:3] * dac)
    return positions.at[a].set(site)


def _all_pairs_tables(n, excl_all):
    """Every pair i < j once, and which of them are not excluded."""
    tri_i, tri_j = np.triu_indices(n, 1)
    excl_set = {(min(a, b), max(a, b)) for a, b in excl_all.tolist()}
    tri_keep = np.asarray([(a, b) not in excl_set for a, b in zip(tri_i, tri_j)], bool)
    return tuple(jnp.asarray(x) for x in (tri_i, tri_j, tri_keep))


# ---------------------------------------------------------------------------
# the potential
# ---------------------------------------------------------------------------

def classical_potential(topology: Topology, params: ForceFieldParams, *, cutoff: Optional[float] = None,
                        coulomb: Optional[str] = "ewald", lj_cutoff: Optional[float] = None,
                        switch_distance: Optional[float] = None, lj_shift: bool = False,
                        dispersion_correction: bool = False, cell=None, accuracy: float = 1e-5,
                        coulomb_options: Optional[dict] = None, name: str = "classical",
                        config: Optional[dict] = None, dispersion_counting: str = "openmm",
                        site_margin: float = 0.0, neighbor_images: str = "all") -> Potential:
    """A classical force field as a :class:`Potential` (energies eV, A).

    topology: static :class:`Topology`; params: :class:`ForceFieldParams`
    (returned by ``init`` and trainable).
    cutoff (A): real-space Coulomb cutoff and default LJ cutoff. With
        ``coulomb == "direct"``, or for a cluster (cell None) with neither
        cutoff nor lj_cutoff, every pair is summed and no neighbor list is
        used (LJ without cutoff unless lj_cutoff is given).
    coulomb: "direct" (all pairs, no cutoff, clusters), "cutoff", "ewald", "pme"
        (through :func:`jaxpot.electrostatics.make_coulomb`), or
        None for no electrostatics.
    lj_cutoff (A): LJ cutoff (default ``cutoff``; None with "direct" means
        no LJ cutoff). switch_distance (A): OpenMM switch between it and the
        LJ cutoff; lj_shift: subtract u(rc) instead (not both).
    dispersion_correction: add :func:`dispersion_correction_energy`
        (periodic only; it corrects the truncation, not the shift).
    cell (3, 3) A: the periodic cell (rows = lattice vectors) used to set
        up Ewald/PME and to decide that bonded terms use minimum images;
        None for non-periodic systems.
    accuracy, coulomb_options: passed to ``make_coulomb`` (e.g.
        ``{"cutoff_scheme": "reaction_field", "dielectric": 78.3}`` for
        OpenMM's CutoffPeriodic/CutoffNonPeriodic electrostatics).

    Nonbonded pairs come from ``context.neighbors`` (half list with image
    shifts); a listed pair is excluded only at its minimum image, so
    molecules split across the boundary are handled and interactions with
    farther images of excluded partners are kept. 1-4 pairs are computed
    without cutoff, switch or shift, with the minimum image, as OpenMM's
    exceptions.

    dispersion_counting: "openmm" (default) or "mean_field" type-pair
        weights of :func:`dispersion_correction_energy`.
    Virtual sites (Topology.virtual_sites): Coulomb, its exclusions and the
        Ewald/PME sums use the site positions; LJ the atom positions. The
        neighbor list is over atoms: ``site_margin`` (A) is added to the
        potential's cutoff so that every site pair within the cutoff is an
        atom pair in the list (twice the largest site-atom distance).
        Not with 1-4 pairs, and read from pair lists only.
    neighbor_images: the Potential's neighbor convention ("all" or
        "minimum", see :mod:`jaxpot.partition`)."""
    if not isinstance(topology, Topology):
        raise InputError("classical_potential needs a Topology (see make_topology)")
    if not isinstance(params, ForceFieldParams):
        raise InputError("classical_potential needs ForceFieldParams (see make_params)")
    if coulomb is not None and coulomb not in COULOMB_METHODS:
        raise InputError(f"unknown coulomb method {coulomb!r} (use one of {', '.join(COULOMB_METHODS)} or None)")
    has_lj = params.lj_sigma is not None
    cutoff = _check_number("cutoff", cutoff, positive=True, allow_none=True)
    lj_cutoff = _check_number("lj_cutoff", lj_cutoff, positive=True, allow_none=True)
    # "direct" Coulomb, or a cluster with no cutoff at all, sums every pair
    # (no neighbor list); everything else reads the context's neighbor list
    all_pairs = coulomb == "direct" or (cell is None and cutoff is None and lj_cutoff is None)
    if lj_cutoff is None and not all_pairs:
        if cutoff is None and (has_lj or coulomb is not None):
            raise InputError("classical_potential needs a cutoff (A) for its nonbonded terms")
        lj_cutoff = cutoff
    switch_distance = _check_number("switch_distance", switch_distance, allow_none=True)
    if switch_distance is not None:
        if lj_cutoff is None:
            raise InputError("switch_distance needs an LJ cutoff")
        if not 0 <= switch_distance < lj_cutoff:
            raise InputError(f"switch_distance must satisfy 0 <= r_switch < lj_cutoff = {lj_cutoff}, got {switch_distance}")
        if lj_shift:
            raise InputError("use either lj_shift or switch_distance, not both")
    if lj_shift and lj_cutoff is None:
        raise InputError("lj_shift needs an LJ cutoff")
    periodic = cell is not None
    if periodic:
        cell_np = np.asarray(cell, dtype=np.float64)
        if cell_np.shape != (3, 3) or abs(np.linalg.det(cell_np)) < 1e-9:
            raise InputError("cell must be a non-degenerate (3, 3) matrix of lattice vectors (rows, A)")
        if all_pairs:
            raise InputError("coulomb='direct' sums all pairs without images: use it for clusters (cell=None)")
    if coulomb in ("ewald", "pme") and not periodic:
        raise InputError(f"coulomb={coulomb!r} needs a periodic cell")
    if dispersion_correction and not periodic:
        raise InputError("the dispersion correction needs a periodic cell")
    if dispersion_correction and lj_cutoff is None:
        raise InputError("the dispersion correction needs an LJ cutoff")
    if coulomb is not None and params.charges is None:
        raise InputError(f"coulomb={coulomb!r} needs charges in the parameters")
    if dispersion_correction and not has_lj:
        raise InputError("the dispersion correction needs LJ parameters")
    n_vs = len(topology.virtual_sites)
    if n_vs and len(topology.pairs14):
        raise InputError("virtual sites with 1-4 pairs are not supported")
    site_margin = _check_number("site_margin", site_margin)

    n = topology.n_atoms
    excl_all = np.concatenate([topology.exclusions, topology.pairs14]).astype(np.int32)
    excluded = exclusion_lookup(n, excl_all)
    types = jnp.asarray(topology.atom_types)
    type_counts = np.bincount(topology.atom_types, minlength=topology.n_types)
    plan = _bonded_plan(topology)
    vsites = jnp.asarray(topology.virtual_sites)
    if all_pairs:
        tri_i, tri_j, tri_keep = _all_pairs_tables(n, excl_all)

    coul = None
    if coulomb is not None:
        coul = make_coulomb(coulomb, None if cell is None else np.asarray(cell, np.float64),
                            cutoff, accuracy=accuracy, **dict(coulomb_options or {}))

    # cluster-pair lists (jaxpot.partition): the same nonbonded sum in dense C x C tiles
    cluster_ok = periodic and not all_pairs and (has_lj or coulomb is not None) and not n_vs
    nb_cut = max(c for c in (cutoff, lj_cutoff) if c is not None) if cluster_ok else 0.0
    use_nbfix = bool(topology.nbfix.any())
    if cluster_ok:
        cluster_sum = cluster_pair_sum(
            _cluster_pair_fn(coul, cutoff, nb_cut, has_lj, use_nbfix, topology.combination_rule,
                             lj_cutoff, switch_distance, lj_shift), nb_cut)

    def nonbonded_pairs(positions, context, inv):
        if all_pairs:
            dr = positions[tri_j] - positions[tri_i]
            return tri_i, tri_j, dr, tri_keep
        i, j, dr, mask = pairs(positions, context)
        listed = excluded(i, j)
        if periodic:
            f = times3(dr, inv)
            at_min_image = jnp.all(jnp.abs(f) < 0.5, axis=-1)
            listed = listed & at_min_image
        return i, j, dr, mask & ~listed

    def site_pairs(sites, context, c):
        """Pair vectors (K, 3) A between the charge sites of the listed pairs."""
        if all_pairs:
            return sites[tri_j] - sites[tri_i]
        nbr = context.neighbors
        sdr = pair_vectors(sites, c, nbr.idx, nbr.shifts.astype(sites.dtype))
        return jnp.where(nbr.mask[:, None], sdr, jnp.asarray([1e3, 0.0, 0.0], sdr.dtype))

    def coulomb_energy(p, positions, c, inv, i, j, dr, mask, r):
        """Coulomb (eV) between the charge sites (atoms, or their virtual sites)."""
        q = p.charges
        kw = {}
        if len(excl_all):
            ei, ej = jnp.asarray(excl_all[:, 0]), jnp.asarray(excl_all[:, 1])
            edr = positions[ej] - positions[ei]
            edr = minimum_image(edr, c, inv) if periodic else edr
            kw = dict(excl_i=ei, excl_j=ej, excl_dr=edr, excl_scale=jnp.zeros(len(excl_all), positions.dtype))
        cmask = mask if (all_pairs or cutoff is None) else mask & (r < cutoff)
        return jnp.asarray(coul.energy(positions, q, c, i, j, dr, cmask, **kw), jnp.float64)

    def energy(params, positions, context):
        dtype = positions.dtype
        p = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
        c = context.cell.astype(dtype)
        inv = jnp.linalg.inv(c) if periodic else None
        e = _bonded_energy(plan, topology, p, positions, c, periodic, inv)

        if not has_lj and coul is None:
            return e
        if has_lj:
            sig_t, eps_t = _lj_tables(topology, p)
        else:
            sig_t = eps_t = None
        clustered = getattr(context.neighbors, "layout", None) == CLUSTERS
        if clustered:
            if not cluster_ok:
                raise InputError(f"{name}: this potential cannot read a cluster-pair neighbor list")
            e += _cluster_nonbonded(cluster_sum, topology, types, has_lj, use_nbfix, coul is not None,
                                    p, positions, c, context.neighbors)
            i = j = jnp.zeros(0, jnp.int32)
            dr, mask = jnp.zeros((0, 3), dtype), jnp.zeros(0, bool)
        else:
            i, j, dr, mask = nonbonded_pairs(positions, context, inv)
        r = safe_norm(dr)
        if has_lj and not clustered:
            e += _lj_pairs_energy(r, mask, types[i], types[j], sig_t, eps_t, dtype, lj_cutoff,
                                  switch_distance, lj_shift)
        if has_lj:
            if dispersion_correction:
                e += dispersion_correction_energy(c, type_counts, sig_t, eps_t, lj_cutoff, switch_distance,
                                                  dispersion_counting).astype(jnp.float64)
        if coul is not None and n_vs:
            sites = _site_positions(vsites, p.vsite_weights, positions, c, periodic, inv)
            sdr = site_pairs(sites, context, c)
            e += coulomb_energy(p, sites, c, inv, i, j, sdr, mask, safe_norm(sdr))
        elif coul is not None:
            e += coulomb_energy(p, positions, c, inv, i, j, dr, mask, r)
        if len(topology.pairs14):
            e = _add_pairs14_energy(e, topology, p, positions, c, periodic, inv, types, has_lj, sig_t, eps_t,
                                    coul is not None)
        return e

    def init(key, system):
        if int(system.positions.shape[0]) != n:
            raise InputError(f"the force field is for {n} atoms but the system has {system.positions.shape[0]}")
        return params

    if all_pairs or not (has_lj or coulomb is not None):
        pot_cutoff = 0.0
    else:
        pot_cutoff = max(c for c in (cutoff, lj_cutoff) if c is not None) + site_margin
    if config is None:
        config = {"kind": "classical", "coulomb": coulomb if coulomb is not None else "none",
                  "lj_shift": bool(lj_shift), "dispersion_correction": bool(dispersion_correction)}
        for k, v in (("cutoff", cutoff), ("lj_cutoff", lj_cutoff), ("switch_distance", switch_distance)):
            if v is not None:
                config[k] = v

    def charges_fn(params, positions, context):
        """Fixed force-field charges (N,) e."""
        return params.charges

    return Potential(energy=energy, init=init, cutoff=float(pot_cutoff), name=name, config=dict(config),
                     charges=charges_fn if coul is not None else None, neighbor_images=neighbor_images,
                     cluster_exclusions=excl_all.reshape(-1, 2) if cluster_ok else None)
