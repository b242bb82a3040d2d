"""Zeroth-order Gauss-Newton / Levenberg-Marquardt fine-tuning of the HJB output layer (forward queries only).

The HJB loss is the mean of r_p(theta)^2 over collocation points p.  With the first layers fixed,
the output layer's parameters w (768 weights and the bias) enter NN = w . h + b linearly, so the
node values g(x_p + delta_j), hence the Stein estimates s_p = (grad g, lap g) of every point, are
*affine* in w and the residual r_p = d_t g + lap g - 0.05 |1 + grad_x g|^2 + 2 is quadratic in w.
Gradient-like ZO methods crawl on this problem (its Gauss-Newton matrix spans ~1e9, docs/results.md);
a Gauss-Newton step solves it instead:

* `fd_jacobian`: the residual *vector*'s Jacobian by finite differences of forward queries,
  column k = (r(theta + mu e_k) - r(theta)) / mu (or central), any batched residual function.  A
  query is one perturbed parameter set evaluated on all the points (ZO-CGE's queries; CGE keeps
  only the mean loss, GN keeps the per-point residuals).
* `OutputLayerQueries`: the same queries for the output layer of a `hjb.DeltaHJB`, by its exact
  fast path (features once per point chunk, no network evaluation per coordinate, as
  `hjb.OutputLayerCache`).  Each query also returns the per-point Stein estimates; their finite
  differences are exact (they are affine in w), so the residual at any trial w is a host-side
  function of the queried numbers (`AffineStein`), with no further query.
* `lm_solve`: damped least squares dw = -(J^T J + lambda I)^-1 J^T r by the SVD of J, and `lm_fit`:
  Levenberg-Marquardt iterations (accept / reject on the loss) on one point set.

The solver runs on the host, in float64: it is not the paper's optimiser; the network only ever
runs forward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg

from . import hjb
from .network import TTNet
from .stein import SteinFactors

ResidualFn = Callable[[np.ndarray], np.ndarray]   # theta batch (Q, d) -> residuals (Q, P)


@dataclass
class Jacobian:
    """Residuals r (P,) at theta, their Jacobian (P, K) over the coordinates `coords`, and the queries used."""

    r0: np.ndarray
    jac: np.ndarray
    coords: np.ndarray
    queries: int


def fd_jacobian(residuals: ResidualFn, theta: np.ndarray, coords: np.ndarray, mu: float,
                central: bool = False) -> Jacobian:
    """Finite-difference Jacobian of a residual vector over `coords`: 1 + K queries (central: 1 + 2K)."""
    if mu <= 0:
        raise ValueError(f"mu {mu} must be positive")
    theta = np.asarray(theta, np.float64)
    coords = np.asarray(coords, np.int64)
    r0 = np.asarray(residuals(theta[None]), np.float64)[0]
    plus = np.repeat(theta[None], coords.size, axis=0)
    plus[np.arange(coords.size), coords] += mu
    rp = np.asarray(residuals(plus), np.float64)
    if central:
        minus = np.repeat(theta[None], coords.size, axis=0)
        minus[np.arange(coords.size), coords] -= mu
        jac = (rp - np.asarray(residuals(minus), np.float64)).T / (2 * mu)
        return Jacobian(r0, jac, coords, 1 + 2 * coords.size)
    return Jacobian(r0, (rp - r0[None]).T / mu, coords, 1 + coords.size)


# ------------------------------------------------------------------------------------------------
# Levenberg-Marquardt
# ------------------------------------------------------------------------------------------------

def lm_solve(jac: np.ndarray, r: np.ndarray, lam: float) -> np.ndarray:
    """The damped Gauss-Newton step dw = -(J^T J + lam I)^-1 J^T r (SVD of J: stable at cond(J)^2 ~ 1e10)."""
    u, s, vt = scipy.linalg.svd(jac, full_matrices=False, lapack_driver="gesvd")
    return -(vt.T @ ((s / (s * s + lam)) * (u.T @ r)))


def lm_fit(residual_at: Callable[[np.ndarray], np.ndarray], jac_at: Callable[[np.ndarray], np.ndarray],
           w0: np.ndarray, lam: float, iters: int, r0: np.ndarray | None = None, jac0: np.ndarray | None = None,
           lam_down: float = 0.3, lam_up: float = 10.0, max_tries: int = 12) -> tuple[np.ndarray, float, list[dict]]:
    """Levenberg-Marquardt on min mean r(w)^2: `iters` accepted steps at most (fewer if no trial improves).

    Returns (w, lam, history); each trial solves with the current lam and is accepted if the loss falls
    (then lam *= lam_down), else lam *= lam_up and the step is retried.
    """
    w = np.asarray(w0, np.float64).copy()
    r = residual_at(w) if r0 is None else r0
    jac = jac_at(w) if jac0 is None else jac0
    loss = float(np.mean(r * r))
    hist: list[dict] = []
    for _ in range(iters):
        u, s, vt = scipy.linalg.svd(jac, full_matrices=False, lapack_driver="gesvd")
        ur = u.T @ r
        for _try in range(max_tries):
            dw = -(vt.T @ ((s / (s * s + lam)) * ur))
            rt = residual_at(w + dw)
            lt = float(np.mean(rt * rt))
            hist.append({"lam": lam, "loss": loss, "trial_loss": lt, "accepted": bool(lt < loss)})
            if np.isfinite(lt) and lt < loss:
                w, r, loss = w + dw, rt, lt
                lam *= lam_down
                break
            lam *= lam_up
        else:
            break
        jac = jac_at(w)
    return w, lam, hist


# ------------------------------------------------------------------------------------------------
# The HJB output layer
# ------------------------------------------------------------------------------------------------

@dataclass
class AffineStein:
    """Stein estimates of every point as an affine map of the output-layer parameters w (n + 1):

        s(w0 + dw) = s0 + T dw,   s = (grad g (21), lap_x g) per point,

    measured by the queries (finite differences of an affine map are exact up to rounding).  The
    residual and its Jacobian at any w then follow from the residual formula on the host.
    """

    s0: np.ndarray    # (P, 22) at w0
    T: np.ndarray     # (P, 22, K)
    w0: np.ndarray    # (K,)

    def stein(self, w: np.ndarray) -> np.ndarray:
        return self.s0 + self.T @ (np.asarray(w, np.float64) - self.w0)

    def residual(self, w: np.ndarray) -> np.ndarray:
        s = self.stein(w)
        return hjb.residual(s[:, :hjb.D], s[:, hjb.D])

    def jacobian(self, w: np.ndarray) -> np.ndarray:
        """dr/dw = T_t + T_lap - 0.1 sum_i (1 + grad_x_i g) T_x_i  (the residual formula's chain rule)."""
        s = self.stein(w)
        gx = 1.0 + s[:, :hjb.D_X]
        return (self.T[:, hjb.D_X] + self.T[:, hjb.D]
                - 2.0 * hjb.HJB_COEFF * np.einsum("pi,pik->pk", gx, self.T[:, :hjb.D_X]))


class OutputLayerQueries:
    """Forward queries of a DeltaHJB on one point set, perturbing output-layer coordinates (exact fast path).

    `jacobian(theta, mu, central)` makes the 1 + K (central: 1 + 2K) queries of `fd_jacobian` over the
    output layer's K = n + 1 coordinates, point chunk by point chunk (the features of a chunk are computed
    once; memory stays ~chunk x J x n), and returns the residual Jacobian and the `AffineStein` map.
    Like `hjb.OutputLayerCache`, a query's numbers come from the chunk's features by linearity (NN(x) and
    every node difference change by mu h_k, mu dh_k; the Stein sums are linear in the node values), with
    no network evaluation per coordinate; the residual of each query is then evaluated in full.
    """

    def __init__(self, model: hjb.DeltaHJB, xt: np.ndarray, fac: SteinFactors, chunk: int = 40) -> None:
        net = model.net
        last = net.layers[-1].shape
        if not (last.L == 1 and last.out_features == 1 and net.layers[-1].activation == "identity"):
            raise ValueError("OutputLayerQueries needs a dense identity output layer with one output")
        self.model, self.fac = model, fac
        self.xt = np.asarray(xt, np.float64)
        self.n = last.in_features
        self.n_last = self.n + 1
        self.front = net.n_params - self.n_last
        self.chunk = chunk

    @property
    def coords(self) -> np.ndarray:
        return np.arange(self.front, self.front + self.n_last)

    def _stein(self, nn0: np.ndarray, dnn: np.ndarray, xt: np.ndarray) -> np.ndarray:
        g = hjb.DeltaHJB.g_from_nn(nn0, dnn, xt, self.fac)
        grad, lap = self.fac.apply(g)
        return np.concatenate([grad, lap[..., None]], axis=-1)

    def jacobian(self, theta: np.ndarray, mu: float, central: bool = False) -> tuple[Jacobian, AffineStein]:
        if mu <= 0:
            raise ValueError(f"mu {mu} must be positive")
        theta = np.asarray(theta, np.float64)
        params = self.model.net.unflatten(theta)
        P, K, n = self.xt.shape[0], self.n_last, self.n
        r0 = np.empty(P)
        jac = np.empty((P, K))
        s0 = np.empty((P, hjb.D + 1))
        T = np.empty((P, hjb.D + 1, K))
        signs = (1.0, -1.0) if central else (1.0,)
        F = np.concatenate([self.fac.a, self.fac.b[:, None]], axis=1)           # (J, 22): s = sum_j (g_j - g_0) F_j
        dtn = self.fac.deltas[:, hjb.D_X]
        c_dt = dtn @ F                                                            # (22,)
        F2 = np.concatenate([F, dtn[:, None] * F], axis=1)                        # (J, 44)
        for a in range(0, P, self.chunk):
            xt = self.xt[a:a + self.chunk]
            p = xt.shape[0]
            h0, dh = self.model.features(params[:-1], xt, self.fac)
            nn0, dnn = self.model.output(params[-1], h0, dh, xt, self.fac)
            sb = self._stein(nn0, dnn, xt)                                       # (p, 22)
            rb = hjb.residual(sb[:, :hjb.D], sb[:, hjb.D])
            s0[a:a + p], r0[a:a + p] = sb, rb
            # the Stein estimates of query k: s(w + mu e_k) = s(w) + mu T_k with T_k = the Stein map of the node
            # values' change per unit w_k (exact: the map is linear), all K at once by one GEMM over the nodes
            G = (dh.astype(np.float64).reshape(-1, dh.shape[1] // p) @ F2).reshape(n, p, 2, -1)
            Tw = (1.0 - xt[:, hjb.D_X])[None, :, None] * G[:, :, 0] - G[:, :, 1] - h0.T[:, :, None] * c_dt
            Tb = -np.broadcast_to(c_dt, (1, p, c_dt.size))
            Tk = np.concatenate([Tw, Tb], axis=0)                                  # (K, p, 22)
            sq = [sb[None] + sgn * mu * Tk for sgn in signs]
            rq = [hjb.residual(s[..., :hjb.D], s[..., hjb.D]) for s in sq]
            if central:
                jac[a:a + p] = ((rq[0] - rq[1]) / (2 * mu)).T
                T[a:a + p] = ((sq[0] - sq[1]) / (2 * mu)).transpose(1, 2, 0)
            else:
                jac[a:a + p] = ((rq[0] - rb[None]) / mu).T
                T[a:a + p] = ((sq[0] - sb[None]) / mu).transpose(1, 2, 0)
        w0 = theta[self.front:]
        return (Jacobian(r0, jac, self.coords, 1 + len(signs) * K), AffineStein(s0, T, w0.copy()))


@dataclass
class GNStep:
    """One GN fine-tuning step: new theta, loss before / after on its points, the damping, queries used."""

    theta: np.ndarray
    loss0: float
    loss1: float
    lam: float
    queries: int
    trials: int


def gn_step(model: hjb.DeltaHJB, theta: np.ndarray, xt: np.ndarray, fac: SteinFactors, lam: float,
            mu: float = 1e-3, central: bool = False, inner: int = 1, chunk: int = 40) -> GNStep:
    """Query the output layer's residual Jacobian on the points, then `inner` LM iterations on the host.

    The first LM iteration uses the queried FD Jacobian; the trial residuals and later Jacobians come
    from the queried affine Stein map (`AffineStein`), so the queries are the FD ones only: 1 + K
    (central 1 + 2K).
    """
    q = OutputLayerQueries(model, xt, fac, chunk=chunk)
    jac, aff = q.jacobian(theta, mu, central)
    w, lam_new, hist = lm_fit(aff.residual, aff.jacobian, aff.w0, lam, inner, r0=jac.r0, jac0=jac.jac)
    out = np.asarray(theta, np.float64).copy()
    out[q.front:] = w
    loss0 = float(np.mean(jac.r0 ** 2))
    loss1 = min([loss0] + [h["trial_loss"] for h in hist if h["accepted"]])
    return GNStep(out, loss0, loss1, lam_new, jac.queries, len(hist))


def output_layer(net: TTNet, theta: np.ndarray) -> np.ndarray:
    """The output layer's flat parameters (weights, then bias) of theta."""
    last = net.layers[-1].shape
    k = sum(int(np.prod(cs)) for cs in last.core_shapes) + last.out_features
    return np.asarray(theta)[net.n_params - k:]
