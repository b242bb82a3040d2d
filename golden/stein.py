"""Stein estimators of the gradient and Laplacian of a Gaussian-smoothed function (paper eq. 8-9, 13).

u(x) = E f(x + delta), delta ~ N(0, sigma^2 I_D).  With delta = sigma z:

  grad u(x) = E[ z (f(x + sigma z) - f(x - sigma z)) ] / (2 sigma)
  lap  u(x) = E[ (|z|^2 - D) (f(x + sigma z) + f(x - sigma z) - 2 f(x)) ] / (2 sigma^2)

The expectation is taken by a sparse grid (eq. 13, `sparse_grid_*`), by antithetic Monte
Carlo (`mc_*`, fresh i.i.d. z and their mirrors) or replaced by central finite differences
of f itself (`fd_*`, the paper's FD baseline, which estimates the derivatives of f, not of u).

On a symmetric node set (every sparse grid here; the MC set with its mirrors) the 2J+1
evaluations f(x +- delta_j), f(x) collapse to the J evaluations f(x + delta_j): with the
per-node *Stein factors*

  a_j = w_j z_j / sigma,   b_j = w_j (|z_j|^2 - D) / sigma^2,   c = -sum_j b_j,

grad u = sum_j a_j f_j and lap u = sum_j b_j f_j + c f(x); c is folded into the origin node
(every rule here has one, or gets one), so both are one linear map of the J node values.  `SteinFactors` holds them; they
are what the node table (golden/nodetable.py) ships to the board.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .sparse_grid import SparseGrid

Fn = Callable[[np.ndarray], np.ndarray]  # f: (..., D) -> (...)


@dataclass(frozen=True)
class SteinFactors:
    """Linear maps from the J node evaluations f(x + delta_j) to grad u (a) and lap u (b, c)."""

    sigma: float
    deltas: np.ndarray  # (J, D) perturbations delta_j = sigma z_j
    a: np.ndarray       # (J, D) gradient factors
    b: np.ndarray       # (J,) Laplacian factors
    c: float            # Laplacian factor of f(x) before folding into the origin node (always 0 here)

    @property
    def count(self) -> int:
        return int(self.deltas.shape[0])

    @property
    def dim(self) -> int:
        return int(self.deltas.shape[1])

    @property
    def origin(self) -> int:
        """Index of the node delta = 0 (every rule built here has one)."""
        idx = np.flatnonzero(~self.deltas.any(axis=1))
        if idx.size == 0:
            raise ValueError("this rule has no origin node")
        return int(idx[0])

    def apply(self, f_nodes: np.ndarray, f_center: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """grad (..., D) and lap (...) from f_nodes (..., J) = f(x + delta_j).

        Computed as sum_j a_j (f_j - f_0) and sum_j b_j (f_j - f_0) with f_0 = f(x) (the origin
        node): identical in exact arithmetic because sum_j a_j = sum_j b_j = 0, but it avoids the
        cancellation of the huge origin factor (b_0 = -408,000 for the D = 21 level-3 grid).
        """
        f_nodes = np.asarray(f_nodes)
        o = self.origin
        d = f_nodes - f_nodes[..., o:o + 1]
        grad = d @ self.a
        lap = d @ self.b
        return grad, lap


def factors_from_rule(z: np.ndarray, w: np.ndarray, sigma: float, lap_dims: int | None = None) -> SteinFactors:
    """Stein factors of a symmetric rule (z_j, w_j) for N(0, I), scaled to N(0, sigma^2 I).

    The Laplacian is taken over the first `lap_dims` coordinates (default all D):
    d^2/dx_i^2 u = E[(z_i^2 - 1) f(x + sigma z)] / sigma^2, summed over those i.  The f(x) term
    c = -sum_j b_j is folded into the origin node (appended with a = 0 if the rule has none),
    so the estimate is one linear map of the node evaluations and `c` is 0.
    """
    z = np.asarray(z, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if z.ndim != 2 or w.shape != (z.shape[0],):
        raise ValueError(f"nodes must be (J, D) and weights (J,), got {z.shape} and {w.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    D = z.shape[1]
    L = D if lap_dims is None else int(lap_dims)
    if not 0 <= L <= D:
        raise ValueError(f"lap_dims={L} outside 0..{D}")
    a = w[:, None] * z / sigma
    b = w * (np.einsum("jd,jd->j", z[:, :L], z[:, :L]) - L) / sigma ** 2
    c = -float(b.sum())
    origin = np.flatnonzero(~z.any(axis=1))
    if origin.size:
        b = b.copy()
        b[origin[0]] += c
    else:
        z = np.concatenate([np.zeros((1, D)), z])
        a = np.concatenate([np.zeros((1, D)), a])
        b = np.concatenate([[c], b])
    return SteinFactors(float(sigma), sigma * z, a, b, 0.0)


def sparse_grid_factors(grid: SparseGrid, sigma: float, lap_dims: int | None = None) -> SteinFactors:
    """Stein factors of a sparse grid (which is symmetric by construction)."""
    grid.mirror_index()  # raises if not symmetric
    return factors_from_rule(grid.nodes, grid.weights, sigma, lap_dims)


def mc_factors(rng: np.random.Generator, dim: int, samples: int, sigma: float,
               lap_dims: int | None = None) -> SteinFactors:
    """Antithetic Monte Carlo as a rule: `samples` i.i.d. z_i and their mirrors -z_i, weight 1/(2 samples).

    Equivalent to averaging z (f(x+sz) - f(x-sz)) / (2s) over the i.i.d. samples.  c is set to
    -sum b (so f(x) enters exactly as in eq. 9).
    """
    if samples < 1:
        raise ValueError("samples must be >= 1")
    z = rng.standard_normal((samples, dim))
    z = np.concatenate([z, -z])
    w = np.full(2 * samples, 0.5 / samples)
    return factors_from_rule(z, w, sigma, lap_dims)


# ------------------------------------------------------------------------------------------------
# Estimators on a callable f (reference forms, straight from eq. 9 / 13)
# ------------------------------------------------------------------------------------------------

def stein_eq13(f: Fn, x: np.ndarray, z: np.ndarray, w: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 13 literally: 2J+1 evaluations of f; any rule (z_j, w_j) for N(0, I). x: (P, D).

    The reference the factor form is tested against (full Laplacian over all D coordinates).
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    D = x.shape[1]
    d = sigma * np.asarray(z)                               # (J, D)
    fp = f(x[:, None, :] + d[None])                         # (P, J)
    fm = f(x[:, None, :] - d[None])
    f0 = f(x)                                               # (P,)
    grad = np.einsum("j,jd,pj->pd", w, d, fp - fm) / (2 * sigma ** 2)
    lap = ((fp + fm - 2 * f0[:, None]) @ (w * (np.einsum("jd,jd->j", d, d) - sigma ** 2 * D))) / (2 * sigma ** 4)
    return grad, lap


def stein_with_factors(f: Fn, x: np.ndarray, fac: SteinFactors) -> tuple[np.ndarray, np.ndarray]:
    """The factor form: J evaluations f(x + delta_j) (plus f(x) when c != 0)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    return fac.apply(f(x[:, None, :] + fac.deltas[None]))


