"""The potential kind ``kind = "kernel"``: kernel methods on global
descriptors (configuration, parameters, energy, prediction).

A kernel model predicts the energy of a finite molecule or cluster (eV) as

    E(r) = E_offset(Z) + sum_k alpha_k  s^2 k(x(r), x_k),    x = (d(r) - mean) / scale

where d is a global descriptor of the positions r (A) and atomic numbers Z
(:mod:`jaxpot.kernels.descriptors`, :mod:`jaxpot.kernels.soap`), x_k are
the (standardised) descriptors of the training structures, alpha_k the
regression weights (eV / s^2), s^2 the signal variance and k a kernel
(:mod:`jaxpot.kernels.regression`). Forces are -dE/dr by autodiff through
the kernel and the descriptor (no hand-written derivatives), so the model
runs MD like any other potential. With ``gpr = true`` the Cholesky factor
of s^2 K + lambda I is kept in the params for predictive variances.
``gradient_domain = true`` models fit forces instead of energies (GDML-style,
see :func:`jaxpot.kernels.fit.fit_kernel`): small molecules only,
(n_train 3N)^2 memory.

Precision: the kernel sum cancels large terms (|alpha_k| up to ~1e4-1e5 eV
at small ``regularization``), so run kernel models in float64 (jaxpot's
default), not with ``[md] dtype = "float32"``.

Energy offset (``offset``): ``"per_element"`` (default) fits element
energies e_Z by least squares to the training energies (minimum-norm
solution, so a training set of one composition gets its mean energy spread
over the elements); ``"mean"`` uses one constant (the mean training energy).
The kernel part fits what is left.

Periodic cells are refused (InputError): these global descriptors are
defined for finite molecules and clusters only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..config import Key, Table
from ..potentials.base import Potential, check_species, species_index_table
from ..potentials.registry import check_keys
from ..system import InputError, check_choice, positive_number, species_from_symbols
from .descriptors import _pad
from .featurize import compute_descriptors, descriptor_fn, descriptor_size, pad_structures
from .regression import kernel_matrix
from .soap import _soap_local_energy

DESCRIPTORS = ("coulomb_eigen", "coulomb_sorted", "bag_of_bonds", "overlap", "soap")
KERNELS = ("gaussian", "laplacian", "linear", "polynomial")
OFFSETS = ("per_element", "mean")

_FIT_ONLY = "fit only: "
TABLE = Table("[potential] kind = 'kernel'", (
    Key("descriptor", str, "coulomb_eigen", choices=DESCRIPTORS, doc="global descriptor of a structure."),
    Key("kernel", str, "gaussian", choices=KERNELS, doc="kernel function (soap: polynomial)."),
    Key("sigma", float, None, "descriptor units", "kernel length scale (auto: median descriptor distance)"),
    Key("regularization", float, 1e-8, "eV^2", "lambda: KRR ridge / GP noise variance"),
    Key("signal_variance", float, 1.0, "eV^2", "kernel prefactor s^2"),
    Key("species", list, None, doc="element symbols (auto: the data's)"),
    Key("max_atoms", int, None, doc="descriptor padding size (auto: the data's)"),
    Key("max_counts", dict, None, doc="bag_of_bonds: largest count per element (auto: the data's)"),
    Key("orbitals", str, "s", choices=("s", "sp"), doc="overlap descriptor orbitals."),
    Key("standardize", bool, True, doc="scale descriptor features to zero mean, unit variance"),
    Key("offset", str, "per_element", choices=OFFSETS, doc="energy offset: per-element energies or the mean."),
    Key("gpr", bool, False, doc="keep the Cholesky factor for predictive variances"),
    Key("gradient_domain", bool, False, doc="fit forces with the Hessian kernel (small molecules)"),
    # soap (local, GAP-style sparse GPR); ignored by the global descriptors
    Key("cutoff", float, 4.0, "A", "soap: cutoff"),
    Key("n_max", int, 6, doc="soap: radial Gaussians"),
    Key("l_max", int, 4, doc="soap: Legendre order"),
    Key("zeta", int, 2, doc="soap: kernel exponent (p_i . p_m)^zeta on normalised power spectra"),
    Key("n_sparse", int, None, doc="soap: sparse (representative) atomic environments (set by the fit)"),
    Key("n_train", int, None, doc="number of training structures (set by the fit)"),
    # keys only fit_kernel understands (they shape the fit, not the potential)
    Key("optimize_hyperparameters", bool, False, doc=_FIT_ONLY + "maximise the GP log marginal likelihood"),
    Key("hyperparameter_steps", int, 200, doc=_FIT_ONLY + "Adam steps of the hyperparameter search"),
    Key("hyperparameter_learning_rate", float, 0.05, doc=_FIT_ONLY + "learning rate of that search"),
    Key("baseline", dict, None, doc=_FIT_ONLY + "a [potential] table; the kernel fits E_ref - E_baseline "
                                                "(Delta-learning)"),
), doc="kernel regression on global descriptors")
FIT_DEFAULTS = {k.name: k.default for k in TABLE.keys if k.doc.startswith(_FIT_ONLY)}
"""keys only :func:`jaxpot.kernels.fit.fit_kernel` understands, with defaults (declared in :data:`TABLE`)."""
DEFAULTS = {k.name: k.default for k in TABLE.keys if k.name not in FIT_DEFAULTS}
"""keys of the potential configuration, with defaults (None: required or set by fit_kernel; declared in
:data:`TABLE`)."""


def _resolve(config: dict, allowed) -> dict:
    check_keys("kernel", TABLE, config, inapplicable={
        k: "applies to fitting only (jaxpot train [model], fit_kernel), not to a fitted kernel potential"
        for k in FIT_DEFAULTS if k not in allowed})
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
    check_choice("kernel descriptor", cfg["descriptor"], DESCRIPTORS)
    check_choice("kernel", cfg["kernel"], KERNELS)
    check_choice("kernel offset", cfg["offset"], OFFSETS)
    check_choice("overlap orbitals", cfg["orbitals"], ("s", "sp"))
    for key in ("standardize", "gpr", "gradient_domain"):
        if not isinstance(cfg[key], bool):
            raise InputError(f"kernel '{key}' must be true or false, got {cfg[key]!r}")
    cfg["regularization"] = positive_number("kernel regularization", cfg["regularization"], "eV^2")
    cfg["signal_variance"] = positive_number("kernel signal_variance", cfg["signal_variance"], "eV^2")
    if cfg["sigma"] is not None:
        cfg["sigma"] = positive_number("kernel sigma", cfg["sigma"], "descriptor units")
    if cfg["descriptor"] == "soap":
        if "kernel" not in config:
            cfg["kernel"] = "polynomial"
        if cfg["kernel"] != "polynomial" or cfg["gpr"] or cfg["gradient_domain"]:
            raise InputError("kernel descriptor 'soap' uses kernel = 'polynomial' ((p.q)^zeta, GAP-style "
                             "sparse GPR) without gpr or gradient_domain")
        cfg["cutoff"] = positive_number("kernel soap cutoff", cfg["cutoff"], "A")
        for key, lo in (("n_max", 2), ("l_max", 0), ("zeta", 1)):
            v = cfg[key]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise InputError(f"kernel soap {key!r} must be an integer >= {lo}, got {v!r}")
            cfg[key] = int(v)
        if cfg["n_sparse"] is not None and (isinstance(cfg["n_sparse"], bool) or not isinstance(
                cfg["n_sparse"], (int, np.integer)) or cfg["n_sparse"] < 1):
            raise InputError(f"kernel 'n_sparse' must be a positive integer, got {cfg['n_sparse']!r}")
    elif cfg["kernel"] == "polynomial":
        raise InputError("kernel = 'polynomial' is for descriptor = 'soap'")
    if cfg["gradient_domain"] and (cfg["gpr"] or cfg["kernel"] == "laplacian"):
        raise InputError("kernel gradient_domain = true needs a differentiable kernel (gaussian or "
                         "linear) and gpr = false")
    return cfg


def _check_sizes(cfg):
    for key in ("species", "max_atoms", "n_train", "sigma"):
        if cfg[key] is None:
            raise InputError(f"potential kind 'kernel' needs {key!r} (written by fit_kernel into model.toml)")
    sp = cfg["species"]
    if not isinstance(sp, (list, tuple)) or not sp:
        raise InputError("kernel 'species' must be a non-empty list of element symbols")
    cfg["species"] = [str(s) for s in sp]
    species_from_symbols(cfg["species"])
    for key in ("max_atoms", "n_train"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"kernel {key!r} must be a positive integer, got {v!r}")
        cfg[key] = int(v)
    if cfg["descriptor"] == "bag_of_bonds":
        mc = cfg["max_counts"]
        if not isinstance(mc, dict) or set(mc) != set(cfg["species"]):
            raise InputError("kernel descriptor 'bag_of_bonds' needs 'max_counts', a table with a "
                             "maximum atom count for every element of 'species'")
        for s, v in mc.items():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= cfg["max_atoms"]:
                raise InputError(f"kernel max_counts[{s!r}] must be an integer in [0, max_atoms], got {v!r}")
        cfg["max_counts"] = {s: int(mc[s]) for s in cfg["species"]}
    else:
        cfg["max_counts"] = None
    return cfg


_SOAP_KEYS = ("cutoff", "n_max", "l_max", "zeta", "n_sparse")


def _toml_config(cfg):
    """TOML cannot store None: drop unset optional keys (and the SOAP keys
    of global-descriptor models, whose defaults rebuild them)."""
    drop = () if cfg["descriptor"] == "soap" else _SOAP_KEYS
    return {"kind": "kernel", **{k: v for k, v in cfg.items() if v is not None and k not in drop}}


def _check_system(cfg, system):
    if system is None:
        return
    if system.periodic:
        raise InputError("potential kind 'kernel' is for finite molecules and clusters: its global "
                         "descriptors are undefined in a periodic cell")
    check_species(system, cfg["species"], "kernel")
    if system.n_atoms > cfg["max_atoms"]:
        raise InputError(f"kernel model was built for at most {cfg['max_atoms']} atoms, "
                         f"the system has {system.n_atoms}")
    if cfg["descriptor"] == "bag_of_bonds":
        sym = system.symbols
        for s in cfg["species"]:
            if sym.count(s) > cfg["max_counts"][s]:
                raise InputError(f"kernel bag_of_bonds model holds at most {cfg['max_counts'][s]} "
                                 f"{s} atoms, the system has {sym.count(s)}")


def _template(cfg):
    n, d, ns = cfg["n_train"], descriptor_size(cfg), len(cfg["species"])
    if cfg["descriptor"] == "soap":
        if cfg["n_sparse"] is None:
            raise InputError("potential kind 'kernel' with descriptor 'soap' needs 'n_sparse'")
        m = cfg["n_sparse"]
        return {"sparse": jnp.zeros((m, d)), "sparse_species": jnp.zeros((m,), jnp.int32),
                "alpha": jnp.zeros((m,)), "element_energies": jnp.zeros((ns,)),
                "energy_shift": jnp.zeros(())}
    p = {"descriptors": jnp.zeros((n, d)),
         **({"directions": jnp.zeros((n, d))} if cfg["gradient_domain"] else {"alpha": jnp.zeros((n,))}),
         "mean": jnp.zeros((d,)), "scale": jnp.ones((d,)),
         "element_energies": jnp.zeros((ns,)), "energy_shift": jnp.zeros(())}
    if cfg["gpr"]:
        p["cholesky"] = jnp.zeros((n, n))
    return p


def _kernel_vector(cfg, params, x):
    """s^2 k(x, x_k) for one standardised descriptor x (D,) -> (n_train,)."""
    xt = params["descriptors"]
    if cfg["kernel"] == "linear":
        k = xt @ x
    else:
        diff = xt - x
        if cfg["kernel"] == "gaussian":
            k = jnp.exp(-jnp.sum(diff * diff, axis=-1) / (2.0 * cfg["sigma"] ** 2))
        else:
            k = jnp.exp(-jnp.sum(jnp.abs(diff), axis=-1) / cfg["sigma"])
    return cfg["signal_variance"] * k


def _pair_kernel(cfg):
    """s^2 k(x, x') for two standardised descriptors (gaussian or linear)."""
    s2, sigma = cfg["signal_variance"], cfg["sigma"]
    if cfg["kernel"] == "linear":
        return lambda x, xp: s2 * (x @ xp)
    return lambda x, xp: s2 * jnp.exp(-jnp.sum((x - xp) ** 2) / (2.0 * sigma ** 2))


def _energy_fn(cfg):
    """``(params, positions (N,3) A, species (N,)) -> eV`` of a resolved config.

    Energy-domain models: offset + sum_k alpha_k s^2 k(x, x_k).
    Gradient-domain models: offset + sum_k d/de s^2 k(x, x_k + e w_k)|_{e=0},
    the derivative of the kernel along w_k = J_k beta_k (J_k the descriptor
    Jacobian at training structure k), i.e. sum_k beta_k . grad_{r'} k(x(r),
    x(r'))|_{r'=r_k}; both derivatives by autodiff (jvp)."""
    d_fn = descriptor_fn(cfg)
    table = species_index_table(cfg["species"])
    pair = _pair_kernel(cfg) if cfg["gradient_domain"] else None
    soap = cfg["descriptor"] == "soap"

    def energy(params, positions, species):
        idx = table[species]
        e0 = jnp.sum(jnp.where(idx >= 0, params["element_energies"][jnp.maximum(idx, 0)], 0.0))
        if soap:
            z = _pad(positions, species, int(cfg["max_atoms"]))[1]
            return e0 + params["energy_shift"] + _soap_local_energy(cfg, params, d_fn(positions, species), z)
        x = (d_fn(positions, species) - params["mean"]) / params["scale"]
        if pair is None:
            e = _kernel_vector(cfg, params, x) @ params["alpha"]
        else:
            def term(xk, wk):
                return jax.jvp(lambda xp: pair(x, xp), (xk,), (wk,))[1]
            e = jnp.sum(jax.vmap(term)(params["descriptors"], params["directions"]))
        return e0 + params["energy_shift"] + e

    return energy


def kernel_from_config(config: dict, system) -> Potential:
    """``kind = "kernel"``: a trained kernel model (energies eV, positions A).

    Keys (defaults in :data:`DEFAULTS`): descriptor, kernel, sigma,
    regularization (eV^2), signal_variance (eV^2), species, max_atoms,
    max_counts (bag_of_bonds), orbitals (overlap), standardize, offset, gpr,
    gradient_domain, n_train, and for soap cutoff (A), n_max, l_max, zeta,
    n_sparse. :func:`fit_kernel` writes them all; ``init`` returns an
    all-zero template of the parameters (descriptors (n_train, D), alpha
    (n_train,) eV/s^2, mean and scale (D,), element_energies (n_species,) eV,
    energy_shift eV, and with gpr the (n_train, n_train) Cholesky factor of
    s^2 K + lambda I; gradient-domain models hold directions (n_train, D)
    instead of alpha; soap models hold sparse (n_sparse, P), sparse_species
    and alpha (n_sparse,) with no mean/scale), filled from params.msgpack by
    ``kind = "model"``."""
    cfg = _check_sizes(_resolve(config, DEFAULTS))
    _check_system(cfg, system)
    efn = _energy_fn(cfg)

    def init(key, system_):
        return _template(cfg)

    def energy(params, positions, context):
        return efn(params, positions, context.species)

    return Potential(energy=energy, init=init, cutoff=0.0, name="kernel", config=_toml_config(cfg))


def kernel_predict(config: dict, params, atoms_list, *, variance: bool = False, batch_size: int = 256):
    """Energies (B,) eV of a kernel model for a list of ase.Atoms, and with
    ``variance=True`` (gpr models) also the GP latent variances (B,) eV^2.
    ``config`` is the kernel potential configuration (not a sum)."""
    cfg = _check_sizes(_resolve(config, DEFAULTS))
    pos, z = pad_structures(atoms_list, cfg["max_atoms"])
    if cfg["gradient_domain"] or cfg["descriptor"] == "soap":
        if variance:
            raise InputError("predictive variances need a model fitted with gpr = true")
        efn = jax.jit(jax.vmap(_energy_fn(cfg), in_axes=(None, 0, 0)))
        return np.concatenate([np.asarray(efn(params, jnp.asarray(pos[i:i + batch_size]),
                                                  jnp.asarray(z[i:i + batch_size])))
                               for i in range(0, len(pos), batch_size)])
    x = (compute_descriptors(cfg, pos, z, batch_size) - np.asarray(params["mean"])) / np.asarray(params["scale"])
    xt = np.asarray(params["descriptors"])
    k = np.asarray(kernel_matrix(x, xt, cfg["kernel"], cfg["sigma"], cfg["signal_variance"]))
    table = np.asarray(species_index_table(cfg["species"]))
    idx = table[z]
    ee = np.asarray(params["element_energies"])
    e0 = np.where(idx >= 0, ee[np.maximum(idx, 0)], 0.0).sum(axis=1) + float(params["energy_shift"])
    e = e0 + k @ np.asarray(params["alpha"])
    if not variance:
        return e
    if "cholesky" not in params:
        raise InputError("predictive variances need a model fitted with gpr = true")
    if cfg["kernel"] == "linear":
        kdiag = cfg["signal_variance"] * np.sum(x * x, axis=1)
    else:
        kdiag = np.full(len(x), cfg["signal_variance"])
    v = jax.scipy.linalg.solve_triangular(jnp.asarray(params["cholesky"]), jnp.asarray(k).T, lower=True)
    return e, np.maximum(kdiag - np.asarray(jnp.sum(v * v, axis=0)), 0.0)
