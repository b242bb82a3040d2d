"""Smolyak sparse Gauss-Hermite quadrature for N(0, sigma^2 I) in any dimension D (paper eq. 11-12).

The 1-D rule of accuracy level l is the l-point Gauss-Hermite rule for the standard normal
(exact for polynomials of degree <= 2l-1).  The level-k Smolyak rule combines the tensor
rules V_l1 x .. x V_lD over multi-indices l (l_m >= 1) with |l| = D + q, q = k-D .. k-1,
with coefficient (-1)^(k-1-q) * binom(D-1, k-1-q).  Equal nodes from different tensor
grids are merged and their weights summed (eq. 12).  The result integrates every monomial
of total degree <= 2k-1 exactly; level 3 has 2D^2+2D+1 nodes (D = 21 -> 925).

Because every 1-D rule is symmetric and its nodes are stored exactly mirrored, the merged
grid is symmetric: -z is a node with the same weight whenever z is.  Nodes are returned in a
canonical order (the origin first, then mirror pairs z, -z), so the rule does not depend on
the order the tensor grids were visited in.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations, combinations_with_replacement
from math import comb, fsum, prod

import numpy as np

#: Nodes are merged when their coordinates agree to this many decimals (they are built from
#: the same exactly-mirrored 1-D nodes, so equal nodes are bit-identical; rounding is a guard).
MERGE_DECIMALS = 12


@lru_cache(maxsize=None)
def gauss_hermite(level: int) -> tuple[np.ndarray, np.ndarray]:
    """The `level`-point Gauss-Hermite rule for N(0, 1): nodes (exactly mirrored) and weights (sum 1)."""
    if level < 1:
        raise ValueError(f"1-D rule level must be >= 1, got {level}")
    x, w = np.polynomial.hermite_e.hermegauss(level)
    w = w / w.sum()
    # mirror exactly: x[i] = -x[n-1-i], middle node exactly 0, symmetric weights
    x = 0.5 * (x - x[::-1])
    w = 0.5 * (w + w[::-1])
    if level % 2:
        x[level // 2] = 0.0
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def _excesses(D: int, total: int, max_parts: int):
    """Sparse multi-index excesses e = l - 1 with |e| = total: yields (dims, parts) tuples."""
    if total == 0:
        yield (), ()
        return
    for nparts in range(1, min(total, max_parts, D) + 1):
        for parts in _compositions(total, nparts):
            for dims in combinations(range(D), nparts):
                yield dims, parts


def _compositions(total: int, nparts: int):
    """Ordered tuples of `nparts` positive integers summing to `total`."""
    if nparts == 1:
        yield (total,)
        return
    for first in range(1, total - nparts + 2):
        for rest in _compositions(total - first, nparts - 1):
            yield (first,) + rest


@dataclass(frozen=True)
class SparseGrid:
    """A quadrature rule for E[f(z)], z ~ N(0, I_D): nodes z (J, D), weights (J,).

    `scaled(sigma)` gives the nodes delta = sigma * z of N(0, sigma^2 I) (weights unchanged).
    """

    dim: int
    level: int
    nodes: np.ndarray    # (J, D) standard-normal nodes z_j
    weights: np.ndarray  # (J,)

    @property
    def count(self) -> int:
        return int(self.nodes.shape[0])

    def scaled(self, sigma: float) -> np.ndarray:
        """Nodes of the rule for N(0, sigma^2 I)."""
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        return sigma * self.nodes

    def integrate(self, values: np.ndarray) -> np.ndarray:
        """Sum_j w_j values[j, ...]: the rule applied to pre-evaluated values (first axis = node)."""
        return np.tensordot(self.weights, np.asarray(values, dtype=np.float64), axes=(0, 0))

    def mirror_index(self) -> np.ndarray:
        """For each node j the index of -z_j (the grid is symmetric; raises if it is not)."""
        key = {tuple(np.round(z, MERGE_DECIMALS) + 0.0): j for j, z in enumerate(self.nodes)}
        out = np.empty(self.count, dtype=np.int64)
        for j, z in enumerate(self.nodes):
            m = key.get(tuple(np.round(-z, MERGE_DECIMALS) + 0.0))
            if m is None or not np.isclose(self.weights[m], self.weights[j], rtol=1e-12, atol=1e-12):
                raise ValueError(f"grid is not symmetric at node {j}")
            out[j] = m
        return out


def smolyak_gauss_hermite(dim: int, level: int) -> SparseGrid:
    """The level-k Smolyak sparse Gauss-Hermite rule for N(0, I_dim), duplicates merged."""
    return _smolyak(int(dim), int(level))


@lru_cache(maxsize=16)
def _smolyak(D: int, k: int) -> SparseGrid:
    if D < 1:
        raise ValueError(f"dimension must be >= 1, got {D}")
    if k < 1:
        raise ValueError(f"level must be >= 1, got {k}")
    acc: dict[tuple, list[float]] = {}  # contributions, summed with fsum (exact rounding)
    exact: dict[tuple, tuple] = {}  # merge key -> exact (unrounded) coordinates
    for q in range(max(0, k - D), k):
        coeff = (-1) ** (k - 1 - q) * comb(D - 1, k - 1 - q)
        if coeff == 0:
            continue
        for dims, parts in _excesses(D, q, k - 1):
            rules = [gauss_hermite(p + 1) for p in parts]
            # tensor grid over the active dims; inactive dims use the 1-point rule (node 0, weight 1)
            idx_ranges = [range(len(r[0])) for r in rules]
            for combo in _product(idx_ranges):
                w = coeff * prod(float(r[1][i]) for r, i in zip(rules, combo))
                key = tuple((d, round(float(r[0][i]), MERGE_DECIMALS) + 0.0)
                            for d, r, i in zip(dims, rules, combo) if r[0][i] != 0.0)
                acc.setdefault(key, []).append(w)
                if key not in exact:
                    exact[key] = tuple((d, float(r[0][i])) for d, r, i in zip(dims, rules, combo) if r[0][i] != 0.0)
    # drop exact cancellations (weights that sum to 0 up to round-off) only if they vanish exactly
    items = [(key, fsum(ws)) for key, ws in acc.items()]
    items = [(key, w) for key, w in items if w != 0.0]
    nodes, weights = _canonical(items, exact, D)
    return SparseGrid(D, k, nodes, weights)


def _product(ranges):
    if not ranges:
        yield ()
        return
    for i in ranges[0]:
        for rest in _product(ranges[1:]):
            yield (i,) + rest


def _canonical(items: list[tuple[tuple, float]], exact: dict[tuple, tuple], D: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Origin first, then mirror pairs (z, -z) with z's first non-zero coordinate positive."""
    table = dict(items)
    reps = []
    for key in table:
        if not key:
            continue
        if key[0][1] > 0:
            reps.append(key)
    reps.sort(key=lambda k: (len(k), [d for d, _ in k], [abs(v) for _, v in k], [-v for _, v in k]))
    order: list[tuple] = ([()] if () in table else [])
    for key in reps:
        order.append(key)
        order.append(tuple((d, -v + 0.0) for d, v in key))
    if len(order) != len(table):
        raise AssertionError("sparse grid is not symmetric")  # cannot happen with mirrored 1-D rules
    nodes = np.zeros((len(order), D))
    for j, key in enumerate(order):
        for d, v in exact[key]:
            nodes[j, d] = v
    weights = np.array([table[key] for key in order])
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


