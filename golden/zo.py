"""Zeroth-order gradient estimators (float): ZO-RGE, ZO-signRGE, ZO-CGE, for any batched loss.

The estimators only see a *batched loss*: `loss(thetas) -> losses` with thetas (Q, d) and
losses (Q,), so the same code serves the MNIST classifier and the PINN (issue 4).  A loss
may also offer `coordinate_losses(theta, coords, values) -> (len(coords),)` (theta with
theta[coords[q]] := values[q], one at a time), which CGE then uses to reuse unchanged
partial contractions; otherwise CGE builds the perturbed vectors explicitly.

Perturbations come from the hardware PRNG (`golden.prng`): query i of step t uses stream
(seed, t, i), word p perturbs flat parameter p.  Rademacher xi in {-1, +1} by default;
'gaussian' uses the Irwin-Hall codes scaled to unit variance.

    RGE (eq. 2), forward difference:  g = 1/(N mu) sum_i (L(theta + mu xi_i) - L(theta)) xi_i
    central (antithetic):              g = 1/(2 N mu) sum_i (L(theta + mu xi_i) - L(theta - mu xi_i)) xi_i
    signRGE:                           sign(g)  (component-wise; sign(0) = 0)
    CGE:                               g_p = (L(theta + mu e_p) - L(theta)) / mu  for p in coords
Every function returns the number of forward evaluations it used (one parameter set on one batch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from . import prng

LossFn = Callable[[np.ndarray], np.ndarray]
GAUSS_STD = float(np.sqrt(4 * (256 ** 2 - 1) / 12)) / 2 ** prng.GAUSS_FRAC  # std of prng.gaussian codes / 2^7


class CoordinateLoss(Protocol):
    def __call__(self, thetas: np.ndarray) -> np.ndarray: ...

    def coordinate_losses(self, theta: np.ndarray, coords: np.ndarray, values: np.ndarray) -> np.ndarray: ...


@dataclass
class Estimate:
    """A gradient estimate (float), the unperturbed loss, and the forward evaluations it cost."""

    grad: np.ndarray
    loss0: float
    evaluations: int


def directions(seed: int, step: int, queries: int, d: int, kind: str = "rademacher") -> np.ndarray:
    """Float perturbation directions (queries, d) with E[xi xi^T] = I, regenerated from the PRNG."""
    xi = prng.perturbations(seed, step, queries, d, kind)
    if kind == "gaussian":
        return xi / (2.0 ** prng.GAUSS_FRAC * GAUSS_STD)
    return xi.astype(np.float64)


def coordinate_losses(loss: LossFn, theta: np.ndarray, coords: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Losses of theta with one coordinate replaced at a time; uses the loss's fast path when it has one."""
    fast = getattr(loss, "coordinate_losses", None)
    if fast is not None:
        return np.asarray(fast(theta, coords, values))
    t = np.repeat(np.asarray(theta)[None], len(coords), axis=0)
    t[np.arange(len(coords)), coords] = values
    return np.asarray(loss(t))


def rge(loss: LossFn, theta: np.ndarray, mu: float, xi: np.ndarray, central: bool = False) -> Estimate:
    """Randomised gradient estimate from directions xi (N, d)."""
    theta = np.asarray(theta, dtype=np.float64)
    N = xi.shape[0]
    if central:
        L = np.asarray(loss(np.vstack([theta[None], theta + mu * xi, theta - mu * xi])), dtype=np.float64)
        diff = L[1:N + 1] - L[N + 1:]
        return Estimate(diff @ xi / (2 * N * mu), float(L[0]), 2 * N + 1)
    L = np.asarray(loss(np.vstack([theta[None], theta + mu * xi])), dtype=np.float64)
    return Estimate((L[1:] - L[0]) @ xi / (N * mu), float(L[0]), N + 1)


def sign_rge(loss: LossFn, theta: np.ndarray, mu: float, xi: np.ndarray, central: bool = False) -> Estimate:
    """sign of the RGE estimate (scale-free: only its direction per coordinate is used)."""
    e = rge(loss, theta, mu, xi, central)
    return Estimate(np.sign(e.grad), e.loss0, e.evaluations)


def cge(loss: LossFn, theta: np.ndarray, mu: float, coords: np.ndarray | None = None) -> Estimate:
    """Coordinate-wise forward differences on `coords` (default: all); other entries of grad are 0."""
    theta = np.asarray(theta, dtype=np.float64)
    coords = np.arange(theta.size) if coords is None else np.asarray(coords, dtype=np.int64)
    L0 = float(np.asarray(loss(theta[None]))[0])
    Lc = coordinate_losses(loss, theta, coords, theta[coords] + mu)
    g = np.zeros_like(theta)
    g[coords] = (np.asarray(Lc, dtype=np.float64) - L0) / mu
    return Estimate(g, L0, len(coords) + 1)


def sample_coordinates(seed: int, step: int, d: int, fraction: float) -> np.ndarray:
    """The coordinates CGE visits at `step`: all (fraction 1) or each kept with probability `fraction`.

    Drawn from PRNG stream (seed, step, MAX_QUERY - 1): coordinate p is kept when word p, as an
    unsigned 32-bit integer, is below round(fraction * 2^32), so the chip can draw the same subset.
    """
    if fraction >= 1.0:
        return np.arange(d, dtype=np.int64)
    if fraction <= 0.0:
        raise ValueError(f"CGE coordinate fraction {fraction} must be in (0, 1]")
    w = prng.words([prng.stream_seed(seed, step, prng.MAX_QUERY - 1)], d)[0]
    return np.nonzero(w.astype(np.uint64) < np.uint64(round(fraction * 2 ** 32)))[0].astype(np.int64)
