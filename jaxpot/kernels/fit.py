"""Fitting kernel models (``kind = "kernel"``) to reference energies, or
forces (gradient domain), and the energies of any potential for
Delta-learning baselines. Energies eV, forces eV/A, lengths A.

Gradient-domain fits: Chmiela et al., Sci. Adv. 3, e1603015 (2017) (GDML);
SOAP fits: GAP-style sparse GPR (:mod:`jaxpot.kernels.soap`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..assembly import prepare
from ..potentials.base import Context
from ..system import InputError, from_ase, species_from_symbols
from .featurize import compute_descriptors, descriptor_fn, pad_structures
from .potential import (DEFAULTS, FIT_DEFAULTS, _check_sizes, _check_system, _energy_fn, _pair_kernel,
                        _resolve, _toml_config)
from .regression import _cho_solve, _cholesky, kernel_matrix, krr_fit, median_distance, \
    optimize_gp_hyperparameters
from .soap import _fit_soap


def _fit_gradient_domain(cfg, x, mean, scale, pos, z, forces):
    """Directions w_k = J_k beta_k (n, D) of a gradient-domain fit (see
    :func:`fit_kernel`); forces a list of (N_k, 3) eV/A."""
    n, m = pos.shape[0], pos.shape[1]
    f = np.zeros((n, m, 3))
    for k, fk in enumerate(forces):
        fk = np.asarray(fk, dtype=np.float64)
        if fk.ndim != 2 or fk.shape[1] != 3 or not np.all(np.isfinite(fk)):
            raise InputError(f"forces of training structure {k} must be finite (N, 3) eV/A")
        nk = int(np.sum(z[k] > 0))
        if fk.shape[0] != nk:
            raise InputError(f"training structure {k} has {nk} atoms but {fk.shape[0]} force rows")
        f[k, :nk] = fk
    if len(forces) != n:
        raise InputError(f"kernel fit got {n} structures but {len(forces)} force arrays")
    d_fn = descriptor_fn(cfg)
    mean_j, scale_j = jnp.asarray(mean), jnp.asarray(scale)
    phi = lambda r, zz: (d_fn(r, zz) - mean_j) / scale_j
    jac = jax.jit(jax.vmap(jax.jacfwd(phi)))(jnp.asarray(pos), jnp.asarray(z))       # (n, D, m, 3)
    jac = jac.reshape(n, jac.shape[1], 3 * m)
    pair = _pair_kernel(cfg)
    kxx = jax.jacfwd(jax.grad(pair, argnums=0), argnums=1)                          # (D, D)
    xj = jnp.asarray(x)
    blocks = jax.jit(jax.vmap(lambda xl: jax.vmap(lambda xk: kxx(xl, xk))(xj)))(xj)  # (n, n, D, D)
    h = jnp.einsum("ldp,lkde,keq->lpkq", jac, blocks, jac).reshape(n * 3 * m, n * 3 * m)
    real = np.repeat(z > 0, 3, axis=1).reshape(-1)
    sel = np.flatnonzero(real)
    hs = h[np.ix_(sel, sel)]
    beta = np.zeros(n * 3 * m)
    beta[sel] = -np.asarray(krr_fit(hs, jnp.asarray(f.reshape(-1)[sel]), cfg["regularization"]))
    return jnp.einsum("kdp,kp->kd", jac, jnp.asarray(beta.reshape(n, 3 * m)))


def potential_energies(config: dict, atoms_list):
    """Energies (eV) of any jaxpot potential configuration for a list of
    ase.Atoms (the Delta-learning baseline); one build per composition."""
    cache, out, resolved = {}, [], None
    for at in atoms_list:
        system = from_ase(at)
        key = (tuple(at.numbers), tuple(at.pbc), tuple(np.round(at.cell.array, 8).ravel()))
        if key not in cache:
            prep = prepare(dict(config), system, skin=0.0, layout="pairs", cast=False, allocate=False)
            pot, params, nbr = prep.potential, prep.params, prep.neighbor_fns
            cache[key] = (pot, params, nbr, jax.jit(pot.energy))
            resolved = resolved or pot.config
        pot, params, nbr, efn = cache[key]
        pos = jnp.asarray(at.get_positions())
        nl = nbr.allocate(pos, system.cell) if nbr is not None else None
        ctx = Context(species=system.species, cell=system.cell, neighbors=nl, charges=system.charges)
        out.append(float(efn(params, pos, ctx)))
    return np.asarray(out), resolved, cache


def fit_kernel(config: dict, atoms_list, energies, forces=None):
    """Fit a kernel model to reference energies; returns
    ``(potential_config, params)`` ready for
    :func:`jaxpot.potentials.saved.save_model`.

    ``config``: the ``[model]`` table (``kind = "kernel"`` optional): the
    potential keys of :data:`DEFAULTS` (``sigma`` defaults to the median
    pairwise descriptor distance, L2 for gaussian and L1 for laplacian, 1.0
    for linear; ``species``, ``max_atoms`` and ``max_counts`` default to the
    training set's; ``signal_variance`` defaults to 1 eV^2, or with ``gpr``
    to the variance of the fitted energies) plus the fit keys of
    :data:`FIT_DEFAULTS`: ``optimize_hyperparameters`` (maximise the GP
    log marginal likelihood, for any regressor), ``hyperparameter_steps``,
    ``hyperparameter_learning_rate``, and ``baseline``, a ``[potential]``
    table: the kernel model then fits E_ref - E_baseline and the returned
    configuration is ``{kind = "sum", terms = [baseline, kernel]}`` with
    params (baseline params, kernel params).

    ``atoms_list``: ase.Atoms (finite, non-periodic); ``energies`` (eV);
    ``forces``: list of (N_k, 3) eV/A, used only with ``gradient_domain =
    true``, which fits the forces instead of the energies (Chmiela et al.,
    Sci. Adv. 3, e1603015 (2017), GDML, without its permutational
    symmetrisation: the global descriptors are already invariant). The model
    E(r) = sum_k beta_k . grad_{r'} k(x(r), x(r'))|_{r'=r_k} has forces
    F(r_l) = -sum_k H(r_l, r_k) beta_k with the Hessian kernel H = grad_r
    grad_{r'}^T k, built here by autodiff (descriptor Jacobians and
    jacfwd(grad) of the kernel); beta = -(H + lambda I)^-1 F over the real
    atoms' coordinates ((n 3N)^2 memory: small molecules). The energy offset
    is then fitted to E_ref - E_kernel. Energy-domain fits ignore forces."""
    allowed = set(DEFAULTS) | set(FIT_DEFAULTS)
    if not isinstance(config, dict):
        raise InputError("kernel fit configuration must be a table")
    if config.get("kind", "kernel") != "kernel":
        raise InputError(f"fit_kernel fits kind 'kernel', got {config.get('kind')!r}")
    cfg = _resolve(config, allowed)
    fit = {**FIT_DEFAULTS, **{k: v for k, v in config.items() if k in FIT_DEFAULTS}}
    if not isinstance(fit["optimize_hyperparameters"], bool):
        raise InputError("kernel 'optimize_hyperparameters' must be true or false")
    if cfg["gradient_domain"]:
        if forces is None:
            raise InputError("kernel gradient_domain = true needs reference forces")
        if fit["baseline"] is not None or fit["optimize_hyperparameters"]:
            raise InputError("kernel gradient_domain = true does not support 'baseline' or "
                             "'optimize_hyperparameters' yet")
    atoms_list = list(atoms_list)
    y_ref = np.asarray(energies, dtype=np.float64).reshape(-1)
    if len(atoms_list) == 0:
        raise InputError("kernel fit needs at least one training structure")
    if len(y_ref) != len(atoms_list):
        raise InputError(f"kernel fit got {len(atoms_list)} structures but {len(y_ref)} energies")
    if not np.all(np.isfinite(y_ref)):
        raise InputError("kernel fit got non-finite reference energies")
    for k, at in enumerate(atoms_list):
        if any(at.pbc):
            raise InputError(f"training structure {k} is periodic: kernel descriptors are for "
                             "finite molecules and clusters only")

    # defaults from the training set
    symbols = sorted({s for at in atoms_list for s in at.get_chemical_symbols()},
                     key=lambda s: species_from_symbols([s])[0])
    if cfg["species"] is None:
        cfg["species"] = symbols
    if cfg["max_atoms"] is None:
        cfg["max_atoms"] = max(len(at) for at in atoms_list)
    if cfg["descriptor"] == "bag_of_bonds" and cfg["max_counts"] is None:
        cfg["max_counts"] = {s: max(at.get_chemical_symbols().count(s) for at in atoms_list)
                             for s in cfg["species"]}
    cfg["n_train"] = len(atoms_list)
    cfg["sigma"] = cfg["sigma"] if cfg["sigma"] is not None else 1.0   # placeholder until data is seen
    cfg = _check_sizes(cfg)
    sigma_given = "sigma" in config and config["sigma"] is not None
    for k, at in enumerate(atoms_list):
        try:
            _check_system(cfg, from_ase(at))
        except InputError as err:
            raise InputError(f"training structure {k}: {err}") from None

    # Delta-learning: fit the residual of the baseline
    base_cfg, base_params = None, None
    y = y_ref.copy()
    if fit["baseline"] is not None:
        if not isinstance(fit["baseline"], dict):
            raise InputError("kernel 'baseline' must be a [potential] table")
        e_base, base_cfg, cache = potential_energies(fit["baseline"], atoms_list)
        base_params = next(iter(cache.values()))[1]
        y = y - e_base

    # energy offset
    species = cfg["species"]
    comp = np.asarray([[at.get_chemical_symbols().count(s) for s in species] for at in atoms_list], float)
    if cfg["offset"] == "per_element":
        e_el = np.linalg.lstsq(comp, y, rcond=None)[0]
        shift = 0.0
    else:
        e_el, shift = np.zeros(len(species)), float(np.mean(y))
    resid = y - comp @ e_el - shift

    # descriptors
    pos, z = pad_structures(atoms_list, cfg["max_atoms"])
    if cfg["descriptor"] == "soap":
        if fit["optimize_hyperparameters"]:
            raise InputError("kernel descriptor 'soap' does not support optimize_hyperparameters yet")
        pieces, cfg["n_sparse"] = _fit_soap(cfg, pos, z, resid)
        params = {**pieces, "element_energies": jnp.asarray(e_el), "energy_shift": jnp.asarray(shift)}
        pot_cfg = _toml_config(cfg)
        if base_cfg is not None:
            return {"kind": "sum", "terms": [base_cfg, pot_cfg]}, (base_params, params)
        return pot_cfg, params
    d = compute_descriptors(cfg, pos, z)
    if cfg["standardize"]:
        mean, scale = d.mean(axis=0), d.std(axis=0)
        scale = np.where(scale > 1e-12 * max(1.0, float(np.abs(d).max())), scale, 1.0)
    else:
        mean, scale = np.zeros(d.shape[1]), np.ones(d.shape[1])
    x = (d - mean) / scale
    if not sigma_given:
        cfg["sigma"] = 1.0 if cfg["kernel"] == "linear" else median_distance(x, cfg["kernel"])
    if cfg["gpr"] and "signal_variance" not in config:
        cfg["signal_variance"] = float(max(np.var(resid), 1e-12))
    if cfg["gradient_domain"]:
        directions = _fit_gradient_domain(cfg, x, mean, scale, pos, z, forces)
        params = {"descriptors": jnp.asarray(x), "directions": directions, "mean": jnp.asarray(mean),
                  "scale": jnp.asarray(scale), "element_energies": jnp.zeros(len(species)),
                  "energy_shift": jnp.zeros(())}
        e_kernel = np.asarray(jax.jit(jax.vmap(_energy_fn(cfg), in_axes=(None, 0, 0)))(
            params, jnp.asarray(pos), jnp.asarray(z)))
        r = y - e_kernel
        if cfg["offset"] == "per_element":
            params["element_energies"] = jnp.asarray(np.linalg.lstsq(comp, r, rcond=None)[0])
        else:
            params["energy_shift"] = jnp.asarray(float(np.mean(r)))
        return _toml_config(cfg), params
    if fit["optimize_hyperparameters"]:
        (cfg["sigma"], cfg["signal_variance"], cfg["regularization"]), _ = optimize_gp_hyperparameters(
            x, resid, cfg["kernel"], cfg["sigma"], cfg["signal_variance"], cfg["regularization"],
            steps=int(fit["hyperparameter_steps"]),
            learning_rate=float(fit["hyperparameter_learning_rate"]))

    k = kernel_matrix(x, x, cfg["kernel"], cfg["sigma"], cfg["signal_variance"])
    chol = _cholesky(k, cfg["regularization"])
    alpha = _cho_solve(chol, jnp.asarray(resid))
    params = {"descriptors": jnp.asarray(x), "alpha": alpha, "mean": jnp.asarray(mean),
              "scale": jnp.asarray(scale), "element_energies": jnp.asarray(e_el),
              "energy_shift": jnp.asarray(shift)}
    if cfg["gpr"]:
        params["cholesky"] = chol
    pot_cfg = _toml_config(cfg)
    if base_cfg is not None:
        return {"kind": "sum", "terms": [base_cfg, pot_cfg]}, (base_params, params)
    return pot_cfg, params