# ------------------------------------------------------------------------------------------------
# Moments: what the rule should integrate
# ------------------------------------------------------------------------------------------------

def gaussian_moment(power: int) -> float:
    """E[z^p] for z ~ N(0,1): 0 for odd p, (p-1)!! for even p."""
    if power < 0:
        raise ValueError("power must be >= 0")
    if power % 2:
        return 0.0
    return float(prod(range(power - 1, 0, -2))) if power else 1.0


def monomial_exact(exponents: np.ndarray) -> float:
    return float(prod(gaussian_moment(int(a)) for a in exponents))


def monomials(dim: int, degree: int):
    """All exponent multisets of total degree exactly `degree`, as index tuples (i1 <= i2 <= ..)."""
    return combinations_with_replacement(range(dim), degree)


def max_moment_error(grid: SparseGrid, max_degree: int, chunk: int = 4096) -> tuple[float, tuple[int, ...]]:
    """Largest |rule - exact| over all monomials of total degree 0..max_degree, and that monomial.

    The monomial is returned as its index multiset, e.g. (0, 0, 3) for z_0^2 z_3.
    """
    Z = grid.nodes
    worst, worst_mono = 0.0, ()
    for deg in range(0, max_degree + 1):
        batch: list[tuple[int, ...]] = []
        for mono in monomials(grid.dim, deg):
            batch.append(mono)
            if len(batch) == chunk:
                worst, worst_mono = _check_batch(Z, grid.weights, batch, worst, worst_mono)
                batch = []
        if batch:
            worst, worst_mono = _check_batch(Z, grid.weights, batch, worst, worst_mono)
    return worst, worst_mono


def _check_batch(Z, w, batch, worst, worst_mono):
    deg = len(batch[0])
    if deg == 0:
        vals = np.array([fsum(w)])
    else:
        idx = np.array(batch)                       # (B, deg)
        vals = w @ np.prod(Z[:, idx], axis=2)       # (J, B, deg) -> (B,)
    exact = np.array([_exact_from_indices(m, Z.shape[1]) for m in batch])
    err = np.abs(vals - exact)
    i = int(np.argmax(err))
    if err[i] > worst:
        return float(err[i]), tuple(batch[i])
    return worst, worst_mono


def _exact_from_indices(mono: tuple[int, ...], D: int) -> float:
    counts: dict[int, int] = {}
    for i in mono:
        counts[i] = counts.get(i, 0) + 1
    return float(prod(gaussian_moment(c) for c in counts.values()))


def quadrature_of_monomial(grid: SparseGrid, mono: tuple[int, ...]) -> float:
    """The rule's value of E[prod z_i for i in mono] (indices may repeat)."""
    if not mono:
        return float(grid.weights.sum())
    return float(grid.weights @ np.prod(grid.nodes[:, list(mono)], axis=1))


def level3_count(dim: int) -> int:
    """Node count of the level-3 rule for dim > 1: 2D^2 + 2D + 1 (paper section 4.2)."""
    return 2 * dim * dim + 2 * dim + 1


def summary(dim: int, level: int) -> dict:
    """What `ttzo sparse-grid` prints: node count, weight sum, largest moment error up to 2k-1."""
    g = smolyak_gauss_hermite(dim, level)
    err, mono = max_moment_error(g, 2 * level - 1)
    first_fail = 2 * level
    fail_mono = (0,) * first_fail
    fail_err = abs(quadrature_of_monomial(g, fail_mono) - _exact_from_indices(fail_mono, dim))
    return {"dim": dim, "level": level, "nodes": g.count, "weight_sum": fsum(g.weights),
            "max_moment_error": err, "max_moment_error_at": list(mono), "exact_degree": 2 * level - 1,
            "degree_2k_error_z0": fail_err, "min_weight": float(g.weights.min()),
            "max_weight": float(g.weights.max()), "max_abs_node": float(np.abs(g.nodes).max())}
