"""Kernel functions, kernel ridge regression and Gaussian-process regression
(float64, Cholesky), with the GP log marginal likelihood maximised by optax
Adam.

Kernels (``sigma`` in the units of the standardised descriptor; each
feature is shifted and scaled to zero mean and unit variance over the
training set when ``standardize = true``):
  gaussian  k = exp(-|x-y|_2^2 / (2 sigma^2))   (sklearn rbf, gamma = 1/(2 sigma^2))
  laplacian k = exp(-|x-y|_1 / sigma)            (sklearn laplacian, gamma = 1/sigma);
            not differentiable at x = y, so forces jump: not for MD
  linear    k = x . y                            (ridge regression in dual form)

Regression: alpha = (s^2 K + lambda I)^-1 (E - E_offset) with lambda =
``regularization`` (eV^2 when read as the GP noise variance; with s^2 = 1
it is sklearn KernelRidge's ``alpha``). The same solve is the
Gaussian-process posterior mean (Rasmussen and Williams, Gaussian Processes
for Machine Learning (2006), eq. 2.25-2.26, algorithm 2.1);
:func:`optimize_gp_hyperparameters` maximises the log marginal likelihood
(ibid. eq. 2.30) over (log sigma, log s^2, log lambda) with Adam (Kingma and
Ba, ICLR 2015; ``optax.adam``).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..system import InputError


@partial(jax.jit, static_argnames=("kernel", "batch_size"))
def _distance_matrix(x, y, kernel: str, batch_size: int = 64):
    """Squared Euclidean (gaussian) or L1 (laplacian) distances, (n, m)."""
    x, y = jnp.asarray(x), jnp.asarray(y)

    def row(xi):
        d = y - xi
        return jnp.sum(d * d, axis=-1) if kernel == "gaussian" else jnp.sum(jnp.abs(d), axis=-1)

    return jax.lax.map(row, x, batch_size=batch_size)


def _kernel_from_distance(d, kernel: str, sigma):
    if kernel == "gaussian":
        return jnp.exp(-d / (2.0 * sigma ** 2))
    return jnp.exp(-d / sigma)


def kernel_matrix(x, y, kernel: str, sigma: float = 1.0, signal_variance: float = 1.0):
    """s^2 k(x_i, y_j), (n, m), for descriptor rows x (n, D) and y (m, D)."""
    if kernel == "linear":
        return signal_variance * jnp.asarray(x) @ jnp.asarray(y).T
    return signal_variance * _kernel_from_distance(_distance_matrix(x, y, kernel), kernel, sigma)


def _cholesky(k, regularization):
    n = k.shape[0]
    chol = jnp.linalg.cholesky(k + regularization * jnp.eye(n, dtype=k.dtype))
    if not bool(jnp.all(jnp.isfinite(chol))):
        raise InputError("kernel matrix is not positive definite: increase 'regularization'")
    return chol


def _cho_solve(chol, y):
    return jax.scipy.linalg.cho_solve((chol, True), y)


def krr_fit(k, y, regularization: float):
    """Kernel ridge regression weights alpha = (K + lambda I)^-1 y (Cholesky).

    Units: y in eV, lambda in the units of K (eV^2 for a GP kernel)."""
    return _cho_solve(_cholesky(jnp.asarray(k), regularization), jnp.asarray(y))


def ridge_fit(x, y, regularization: float):
    """Linear ridge regression without intercept, closed form (primal):
    w = (X^T X + lambda I)^-1 X^T y; predictions x . w (units of y)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    return _cho_solve(_cholesky(x.T @ x, regularization), x.T @ y)


def gp_predict(k_train, y, k_cross, k_diag, noise: float):
    """Gaussian-process posterior of the latent function at test points.

    k_train (n, n), k_cross (m, n) = k(test, train), k_diag (m,) = k(test,
    test) (eV^2), y (n,) eV, noise variance (eV^2). Returns (mean (m,) eV,
    variance (m,) eV^2)."""
    chol = _cholesky(jnp.asarray(k_train), noise)
    mean = jnp.asarray(k_cross) @ _cho_solve(chol, jnp.asarray(y))
    v = jax.scipy.linalg.solve_triangular(chol, jnp.asarray(k_cross).T, lower=True)
    return mean, jnp.maximum(jnp.asarray(k_diag) - jnp.sum(v * v, axis=0), 0.0)


