"""Atom-centred symmetry functions (ACSF) of the Behler-Parrinello kind:
the parameter sets (n2p2's generation rules), the cosine cutoff and the
descriptor of one resolved configuration (radial G2, angular G4/G5 over
static per-atom triplet rows).

J. Behler and M. Parrinello, PRL 98, 146401 (2007); J. Behler, JCP 134,
074106 (2011); parameter sets: Gastegger et al., JCP 148, 241709 (2018).
The formulas, the triplet layout and the overflow rule are in the module
docstring of :mod:`jaxpot.ml.behler_parrinello`. Units: lengths A, eta
1/A^2, features dimensionless.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..potentials.base import Context, pairs, safe_norm, species_index_table
from ..system import InputError, check_choice

GRIDS = ("shifted", "centred")
# atoms per block of the angular sum for atom_block = "auto": on CPU small
# blocks stay in cache (2.3x less CPU time than one block for 96 water atoms,
# 6 A cutoff, measured); on GPUs large blocks only bound the memory
AUTO_ATOM_BLOCK = {"cpu": 4, "accelerator": 512}


# ---------------------------------------------------------------------------
# parameter sets
# ---------------------------------------------------------------------------

def radial_grid(n: int, r_min: float, r_max: float, grid: str):
    """(eta (n,) 1/A^2, r_s (n,) A) of n2p2's generation rules (module
    docstring): "shifted" Gaussians of equal width on the grid, or
    "centred" Gaussians of widths r_k at r = 0."""
    check_choice("symmetry-function grid", grid, GRIDS)
    if n < 1 or (grid == "shifted" and n < 2):
        raise InputError(f"a {grid} symmetry-function grid needs at least {2 if grid == 'shifted' else 1} points, got {n}")
    r = np.linspace(r_min, r_max, n)
    if grid == "shifted":
        dr = (r_max - r_min) / (n - 1)
        return np.full(n, 1.0 / (2.0 * dr * dr)), r
    return 1.0 / (2.0 * r * r), np.zeros(n)


def symmetry_function_parameters(config: dict):
    """Explicit parameter arrays of a resolved config: (radial: dict of
    (P_r,) arrays eta, r_s; angular: dict of (P_a,) arrays eta, zeta,
    lambda, r_s, is_g4)."""
    if isinstance(config["radial"], list):
        eta = np.asarray([e["eta"] for e in config["radial"]], float)
        rs = np.asarray([e["r_s"] for e in config["radial"]], float)
    else:
        eta, rs = radial_grid(config["radial"], config["grid_r_min"], config["grid_r_max"], config["radial_grid"])
    radial = {"eta": eta, "r_s": rs}
    ang = config["angular"]
    if isinstance(ang, list):
        angular = {k: np.asarray([e[k] for e in ang], float) for k in ("eta", "zeta", "lambda", "r_s")}
        angular["is_g4"] = np.asarray([e["type"] == "g4" for e in ang])
    elif ang:
        geta, grs = radial_grid(ang, config["grid_r_min"], config["grid_r_max"], config["angular_grid"])
        rows = [(e, z, lam, r) for e, r in zip(geta, grs) for z in config["zetas"] for lam in (-1.0, 1.0)]
        angular = {k: np.asarray([row[m] for row in rows], float)
                   for m, k in enumerate(("eta", "zeta", "lambda", "r_s"))}
        angular["is_g4"] = np.full(len(rows), config["angular_type"] == "g4")
    else:
        angular = {k: np.zeros(0) for k in ("eta", "zeta", "lambda", "r_s")}
        angular["is_g4"] = np.zeros(0, bool)
    return radial, angular


# ---------------------------------------------------------------------------
# descriptors
# ---------------------------------------------------------------------------

def cosine_cutoff(r, rc: float):
    """f_c(r) = 0.5 (cos(pi r / r_c) + 1) for r < r_c, else 0 (r in A)."""
    return jnp.where(r < rc, 0.5 * (jnp.cos(jnp.pi * jnp.minimum(r, rc) / rc) + 1.0), 0.0)


class _Descriptor:
    """Static data of the symmetry functions of one resolved config."""

    def __init__(self, config: dict):
        self.species = list(config["species"])
        self.n_el = len(self.species)
        self.rc = float(config["cutoff"])
        self.max_neighbors = int(config["max_neighbors"])
        block = config.get("atom_block", "auto")
        if block == "auto":
            block = AUTO_ATOM_BLOCK["cpu" if jax.default_backend() == "cpu" else "accelerator"]
        self.block = int(block)
        self.table = species_index_table(self.species)
        radial, angular = symmetry_function_parameters(config)
        self.radial, self.angular = radial, angular
        self.n_radial = len(radial["eta"])
        self.n_angular = len(angular["eta"])
        pair = np.zeros((self.n_el, self.n_el), np.int32)
        c = 0
        for a in range(self.n_el):
            for b in range(a, self.n_el):
                pair[a, b] = pair[b, a] = c
                c += 1
        self.n_pairs = c
        self.pair = pair
        self.n_features = self.n_el * self.n_radial + (self.n_pairs * self.n_angular)
        self.tri_j, self.tri_k = np.triu_indices(self.max_neighbors, 1)
        rkeys = sorted(set(zip(angular["eta"], angular["r_s"], angular["is_g4"])))
        akeys = sorted(set(zip(angular["zeta"], angular["lambda"])))
        self.angular_unique = {
            "eta": np.asarray([k[0] for k in rkeys]), "r_s": np.asarray([k[1] for k in rkeys]),
            "is_g4": np.asarray([k[2] for k in rkeys], bool),
            "zeta": [k[0] for k in akeys], "lambda": [k[1] for k in akeys],
            "ridx": np.asarray([rkeys.index(k) for k in zip(angular["eta"], angular["r_s"], angular["is_g4"])], int),
            "aidx": np.asarray([akeys.index(k) for k in zip(angular["zeta"], angular["lambda"])], int),
        }
        self.jit = jax.jit(self.__call__)
        self.batched = jax.jit(jax.vmap(self.__call__))

    def _angular(self, vec, rn, fcn, eln, have):
        """Angular features (B, C P) of a block of B atoms from their neighbor
        rows: vectors (B, M, 3) A, lengths (B, M), f_c (B, M), neighbor
        element indices (B, M), slot validity (B, M)."""
        dtype = vec.dtype
        n = vec.shape[0]
        rc = self.rc
        # Per triplet only what couples j and k is evaluated (the angle, r_jk);
        # the (eta, r_s) Gaussians and f_c of r_ij and r_ik are per neighbor, and
        # each distinct radial factor (eta, r_s, type) and angular factor
        # (zeta, lambda) is computed once: term_p = R_{u(p)} A_{v(p)}.
        a, b = self.tri_j, self.tri_k                                    # static (T,)
        ang = self.angular_unique
        gram = jnp.einsum("nmd,nkd->nmk", vec, vec)                      # (N, M, M) A^2
        dot = gram[:, a, b]                                              # (N, T)
        rj, rk = rn[:, a], rn[:, b]
        rjk2 = rj * rj + rk * rk - 2.0 * dot
        # r_jk^2 = r_ij^2 + r_ik^2 - 2 r_ij.r_ik from the Gram matrix (a batched
        # matmul); rounding can make it <= 0 for coincident j, k: r_jk = 0 there
        apart = rjk2 > 0
        rjk = jnp.where(apart, jnp.sqrt(jnp.where(apart, rjk2, 1.0)), 0.0)
        # cos theta with finite gradients for coincident atoms (r = 0)
        den = jnp.where(rj * rk > 0, rj * rk, 1.0)
        cos = dot / den
        eta = jnp.asarray(ang["eta"], dtype)                             # (U_r,)
        rs = jnp.asarray(ang["r_s"], dtype)
        per_nbr = jnp.exp(-eta * (rn[..., None] - rs) ** 2) * fcn[..., None]   # (N, M, U_r)
        radial = per_nbr[:, a] * per_nbr[:, b]                           # (N, T, U_r)
        if np.any(ang["is_g4"]):
            jk = jnp.exp(-eta * (rjk[..., None] - rs) ** 2) * cosine_cutoff(rjk, rc)[..., None]
            radial = radial * jnp.where(jnp.asarray(ang["is_g4"]), jk, 1.0)
        angular = []
        for zeta, lam in zip(ang["zeta"], ang["lambda"]):
            base = jnp.maximum(1.0 + lam * cos, 0.0)
            power = base ** int(zeta) if float(zeta).is_integer() else base ** zeta
            angular.append(2.0 ** (1.0 - zeta) * power)
        angular = jnp.stack(angular, axis=-1)                            # (N, T, U_a)
        ch = jnp.asarray(self.pair)[eln[:, a], eln[:, b]]                # (N, T)
        w = have[:, a] & have[:, b]
        onehot = ((ch[..., None] == jnp.arange(self.n_pairs)) & w[..., None]).astype(dtype)
        x = (onehot[..., :, None] * radial[..., None, :]).reshape(n, -1, self.n_pairs * radial.shape[-1])
        g = jnp.einsum("ntk,nta->nka", x, angular)                       # (N, C U_r, U_a)
        g = g.reshape(n, self.n_pairs, radial.shape[-1], angular.shape[-1])
        g = g[:, :, ang["ridx"], ang["aidx"]].reshape(n, self.n_pairs * self.n_angular)
        return g

    def __call__(self, positions, context: Context):
        """(G (N, F) in the positions' dtype, neighbor counts (N,) int32)."""
        dtype = positions.dtype
        n = positions.shape[0]
        rc = self.rc
        idx = self.table[context.species]
        real = idx >= 0
        el = jnp.maximum(idx, 0)
        i, j, dr, mask = pairs(positions, context, full=True)
        r = safe_norm(dr)
        ok = mask & real[i] & real[j] & (r < rc)
        fc = cosine_cutoff(r, rc)

        # radial: one segment sum over (centre, neighbor element)
        eta = jnp.asarray(self.radial["eta"], dtype)
        rs = jnp.asarray(self.radial["r_s"], dtype)
        g2 = jnp.exp(-eta * (r[:, None] - rs) ** 2) * fc[:, None]
        g2 = jnp.where(ok[:, None], g2, 0.0)
        seg = jnp.where(ok, i * self.n_el + el[j], n * self.n_el)
        rad = jax.ops.segment_sum(g2, seg, num_segments=n * self.n_el + 1)[:-1]
        rad = rad.reshape(n, self.n_el * self.n_radial)
        counts = jax.ops.segment_sum(ok.astype(jnp.int32), jnp.where(ok, i, n), num_segments=n + 1)[:-1]
        if self.n_angular == 0:
            return rad, counts

        # neighbor rows: pairs within the cutoff sorted by centre, first M per atom
        m = self.max_neighbors
        k2 = i.shape[0]
        order = jnp.argsort(jnp.where(ok, i, n), stable=True)
        starts = jnp.cumsum(counts) - counts
        slot = starts[:, None] + jnp.arange(m)[None, :]
        have = jnp.arange(m)[None, :] < counts[:, None]                  # (N, M)
        tab = order[jnp.minimum(slot, k2 - 1)]
        # empty slots: a vector beyond the cutoff (f_c = 0, never of length 0)
        dummy = jnp.asarray([2.0 * rc, 0.0, 0.0], dtype)
        vec = jnp.where(have[..., None], dr[tab], dummy)                 # (N, M, 3)
        rn = jnp.where(have, r[tab], 2.0 * rc)
        fcn = jnp.where(have, fc[tab], 0.0)
        eln = el[j[tab]]

        if self.block and n > self.block:
            # blocks of atoms, each recomputed in the backward pass
            # (jax.checkpoint): memory ~ block x M^2 instead of N x M^2
            nb = -(-n // self.block)
            size = -(-n // nb)
            pad = nb * size - n
            rows = [jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape((nb, size) + x.shape[1:])
                    for x in (vec, rn, fcn, eln, have)]
            g = jax.lax.map(lambda xs: jax.checkpoint(self._angular)(*xs), rows)
            g = g.reshape(nb * size, -1)[:n]
        else:
            g = self._angular(vec, rn, fcn, eln, have)
        return jnp.concatenate([rad, g], axis=1), counts