def sparse_grid_stein(f: Fn, x: np.ndarray, grid: SparseGrid, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Sparse-grid Stein estimate (eq. 13) of grad u and lap u at points x (P, D)."""
    return stein_with_factors(f, x, sparse_grid_factors(grid, sigma))


def mc_stein(f: Fn, x: np.ndarray, sigma: float, samples: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """Antithetic Monte Carlo Stein estimate (eq. 9) with `samples` i.i.d. directions."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    return stein_with_factors(f, x, mc_factors(rng, x.shape[1], samples, sigma))


def fd_factors(dim: int, h: float, lap_dims: int | None = None) -> SteinFactors:
    """Central finite differences as a node rule: the origin, then +-h e_i.

    grad_i = (f(x + h e_i) - f(x - h e_i)) / (2h); lap = sum_{i < lap_dims} (f+ + f- - 2 f(x)) / h^2.
    """
    if not h > 0:
        raise ValueError(f"step h must be positive, got {h}")
    L = dim if lap_dims is None else int(lap_dims)
    e = np.eye(dim)
    deltas = np.concatenate([np.zeros((1, dim)), h * e, -h * e])
    a = np.concatenate([np.zeros((1, dim)), e, -e]) / (2 * h)
    lap = (np.arange(dim) < L) / h ** 2
    b = np.concatenate([[-2.0 * L / h ** 2], lap, lap])
    return SteinFactors(float(h), deltas, a, b, 0.0)


def fd_derivatives(f: Fn, x: np.ndarray, h: float, lap_dims: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Central finite-difference gradient and Laplacian of f itself (2D + 1 evaluations)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    return stein_with_factors(f, x, fd_factors(x.shape[1], h, lap_dims))


# ------------------------------------------------------------------------------------------------
# Exact references for polynomial test functions
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Polynomial:
    """f(x) = sum_t c_t prod_d x_d^{E[t, d]} (coefficients c: (T,), exponents E: (T, D))."""

    coeffs: np.ndarray
    exps: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.exps.shape[1])

    @property
    def degree(self) -> int:
        return int(self.exps.sum(axis=1).max())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.sum(self.coeffs * np.prod(x[..., None, :] ** self.exps, axis=-1), axis=-1)

    def derivative(self, d: int) -> "Polynomial":
        e = self.exps.copy()
        c = self.coeffs * e[:, d]
        e[:, d] = np.maximum(e[:, d] - 1, 0)
        return Polynomial(c, e)

    def smoothed(self, x: np.ndarray, sigma: float) -> np.ndarray:
        """E f(x + sigma z), exactly: binomial expansion per factor with Gaussian moments."""
        from math import comb
        from .sparse_grid import gaussian_moment
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        out = np.zeros(x.shape[0])
        for c, e in zip(self.coeffs, self.exps):
            term = np.full(x.shape[0], float(c))
            for d, p in enumerate(e):
                if p == 0:
                    continue
                s = np.zeros(x.shape[0])
                for k in range(0, int(p) + 1, 2):  # odd moments vanish
                    s += comb(int(p), k) * x[:, d] ** (int(p) - k) * sigma ** k * gaussian_moment(k)
                term *= s
            out += term
        return out

    def smoothed_grad(self, x: np.ndarray, sigma: float) -> np.ndarray:
        return np.stack([self.derivative(d).smoothed(x, sigma) for d in range(self.dim)], axis=-1)

    def smoothed_laplacian(self, x: np.ndarray, sigma: float) -> np.ndarray:
        return sum(self.derivative(d).derivative(d).smoothed(x, sigma) for d in range(self.dim))


def random_polynomial(rng: np.random.Generator, dim: int, degree: int, terms: int) -> Polynomial:
    """A polynomial with `terms` random monomials of total degree <= `degree` (one of exactly `degree`)."""
    exps = np.zeros((terms, dim), dtype=np.int64)
    for t in range(terms):
        deg = degree if t == 0 else int(rng.integers(0, degree + 1))
        for _ in range(deg):
            exps[t, rng.integers(0, dim)] += 1
    return Polynomial(rng.normal(size=terms), exps)