def gp_log_marginal_likelihood(log_hypers, dist, y, kernel: str, gram=None):
    """log p(y | X, theta) = -y^T alpha / 2 - sum log L_ii - n log(2 pi) / 2.

    log_hypers = (log sigma, log s^2, log lambda); ``dist`` the (n, n)
    distance matrix of :func:`_distance_matrix` (or, for the linear kernel,
    ``gram`` = X X^T and ``dist`` unused). y in eV."""
    log_sigma, log_s2, log_noise = log_hypers[0], log_hypers[1], log_hypers[2]
    base = gram if kernel == "linear" else _kernel_from_distance(dist, kernel, jnp.exp(log_sigma))
    n = y.shape[0]
    chol = jnp.linalg.cholesky(jnp.exp(log_s2) * base + jnp.exp(log_noise) * jnp.eye(n, dtype=y.dtype))
    alpha = _cho_solve(chol, y)
    return (-0.5 * y @ alpha - jnp.sum(jnp.log(jnp.diagonal(chol)))
            - 0.5 * n * jnp.log(2.0 * jnp.pi))


def _adam(learning_rate):
    """Adam at a constant learning rate, optax's defaults (b1 = 0.9, b2 =
    0.999, eps = 1e-8 added to sqrt(v_hat), eps_root = 0)."""
    return optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0)


@partial(jax.jit, static_argnames=("kernel",))
def _lml_adam_step(h, state, dist, gram, y, kernel, learning_rate):
    """One Adam step on -log p(y)/n in (log sigma, log s^2, log lambda)."""
    neg = lambda hh: -gp_log_marginal_likelihood(hh, dist, y, kernel, gram) / y.shape[0]
    loss, g = jax.value_and_grad(neg)(h)
    # the linear kernel has no length scale: freeze it
    freeze = jnp.asarray([0.0 if kernel == "linear" else 1.0, 1.0, 1.0], dtype=h.dtype)
    g = jnp.where(jnp.isfinite(g), g, 0.0) * freeze
    upd, state = _adam(learning_rate).update(g, state, h)
    return optax.apply_updates(h, upd), state, loss


def optimize_gp_hyperparameters(x, y, kernel: str, sigma: float, signal_variance: float,
                                noise: float, steps: int = 200, learning_rate: float = 0.05):
    """Maximise the GP log marginal likelihood over (log sigma, log s^2,
    log noise) with optax Adam, from the given start (descriptor units,
    eV^2, eV^2). Returns ((sigma, signal_variance, noise), history of the
    log-likelihood); the best point seen is returned."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    dist = None if kernel == "linear" else _distance_matrix(x, x, kernel)
    gram = x @ x.T if kernel == "linear" else None
    h = jnp.log(jnp.asarray([sigma, signal_variance, noise], dtype=y.dtype))
    state = _adam(learning_rate).init(h)
    neg = lambda hh: -gp_log_marginal_likelihood(hh, dist, y, kernel, gram) / y.shape[0]

    def step(h, state):
        return _lml_adam_step(h, state, dist, gram, y, kernel, learning_rate)

    best, best_loss, history = h, np.inf, []
    for _ in range(int(steps)):
        h_new, state, loss = step(h, state)
        loss = float(loss)
        if np.isfinite(loss):
            history.append(-loss * y.shape[0])
            if loss < best_loss:
                best, best_loss = h, loss
        h = h_new
    final = float(neg(h))
    if np.isfinite(final):
        history.append(-final * y.shape[0])
        if final < best_loss:
            best = h
    vals = np.exp(np.asarray(best))
    return (float(vals[0]), float(vals[1]), float(vals[2])), np.asarray(history)


def median_distance(x, kernel: str, max_samples: int = 1000, seed: int = 0) -> float:
    """Median pairwise distance (L2 for gaussian, L1 for laplacian) of up to
    ``max_samples`` descriptor rows: the default kernel length scale."""
    x = np.asarray(x)
    if len(x) > max_samples:
        x = x[np.random.default_rng(seed).choice(len(x), max_samples, replace=False)]
    d = np.asarray(_distance_matrix(x, x, "laplacian" if kernel == "laplacian" else "gaussian"))
    d = d[np.triu_indices(len(x), k=1)]
    d = np.sqrt(d) if kernel != "laplacian" else d
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 1.0
