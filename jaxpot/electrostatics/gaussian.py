"""Potential kind "gaussian_electrostatics": Gaussian charges (fixed or
charge-equilibrated) plus a Yukawa core-core repulsion.

Units (metal): positions and cell in A, charges in e, widths in A, energies
in eV. :func:`gaussian_electrostatics_from_config` builds the potential from
a ``[potential]`` table; its docstring lists the energy (Ghasemi et al., PRB
92, 045131 (2015); Ko et al., Nat. Commun. 12, 398 (2021)), every key with its
unit and default, and the trainable parameters. Clusters use dense all-pairs
sums (:func:`jaxpot.electrostatics.pair._cluster_pair_sum`), periodic cells
Ewald/PME (:mod:`.coulomb`); QEq solvers are in :mod:`.qeq`, the Yukawa
term in :mod:`.yukawa`. The kind's ``[potential]`` keys are declared in
:data:`GAUSSIAN_ELECTROSTATICS_TABLE` (defaults from :data:`GE_DEFAULTS`),
its registry entry in :data:`GAUSSIAN_ELECTROSTATICS_KIND`.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Key, Table
from ..potentials.base import Potential, check_species, esum, pairs, safe_norm, species_index_table
from ..potentials.registry import KindSpec
from ..system import InputError, check_choice
from ..units import KE
from .coulomb import make_coulomb
from .ewald import _check_accuracy
from .pair import _cluster_pair_sum, _safe_sqrt, gaussian_kernel
from .qeq import cluster_coulomb_matrix, qeq_diagonal, solve_qeq, solve_qeq_cg
from .yukawa import YUKAWA_COMBINATIONS, combine_beta, yukawa_pair_energy

CHARGE_MODELS = ("fixed", "qeq")
GE_COULOMB_METHODS = ("auto", "direct", "ewald", "pme")
QEQ_SOLVERS = ("dense", "cg")
_GE_TABLES = ("charges", "widths", "electronegativity", "hardness", "yukawa_z", "yukawa_beta")
_QEQ_ONLY = ("electronegativity", "hardness", "qeq_solver", "cg_tol", "cg_maxiter")
_AUTO_PME_ATOMS = 1000       # coulomb = "auto": PME from this many atoms on

GE_DEFAULTS = dict(species=None, charge_model="fixed", charges=None, widths=None, electronegativity=None,
                   hardness=None, total_charge=0.0, yukawa_z=None, yukawa_beta=None,
                   yukawa_combination="arithmetic", cutoff=8.0, switch_width=1.0, coulomb="auto", accuracy=1e-5,
                   pme_order=5, neutralize=False, qeq_solver="dense", cg_tol=1e-10, cg_maxiter=1000)
"""Defaults of kind "gaussian_electrostatics" (None: absent, or set by the charge
model; see :func:`gaussian_electrostatics_from_config`)."""

GAUSSIAN_ELECTROSTATICS_TABLE = Table("[potential] kind = 'gaussian_electrostatics'", (
    Key("species", (list, tuple), GE_DEFAULTS["species"], "", "element symbols (auto: those the tables name)"),
    Key("charge_model", str, GE_DEFAULTS["charge_model"], "", "fixed charges or charge equilibration.",
        choices=CHARGE_MODELS),
    Key("charges", (dict, str), GE_DEFAULTS["charges"], "e",
        "fixed only, required: element -> charge, or \"input\" (the structure's per-atom charges)"),
    Key("widths", dict, GE_DEFAULTS["widths"], "A",
        "element -> Gaussian width (fixed: default 0, point charges; qeq: required, > 0)"),
    Key("electronegativity", dict, GE_DEFAULTS["electronegativity"], "eV/e", "qeq only, required: element -> chi"),
    Key("hardness", dict, GE_DEFAULTS["hardness"], "eV/e^2", "qeq only, required: element -> J (>= 0)"),
    Key("total_charge", float, GE_DEFAULTS["total_charge"], "e",
        "total charge (qeq constraint; fixed per-element charges are shifted to it when given)"),
    Key("yukawa_z", dict, GE_DEFAULTS["yukawa_z"], "e", "element -> Yukawa core charge Z (default 0: no term)"),
    Key("yukawa_beta", dict, GE_DEFAULTS["yukawa_beta"], "1/A",
        "element -> Yukawa screening beta > 0 (required when some Z != 0, else 1.0)"),
    Key("yukawa_combination", str, GE_DEFAULTS["yukawa_combination"], "", "how beta_A and beta_B combine.",
        choices=YUKAWA_COMBINATIONS),
    Key("cutoff", float, GE_DEFAULTS["cutoff"], "A", "Yukawa cutoff and Ewald/PME real-space cutoff"),
    Key("switch_width", float, GE_DEFAULTS["switch_width"], "A", "width of the Yukawa switch (<= cutoff)"),
    Key("coulomb", str, GE_DEFAULTS["coulomb"], "",
        "auto: direct for clusters, ewald for periodic cells below 1000 atoms, pme above.",
        choices=GE_COULOMB_METHODS),
    Key("accuracy", float, GE_DEFAULTS["accuracy"], "", "Ewald/PME relative accuracy"),
    Key("pme_order", int, GE_DEFAULTS["pme_order"], "", "PME B-spline order (3 to 12)"),
    Key("neutralize", bool, GE_DEFAULTS["neutralize"], "",
        "add a uniform neutralising background to charged periodic cells (else rejected)"),
    Key("qeq_solver", str, GE_DEFAULTS["qeq_solver"], "", "qeq only: dense solve or conjugate gradients.",
        choices=QEQ_SOLVERS),
    Key("cg_tol", float, GE_DEFAULTS["cg_tol"], "", "qeq only: relative residual of the cg solver"),
    Key("cg_maxiter", int, GE_DEFAULTS["cg_maxiter"], "", "qeq only: most cg iterations"),
), doc="Gaussian charges (fixed or charge-equilibrated) plus a Yukawa core-core repulsion.")
_GE_KEYS = ("kind",) + GAUSSIAN_ELECTROSTATICS_TABLE.names


def _ge_table(name, value, species, unit, check=None):
    if not isinstance(value, dict):
        raise InputError(f"gaussian_electrostatics '{name}' must be a table element -> value ({unit}), "
                         f"got {value!r}")
    extra = sorted(set(value) - set(species))
    if extra:
        raise InputError(f"gaussian_electrostatics '{name}' has element(s) {', '.join(map(str, extra))} "
                         f"not in species {species}")
    missing = [s for s in species if s not in value]
    if missing:
        raise InputError(f"gaussian_electrostatics '{name}' has no value for element(s) {', '.join(missing)} "
                         f"({unit})")
    out = []
    for s in species:
        v = value[s]
        if isinstance(v, bool):
            raise InputError(f"gaussian_electrostatics {name}.{s} must be a number ({unit}), got {v!r}")
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise InputError(f"gaussian_electrostatics {name}.{s} must be a number ({unit}), got {v!r}") from None
        if not math.isfinite(v):
            raise InputError(f"gaussian_electrostatics {name}.{s} must be finite ({unit}), got {v!r}")
        if check is not None:
            check(s, v)
        out.append(v)
    return np.asarray(out, np.float64)


def _ge_number(config, key, default, unit, *, positive=True):
    v = config.get(key, default)
    if isinstance(v, bool):
        raise InputError(f"gaussian_electrostatics {key} must be a number ({unit}), got {v!r}")
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InputError(f"gaussian_electrostatics {key} must be a number ({unit}), got {v!r}") from None
    if not math.isfinite(v) or (positive and v <= 0):
        raise InputError(f"gaussian_electrostatics {key} must be {'positive and ' if positive else ''}finite "
                         f"({unit}), got {v!r}")
    return v


def gaussian_electrostatics_from_config(config: dict, system, *, electronegativity_fn=None,
                                        electronegativity_init=None) -> Potential:
    """Potential kind "gaussian_electrostatics" (metal units): Gaussian-charge
    electrostatics with fixed or charge-equilibrated (QEq) charges, plus a
    screened (Yukawa) core-core repulsion.

    Energy (eV):
      E = E_coul + E_yuk                                  (charge_model "fixed")
      E = min_{sum q = Q} E_qeq(q) + E_yuk                (charge_model "qeq")
      E_coul = sum_{A<B} ke Q_A Q_B erf(r_AB/gamma_AB)/r_AB,
               gamma_AB = sqrt(w_A^2 + w_B^2)  (w = 0: point charge, exactly 1/r)
      E_yuk  = sum_{A<B} ke Z_A Z_B exp(-beta_AB r_AB)/r_AB S(r_AB)
      E_qeq  = sum_i [chi_i q_i + 1/2 J_i q_i^2 + ke q_i^2/(sqrt(2 pi) w_i)] + E_coul(q)
    with atom i's density q_i (pi w_i^2)^(-3/2) exp(-r^2/w_i^2) (so w = sqrt(2)
    sigma of Ghasemi et al., PRB 92, 045131 (2015) and Ko et al., Nat. Commun.
    12, 398 (2021), whose erf(r/(sqrt(2) gamma))/r and Q^2/(2 sigma sqrt(pi))
    are the same terms). In matrix form E_qeq = chi.q + 1/2 q^T A q with
    A_ii = J_i + ke sqrt(2/pi)/w_i (the Gaussian self-energy, i.e. the r -> 0
    limit of the pair kernel) and A_ij = ke erf(r_ij/gamma_ij)/r_ij; the
    reported energy is E_qeq at its constrained minimum, so forces need no
    dq/dr (variational), while autodiff through the solve still gives exact
    gradients of charges and forces w.r.t. chi, J and widths (training).
    Ko et al.'s 4G-HDNNP adds only the electrostatic part (E_coul plus the
    self-energy) to its short-range network; here the chi and J terms are
    kept, which is what makes the energy variational. For fixed charges the
    constant Gaussian self-energy is not included (infinite for point charges).
    S is the C2 quintic :func:`smooth_switch` from cutoff - switch_width to
    cutoff.

    Periodic systems (pbc in all three directions): E_coul by Ewald or PME
    with Gaussian charges (:class:`Coulomb`, its real-space kernel
    [erf(r/gamma) - erf(alpha r)]/r, self term -ke alpha/sqrt(pi) q^2), E_yuk
    over the neighbor list (all images within the cutoff). Non-neutral cells
    are an InputError at build time (NaN energy under jit) unless
    ``neutralize = true``, which adds the uniform neutralising background
    -ke pi Q^2/(2 V alpha^2) (Hub et al., JCTC 10, 381 (2014)). QEq in a
    periodic cell uses the exact Ewald/PME interaction matrix: its Hessian in
    the charges (``qeq_solver = "dense"``, O(N) energy evaluations: small
    cells) or its matrix-vector product = charge gradient of the energy
    (``qeq_solver = "cg"``, conjugate gradients, for large systems).
    Clusters: all pairs, dense (no neighbor list), in row blocks of 1024.

    Keys (per-element tables map element symbols to numbers):
      species            list of elements (default: the union of the tables' keys)
      charge_model       "fixed" (default) | "qeq"
      charges            fixed only, required: table (e) or "input" (per-atom
                         charges of the input structure, context.charges)
      widths             table (A), Gaussian widths w; default 0 (point charges)
                         for "fixed"; required and > 0 for "qeq"
      electronegativity  qeq only, required: table chi (eV/e)
      hardness           qeq only, required: table J (eV/e^2), >= 0 (then A is
                         positive definite: the Gaussian Coulomb matrix with
                         self-energies is)
      total_charge       Q (e). qeq: the constraint sum q = Q, default 0.0.
                         fixed (per-element table) only when given: each
                         structure's charges are shifted by the same amount
                         so that they sum to Q (the charge correction of
                         PhysNet, Unke & Meuwly, JCTC 15, 3678 (2019)); use
                         it when fitting per-element charges, which are
                         otherwise free to leave molecules charged
      qeq_solver         qeq only: "dense" (default) | "cg"; cg_tol (1e-10,
                         relative residual), cg_maxiter (1000)
      yukawa_z           table Z (e), default 0 for every element (no term)
      yukawa_beta        table beta (1/A) > 0, required when some Z != 0
                         (default 1.0 otherwise)
      yukawa_combination "arithmetic" (default, (beta_A + beta_B)/2) | "geometric"
      cutoff             A, default 8.0: Yukawa cutoff and Ewald/PME real-space cutoff
      switch_width       A, default 1.0 (0 < switch_width <= cutoff)
      coulomb            "auto" (default: "direct" for clusters, "ewald" for
                         periodic cells below 1000 atoms, "pme" above) |
                         "direct" | "ewald" | "pme"; system None resolves "auto"
                         to "direct"
      accuracy           Ewald/PME relative accuracy, default 1e-5 (sets alpha,
                         k-vectors and PME grid as OpenMM does)
      pme_order          B-spline order, default 5
      neutralize         false (default: reject charged periodic cells) | true

    Params (trainable, per element in ``species`` order): widths, yukawa_z,
    yukawa_beta, and charges (fixed, per-element table) or electronegativity
    and hardness (qeq). Padding atoms (atomic number 0) carry no charge and no
    energy. The ``charges`` callable returns the (equilibrated) charges, e.

    Environment-dependent electronegativities (the 4G-HDNNP design, Ko et al.
    2021), Python API only: ``electronegativity_fn(model_params, positions,
    context) -> (N,) eV/e`` is added to the per-element chi (e.g. atomic
    networks on local descriptors), its parameters come from
    ``electronegativity_init(key, system)`` and live in
    ``params["electronegativity_model"]``; autodiff through the solve trains
    them, and the energy stays variational in q (forces need no dq/dr; the
    chi(r) dependence is differentiated). A config cannot store the callable,
    so the composing model must rebuild it."""
    from ase.data import atomic_numbers

    name = "gaussian_electrostatics"
    if electronegativity_fn is not None and config.get("charge_model", GE_DEFAULTS["charge_model"]) != "qeq":
        raise InputError("gaussian_electrostatics: electronegativity_fn needs charge_model 'qeq'")
    config = dict(config)
    config.pop("kind", None)
    GAUSSIAN_ELECTROSTATICS_TABLE.check(config)
    model = config.get("charge_model", GE_DEFAULTS["charge_model"])
    check_choice("charge_model", model, CHARGE_MODELS)
    charges_cfg = config.get("charges")
    if model == "fixed":
        if charges_cfg is None:
            raise InputError("gaussian_electrostatics with charge_model 'fixed' needs 'charges' "
                             "(a table element -> e, or \"input\")")
        given = [k for k in _QEQ_ONLY if k in config]
        if given:
            raise InputError(f"gaussian_electrostatics: {', '.join(given)} only apply to charge_model 'qeq'")
    else:
        if charges_cfg is not None:
            raise InputError("gaussian_electrostatics: 'charges' cannot be given with charge_model 'qeq' "
                             "(the charges are equilibrated)")
        for k in ("electronegativity", "hardness", "widths"):
            if k not in config:
                raise InputError(f"gaussian_electrostatics with charge_model 'qeq' needs '{k}' "
                                 "(a per-element table)")
    input_charges = charges_cfg == "input"
    if isinstance(charges_cfg, str) and not input_charges:
        raise InputError(f"gaussian_electrostatics 'charges' must be a table element -> e or \"input\", "
                         f"got {charges_cfg!r}")

    # species: explicit, or every element named in a table, by atomic number
    if "species" in config:
        species = config["species"]
        if not isinstance(species, (list, tuple)) or not species:
            raise InputError("gaussian_electrostatics 'species' must be a non-empty list of element symbols")
        species = [str(s) for s in species]
    else:
        species = sorted({s for k in _GE_TABLES if isinstance(config.get(k), dict) for s in config[k]})
        if not species:
            raise InputError("gaussian_electrostatics needs per-element tables (e.g. widths) or a 'species' list")
    for s in species:
        if s not in atomic_numbers or atomic_numbers[s] == 0:
            raise InputError(f"gaussian_electrostatics: unknown element {s!r}")
    if len(set(species)) != len(species):
        raise InputError(f"gaussian_electrostatics 'species' lists an element twice: {species}")
    species = sorted(species, key=lambda s: atomic_numbers[s])
    n_el = len(species)

    def nonneg(what, unit):
        def check(s, v):
            if v < 0:
                raise InputError(f"gaussian_electrostatics {what}.{s} must be >= 0 ({unit}), got {v}")
        return check

    def positive(what, unit, why=""):
        def check(s, v):
            if v <= 0:
                raise InputError(f"gaussian_electrostatics {what}.{s} must be > 0 ({unit}){why}, got {v}")
        return check

    if model == "qeq":
        widths = _ge_table("widths", config["widths"], species, "A",
                           positive("widths", "A", " for charge equilibration (finite self-energy)"))
    elif "widths" in config:
        widths = _ge_table("widths", config["widths"], species, "A", nonneg("widths", "A"))
    else:
        widths = np.zeros(n_el)
    q_el = None
    if model == "fixed" and not input_charges:
        q_el = _ge_table("charges", charges_cfg, species, "e")
    chi = hard = None
    total_charge = 0.0
    fixed_total = None
    if model == "fixed" and "total_charge" in config:
        if input_charges:
            raise InputError("gaussian_electrostatics: total_charge does not apply to charges = \"input\"")
        fixed_total = _ge_number(config, "total_charge", GE_DEFAULTS["total_charge"], "e", positive=False)
    if model == "qeq":
        chi = _ge_table("electronegativity", config["electronegativity"], species, "eV/e")
        hard = _ge_table("hardness", config["hardness"], species, "eV/e^2", lambda s, v: None)
        bad = [s for s, v in zip(species, hard) if v < 0]
        if bad:
            raise InputError(f"gaussian_electrostatics hardness of {', '.join(bad)} is negative: the QEq "
                             "matrix can then be indefinite or singular (use hardness >= 0 eV/e^2)")
        total_charge = _ge_number(config, "total_charge", GE_DEFAULTS["total_charge"], "e", positive=False)
    if "yukawa_z" in config:
        yz = _ge_table("yukawa_z", config["yukawa_z"], species, "e")
    else:
        yz = np.zeros(n_el)
    use_yukawa = bool(np.any(yz != 0))
    if "yukawa_beta" in config:
        yb = _ge_table("yukawa_beta", config["yukawa_beta"], species, "1/A", positive("yukawa_beta", "1/A"))
    elif use_yukawa:
        raise InputError("gaussian_electrostatics: yukawa_z is given but yukawa_beta (1/A, per element) is not")
    else:
        yb = np.ones(n_el)
    rule = config.get("yukawa_combination", GE_DEFAULTS["yukawa_combination"])
    check_choice("yukawa_combination", rule, YUKAWA_COMBINATIONS)
    cutoff = _ge_number(config, "cutoff", GE_DEFAULTS["cutoff"], "A")
    switch_width = _ge_number(config, "switch_width", GE_DEFAULTS["switch_width"], "A")
    if switch_width > cutoff:
        raise InputError(f"gaussian_electrostatics switch_width ({switch_width} A) exceeds the cutoff ({cutoff} A)")
    accuracy = _ge_number(config, "accuracy", GE_DEFAULTS["accuracy"], "relative")
    _check_accuracy(accuracy)
    order = config.get("pme_order", GE_DEFAULTS["pme_order"])
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 3 <= int(order) <= 12:
        raise InputError(f"gaussian_electrostatics pme_order must be an integer from 3 to 12, got {order!r}")
    order = int(order)
    neutralize = config.get("neutralize", GE_DEFAULTS["neutralize"])
    if not isinstance(neutralize, bool):
        raise InputError(f"gaussian_electrostatics neutralize must be true or false, got {neutralize!r}")
    solver = config.get("qeq_solver", GE_DEFAULTS["qeq_solver"])
    check_choice("qeq_solver", solver, QEQ_SOLVERS)
    cg_tol = _ge_number(config, "cg_tol", GE_DEFAULTS["cg_tol"], "relative residual")
    cg_maxiter = config.get("cg_maxiter", GE_DEFAULTS["cg_maxiter"])
    if isinstance(cg_maxiter, bool) or not isinstance(cg_maxiter, (int, np.integer)) or cg_maxiter < 1:
        raise InputError(f"gaussian_electrostatics cg_maxiter must be a positive integer, got {cg_maxiter!r}")
    cg_maxiter = int(cg_maxiter)

    # geometry: cluster or fully periodic cell
    method = config.get("coulomb", GE_DEFAULTS["coulomb"])
    check_choice("coulomb method", method, GE_COULOMB_METHODS)
    periodic = False
    if system is not None:
        check_species(system, species, name)
        pbc = tuple(bool(p) for p in system.pbc)
        if any(pbc) and not all(pbc):
            raise InputError(f"gaussian_electrostatics needs pbc in all three directions or none, got {pbc}")
        periodic = all(pbc)
        if input_charges and system.charges is None:
            raise InputError("gaussian_electrostatics charges = \"input\" but the structure carries no "
                             "per-atom charges")
    if method == "auto":
        if periodic:
            method = "pme" if system.n_atoms >= _AUTO_PME_ATOMS else "ewald"
        else:
            method = "direct"
    if periodic and method == "direct":
        raise InputError("gaussian_electrostatics coulomb 'direct' ignores periodicity; "
                         "use 'ewald' or 'pme' for a periodic cell")
    if method in ("ewald", "pme") and not periodic:
        raise InputError(f"gaussian_electrostatics coulomb {method!r} needs a periodic structure "
                         "(pbc in all directions and a cell) at build time")
    coul = coul_bg = None
    if periodic:
        # net charge of the cell, known at build time for all charge models
        if input_charges:
            net = float(np.sum(np.asarray(system.charges, np.float64)))
            scale = float(np.sum(np.abs(np.asarray(system.charges, np.float64))))
        elif model == "fixed" and fixed_total is not None:
            net, scale = fixed_total, abs(fixed_total) + 1.0
        elif model == "fixed":
            per_atom = q_el[[species.index(s) for s in system.symbols]]
            net, scale = float(per_atom.sum()), float(np.abs(per_atom).sum())
        else:
            net, scale = total_charge, abs(total_charge)
        if abs(net) > 1e-5 * scale + 1e-8 and not neutralize:
            raise InputError(f"gaussian_electrostatics: the periodic cell carries a net charge of {net:.6g} e; "
                             "Ewald/PME need a neutral cell (or neutralize = true for a uniform "
                             "neutralising background)")
        cell = np.asarray(system.cell, np.float64)
        common = dict(cutoff=cutoff, accuracy=accuracy, order=order)
        coul = make_coulomb(method, cell, neutral="background" if neutralize else "reject", **common)
        coul_bg = make_coulomb(method, cell, neutral="background", **common)

    table = species_index_table(species)
    r_on = cutoff - switch_width

    def atoms(context):
        idx = table[context.species]
        real = idx >= 0

        def get(v):
            return jnp.where(real, v[jnp.maximum(idx, 0)], 0.0)
        return real, get

    def fixed_charges(params, positions, context):
        real, get = atoms(context)
        if input_charges:
            if context.charges is None:
                raise InputError("gaussian_electrostatics charges = \"input\" needs per-atom charges in the context")
            return jnp.where(real, jnp.asarray(context.charges, positions.dtype), 0.0)
        q = get(params["charges"]).astype(positions.dtype)
        if fixed_total is not None:
            n_real = jnp.maximum(jnp.sum(real), 1).astype(q.dtype)
            q = jnp.where(real, q - (jnp.sum(q) - fixed_total) / n_real, 0.0)
        return q

    def coulomb_energy(positions, context, q, w, real, coulomb=None):
        """E_coul (eV) of charges q (e) with widths w (A); no Gaussian self-energy."""
        if method == "direct":
            def pair(rows, r):
                gamma = _safe_sqrt(w[rows][:, None] ** 2 + w[None, :] ** 2)
                return KE * q[rows][:, None] * q[None, :] * gaussian_kernel(r, gamma)
            return _cluster_pair_sum(pair, positions, real)
        i, j, dr, mask = pairs(positions, context)
        ok = mask & real[i] & real[j]
        return (coulomb or coul).energy(positions, q, context.cell, i, j, dr, ok, widths=w)

    def yukawa_energy(params, positions, context, real, get):
        z = get(params["yukawa_z"]).astype(positions.dtype)
        beta = get(params["yukawa_beta"]).astype(positions.dtype)
        if method == "direct":
            def pair(rows, r):
                b = combine_beta(beta[rows][:, None], beta[None, :], rule)
                return yukawa_pair_energy(r, z[rows][:, None] * z[None, :], b, r_on, cutoff)
            return _cluster_pair_sum(pair, positions, real)
        i, j, dr, mask = pairs(positions, context)
        r = safe_norm(dr)
        ok = mask & real[i] & real[j] & (r < cutoff)
        r = jnp.where(ok, r, 1e3)
        e = yukawa_pair_energy(r, z[i] * z[j], combine_beta(beta[i], beta[j], rule), r_on, cutoff)
        return esum(jnp.where(ok, e, 0.0))

    def qeq(params, positions, context):
        """(charges e, E_qeq eV) at the constrained minimum."""
        real, get = atoms(context)
        w = jnp.where(real, get(params["widths"]), 1.0).astype(positions.dtype)
        chi_i = get(params["electronegativity"])
        if electronegativity_fn is not None:
            extra = electronegativity_fn(params["electronegativity_model"], positions, context)
            chi_i = chi_i + jnp.where(real, extra, 0.0)
        d = jnp.where(real, qeq_diagonal(get(params["hardness"]), w), 1.0)
        if method == "direct" and solver == "dense":
            a = cluster_coulomb_matrix(positions, w, real) + jnp.diag(d)
            q = solve_qeq(a, chi_i, total_charge, real)
            return q, esum(chi_i * q) + 0.5 * esum(q * (a @ q))

        def ecoul(qv):
            return coulomb_energy(positions, context, qv, w, real, coul_bg)

        if solver == "dense":
            n = positions.shape[0]
            a = jax.jacfwd(jax.grad(ecoul))(jnp.zeros(n, jnp.float64)) + jnp.diag(d)
            q = solve_qeq(a, chi_i, total_charge, real)
        else:
            def matvec(v):
                return jax.grad(ecoul)(v) + d * v
            q = solve_qeq_cg(matvec, d, chi_i, total_charge, real, tol=cg_tol, maxiter=cg_maxiter)
        e = esum(chi_i * q) + 0.5 * esum(d * q * q) + ecoul(q)
        return q, e

    def energy(params, positions, context):
        real, get = atoms(context)
        if model == "qeq":
            _, e = qeq(params, positions, context)
        else:
            q = fixed_charges(params, positions, context)
            w = get(params["widths"]).astype(positions.dtype)
            e = coulomb_energy(positions, context, q, w, real)
        if use_yukawa:
            e = e + yukawa_energy(params, positions, context, real, get)
        return e

    def charges(params, positions, context):
        if model == "qeq":
            return qeq(params, positions, context)[0]
        return fixed_charges(params, positions, context)

    init_params = {"widths": widths, "yukawa_z": yz, "yukawa_beta": yb}
    if q_el is not None:
        init_params["charges"] = q_el
    if model == "qeq":
        init_params["electronegativity"] = chi
        init_params["hardness"] = hard

    def init(key, system):
        out = {k: jnp.asarray(v) for k, v in init_params.items()}
        if electronegativity_fn is not None:
            out["electronegativity_model"] = (electronegativity_init(key, system)
                                              if electronegativity_init is not None else {})
        return out

    def el_table(v):
        return {s: float(x) for s, x in zip(species, v)}

    resolved = {"kind": name, "species": list(species), "charge_model": model,
                "widths": el_table(widths), "yukawa_z": el_table(yz), "yukawa_beta": el_table(yb),
                "yukawa_combination": rule, "cutoff": cutoff, "switch_width": switch_width,
                "coulomb": method, "accuracy": accuracy, "pme_order": order, "neutralize": neutralize}
    if model == "fixed":
        resolved["charges"] = "input" if input_charges else el_table(q_el)
        if fixed_total is not None:
            resolved["total_charge"] = fixed_total
    else:
        resolved.update(electronegativity=el_table(chi), hardness=el_table(hard), total_charge=total_charge,
                        qeq_solver=solver, cg_tol=cg_tol, cg_maxiter=cg_maxiter)
    return Potential(energy=energy, init=init, cutoff=0.0 if method == "direct" else cutoff, name=name,
                     charges=charges, config=resolved)


GAUSSIAN_ELECTROSTATICS_KIND = KindSpec(name="gaussian_electrostatics", factory=gaussian_electrostatics_from_config,
                                        table=GAUSSIAN_ELECTROSTATICS_TABLE, padded_batches=True,
                                        doc=GAUSSIAN_ELECTROSTATICS_TABLE.doc)
