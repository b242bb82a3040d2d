"""The 20-dim HJB PDE of the paper (eq. 14), its networks and its BP-free residual loss.

  d_t u + lap_x u - 0.05 |grad_x u|^2 = -2  on [0,1]^20 x [0,1],  u(x, 1) = |x|_1,
  exact u = |x|_1 + 1 - t.

Solution ansatz: u(x, t) = sum_i x_i + (1 - t) (1 + NN(x, t)).  This is the paper's transformed
network f' = f + |x|_1 + 1 - t (NN = 0 is exact) with the authors' later (1 - t) factor, so the
terminal condition holds by construction (on [0,1]^20, |x|_1 = sum x_i, which is linear and
so smooths exactly).  The derivatives of sum x_i are exact (grad_x = 1, d_t = 0, lap = 0);
only g(x, t) = (1 - t) (1 + NN(x, t)) goes through an estimator, on the 21-dim input (x, t):

* sg: Gaussian-smoothed g (sigma 0.1), sparse-grid Stein estimate, level 3 (925 nodes);
* mc: Gaussian-smoothed g, antithetic Monte Carlo Stein estimate (fresh directions per step);
* fd: central finite differences of g itself (h = 0.01), 43 evaluations.

Every estimator is a node rule: g is evaluated at x + delta_j for the rule's J perturbations
and the derivatives are fixed linear maps (`stein.SteinFactors`) of those J values.  The
first layer is affine, so W1 (x + delta_j) + b1 = (W1 x + b1) + W1 delta_j: W1 delta_j is
computed once per parameter set and shared by every collocation point (the issue's reuse).
The Laplacian is over x only (20 dims): b_j uses |z_x|^2 - 20.

Residual with u = sum x + g:  r = d_t g + lap_x g - 0.05 |1 + grad_x g|^2 + 2  (0 for NN = 0).

The TT network 21 -> 768 -> 768 -> 1 (sine, sine, identity), 7,745 parameters as in the
paper: layer 1 folds 21 = 3 x 7 -> 768 = 16 x 48 with rank 12, layer 2 768 = 16 x 12 x 4 ->
4 x 12 x 16 with ranks (1, 2, 2, 1), layer 3 is a dense 768 -> 1 (docs/pinn.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .activations import apply_fixed, sine_table
from .fixed import OverflowCounter, QFormat, round_shift
from .formats import PINN_CONFIG, FixedConfig
from .network import LayerSpec, Params, TTNet
from .sparse_grid import smolyak_gauss_hermite
from .stein import SteinFactors, fd_factors, mc_factors, sparse_grid_factors
from .tt import TTShape, _absorb, _final, _initial, to_dense, tt_forward_fixed

D_X = 20
D = D_X + 1
HJB_COEFF = 0.05
HJB_RHS = -2.0
SIGMA = 0.1
FD_STEP = 0.01
MC_SAMPLES = 1024   # evaluations per point: 512 i.i.d. directions and their mirrors
SG_LEVEL = 3
ESTIMATORS = ("sg", "mc", "fd")


# ------------------------------------------------------------------------------------------------
# Problem
# ------------------------------------------------------------------------------------------------

def exact_u(xt: np.ndarray) -> np.ndarray:
    """u(x, t) = |x|_1 + 1 - t on points xt (..., 21) = (x_1..x_20, t)."""
    xt = np.asarray(xt, dtype=np.float64)
    return np.abs(xt[..., :D_X]).sum(-1) + 1.0 - xt[..., D_X]


def sample_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniform collocation / test points in [0,1]^20 x [0,1]."""
    return rng.uniform(0.0, 1.0, size=(n, D))


def residual(grad_g: np.ndarray, lap_g: np.ndarray) -> np.ndarray:
    """HJB residual for u = sum x + g from g's (21-dim) gradient and x-Laplacian."""
    gx = 1.0 + grad_g[..., :D_X]
    return grad_g[..., D_X] + lap_g - HJB_COEFF * np.sum(gx * gx, axis=-1) - HJB_RHS


# ------------------------------------------------------------------------------------------------
# Networks
# ------------------------------------------------------------------------------------------------

def hjb_tt_net(hidden: int = 768) -> TTNet:
    """The TT-MLP of Table 5/6 (n = 768, 7,745 parameters)."""
    if hidden != 768:
        raise ValueError("the TT folding is defined for hidden = 768 (use hjb_dense_net for other widths)")
    l1 = TTShape((3, 7), (16, 48), (1, 12, 1))
    l2 = TTShape((16, 12, 4), (4, 12, 16), (1, 2, 2, 1))
    l3 = TTShape((768,), (1,), (1, 1))
    return TTNet((LayerSpec(l1, "sine"), LayerSpec(l2, "sine"), LayerSpec(l3, "identity")), name="hjb-tt-768")


def hjb_dense_net(hidden: int = 768, layers: int = 3) -> TTNet:
    """Dense baselines of Table 6: FC-3 (21 -> n -> n -> 1) or FC-2 (21 -> n -> 1), sine activations."""
    sizes = [D] + [hidden] * (layers - 1) + [1]
    specs = []
    for i, (n, m) in enumerate(zip(sizes, sizes[1:])):
        specs.append(LayerSpec(TTShape((n,), (m,), (1, 1)), "sine" if i < len(sizes) - 2 else "identity"))
    return TTNet(tuple(specs), name=f"hjb-fc{layers}-{hidden}")


def make_net(name: str) -> TTNet:
    """'tt' (7,745 params), 'fc3-768' (608,257), 'fc3-78' (7,800), 'fc2-320' (7,700)."""
    if name == "tt":
        return hjb_tt_net()
    try:
        kind, width = name.split("-")
        return hjb_dense_net(int(width), int(kind[2:]))
    except (ValueError, IndexError):
        raise ValueError(f"unknown HJB network {name!r}: use 'tt', 'fc3-768', 'fc3-78' or 'fc2-320'") from None


def init_params(net: TTNet, rng: np.random.Generator) -> Params:
    """The contract's TT init (Gaussian cores, dense-equivalent Var(W) = 1 / fan_in for sine and
    identity layers), zero biases: NN starts as a random O(1) function, not at the solution."""
    return net.init(rng)


# ------------------------------------------------------------------------------------------------
# Estimator rules
# ------------------------------------------------------------------------------------------------

def estimator_factors(kind: str, rng: np.random.Generator | None = None, sigma: float = SIGMA,
                      level: int = SG_LEVEL, mc_samples: int = MC_SAMPLES, fd_step: float = FD_STEP
                      ) -> SteinFactors:
    """The node rule of estimator `kind` on the 21-dim input, Laplacian over the 20 x-coordinates."""
    if kind == "sg":
        return sparse_grid_factors(smolyak_gauss_hermite(D, level), sigma, lap_dims=D_X)
    if kind == "mc":
        if rng is None:
            raise ValueError("the mc estimator needs a random generator")
        if mc_samples % 2:
            raise ValueError("mc_samples counts evaluations of mirrored pairs: it must be even")
        return mc_factors(rng, D, mc_samples // 2, sigma, lap_dims=D_X)
    if kind == "fd":
        return fd_factors(D, fd_step, lap_dims=D_X)
    raise ValueError(f"unknown estimator {kind!r}; choose from {ESTIMATORS}")


# ------------------------------------------------------------------------------------------------
# Float evaluation (vectorised, shared first layer)
# ------------------------------------------------------------------------------------------------

def _tt_apply(shape: TTShape, cores, x: np.ndarray, order) -> np.ndarray:
    """y = W x through the cores, keeping x's dtype (float32 for speed); x: (B, N)."""
    state, labels, lead = _initial(x, shape)
    for step in shape.steps(order):
        state, labels = _absorb(state, labels, lead, np.asarray(cores[step.core], dtype=x.dtype),
                                step.core, step.side)
    return _final(state, labels, lead, shape.L)


def tt_columns(shape: TTShape, cores, hT: np.ndarray) -> np.ndarray:
    """y = W h for a batch held column-wise: hT (N, X) -> yT (M, X); the fast path of training.

    Two GEMM stages and no transposes: the first core maps n_1 -> (m_1, r_1) for all columns at
    once; the remaining cores, merged into one (r_1 n_2..n_L) -> (m_2..m_L) matrix (small: for
    the HJB layer 96 x 192), are applied once per m_1 slice.  Every product is a plain 2-D BLAS
    GEMM with a long column dimension, which numpy runs far faster than many small stacked
    matmuls; the MACs per column are m_1 r_1 (n_1 + N_rest M_rest).
    """
    n, m, r = shape.in_modes, shape.out_modes, shape.ranks
    X = hT.shape[-1]
    dt = hT.dtype
    if shape.L == 1:
        G = np.asarray(cores[0], dtype=dt)[0, :, :, 0]                   # (n, m)
        return G.T @ hT
    G1 = np.asarray(cores[0], dtype=dt)[0]                                # (n1, m1, r1)
    G1m = G1.transpose(1, 2, 0).reshape(m[0] * r[1], n[0])
    R = (G1m @ hT.reshape(n[0], -1)).reshape(m[0], r[1] * (shape.in_features // n[0]), X)
    T = np.asarray(cores[1], dtype=np.float64)                            # (r1, N, M, r)
    for G in cores[2:]:
        G = np.asarray(G, dtype=np.float64)
        T = np.einsum("aNMr,rnms->aNnMms", T, G).reshape(T.shape[0], T.shape[1] * G.shape[1],
                                                          T.shape[2] * G.shape[2], G.shape[3])
    Mrest = T.shape[2]
    Gr = np.ascontiguousarray(T[..., 0].transpose(2, 0, 1).reshape(Mrest, -1)).astype(dt)
    out = np.empty((m[0], Mrest, X), dtype=dt)
    for a in range(m[0]):
        np.matmul(Gr, R[a], out=out[a])
    return out.reshape(-1, X)


def _layer_dense(spec: LayerSpec, cores) -> np.ndarray:
    return to_dense(spec.shape, [np.asarray(c, dtype=np.float64) for c in cores])


class SteinLoss:
    """The HJB loss from a model's g values at x + delta_j (`g_nodes`): Stein sums, residual, MSE.

    Shared by the float and the fixed-point models, which differ only in how they evaluate g.
    """

    net: TTNet

    def g_nodes(self, params: Params, xt: np.ndarray, fac: SteinFactors) -> np.ndarray:
        raise NotImplementedError

    def derivatives(self, params: Params, xt: np.ndarray, fac: SteinFactors) -> tuple[np.ndarray, np.ndarray]:
        """Estimated grad g (P, 21) and lap_x g (P,)."""
        return fac.apply(self.g_nodes(params, xt, fac))

    def residual(self, params: Params, xt: np.ndarray, fac: SteinFactors) -> np.ndarray:
        return residual(*self.derivatives(params, xt, fac))

    def loss(self, params: Params, xt: np.ndarray, fac: SteinFactors) -> float:
        """Mean squared residual over the collocation points."""
        r = self.residual(params, xt, fac)
        return float(np.mean(r * r))

    def batched_loss(self, xt: np.ndarray, fac: SteinFactors) -> Callable[[np.ndarray], np.ndarray]:
        """loss(theta_batch (Q, d)) -> (Q,) for the ZO optimisers (one collocation batch, one rule)."""
        def f(theta_batch: np.ndarray) -> np.ndarray:
            tb = np.atleast_2d(theta_batch)
            return np.array([self.loss(self.net.unflatten(th), xt, fac) for th in tb])
        return f


@dataclass
class FloatHJB(SteinLoss):
    """Float loss and network of one HJB model; `dtype` float32 (fast) or float64 (reference)."""

    net: TTNet
    dtype: type = np.float32
    chunk_rows: int = 16384  # rows of (point, node) pairs per inner block

    def nn(self, params: Params, xt: np.ndarray) -> np.ndarray:
        """NN(x, t) at points (P, 21) -> (P,) (float64 first layer, then self.dtype)."""
        (c1, b1) = params[0]
        W1 = _layer_dense(self.net.layers[0], c1)
        h = np.sin(np.asarray(xt, np.float64) @ W1.T + b1)
        return self._tail(params, h.astype(self.dtype)).astype(np.float64)

    def u(self, params: Params, xt: np.ndarray) -> np.ndarray:
        xt = np.asarray(xt, np.float64)
        return xt[:, :D_X].sum(-1) + (1.0 - xt[:, D_X]) * (1.0 + self.nn(params, xt))

    def _tail(self, params: Params, h1: np.ndarray) -> np.ndarray:
        """Layers 2.. on first-layer activations h1 (B, n) -> (B,)."""
        return self._tail_cols(params, np.ascontiguousarray(h1.T))

    def _tail_cols(self, params: Params, h1T: np.ndarray) -> np.ndarray:
        """Layers 2.. on first-layer activations held column-wise, h1T (n, B) -> (B,)."""
        h = h1T
        for spec, (cores, bias) in zip(self.net.layers[1:], params[1:]):
            h = tt_columns(spec.shape, cores, h)
            h += np.asarray(bias, dtype=self.dtype)[:, None]
            if spec.activation == "sine":
                np.sin(h, out=h)
        return h[0]

    def g_nodes(self, params: Params, xt: np.ndarray, fac: SteinFactors) -> np.ndarray:
        """g(x + delta_j) = (1 - t - dt_j) (1 + NN(x + delta_j)) for every point and node: (P, J).

        W1 delta_j is computed once (J x n) and added to each point's W1 x + b1.
        """
        xt = np.asarray(xt, np.float64)
        (c1, b1) = params[0]
        W1 = _layer_dense(self.net.layers[0], c1)
        AT = np.ascontiguousarray((xt @ W1.T + b1).T.astype(self.dtype))      # (n, P)
        BT = np.ascontiguousarray((fac.deltas @ W1.T).T.astype(self.dtype))   # (n, J), shared by all points
        P, J = xt.shape[0], fac.count
        out = np.empty((P, J), dtype=np.float64)
        per = max(1, self.chunk_rows // J)
        for s in range(0, P, per):
            a = AT[:, s:s + per]
            h1T = a[:, :, None] + BT[:, None, :]                              # (n, p, J)
            np.sin(h1T, out=h1T)
            out[s:s + per] = self._tail_cols(params, h1T.reshape(AT.shape[0], -1)).reshape(a.shape[1], J)
        tshift = 1.0 - xt[:, D_X:D] - fac.deltas[None, :, D_X]                # (P, J)
        return tshift * (1.0 + out)

    def val_mse(self, params: Params, xt: np.ndarray) -> float:
        """Validation MSE of u = sum x + (1 - t) (1 + NN) against the exact solution."""
        return float(np.mean((self.u(params, xt) - exact_u(xt)) ** 2))


@dataclass
class DeltaHJB(FloatHJB):
    """The float loss with the node *differences* NN(x + delta_j) - NN(x) computed directly in float32.

    The Stein factors only see f_j - f_0 (`SteinFactors.apply`), and the Laplacian's reach 1e4, so
    the float32 rounding of NN itself (~1e-7 |NN| per operation) swamps the estimates near the
    solution: at the 2,000-step ZO+SG network the float32 residual error was 0.017 RMS against a
    residual of 0.15, and the ZO loss differences of float32 and float64 were uncorrelated
    (docs/results.md, HJB section).  Here every layer carries the exact identities

        sin(a + d) - sin(a) = 2 cos(a + d/2) sin(d/2),    W (h + dh) - W h = W dh,

    so the bases (the point's own pre-activations, float64, P columns) and the differences
    (float32, P x J columns) are kept apart, and the float32 rounding is relative to the
    differences (~sigma |grad NN|), not to NN.  Same GEMMs as FloatHJB; one more sine per
    hidden unit and column.  Sine and identity activations only.
    """

    dtype: type = np.float32

    def _check(self) -> None:
        if len(self.net.layers) < 2:
            raise ValueError("DeltaHJB needs at least two layers")
        if any(spec.activation not in ("sine", "identity") for spec in self.net.layers):
            raise ValueError("DeltaHJB supports sine and identity activations only")

    def features(self, params: Params, xt: np.ndarray, fac: SteinFactors) -> tuple[np.ndarray, np.ndarray]:
        """Inputs of the output layer: h0 (P, n) float64 at the points, dh (n, P J) self.dtype at the nodes
        (dh[:, p J + j] = h(x_p + delta_j) - h(x_p)).  Depends on every layer but the last."""
        self._check()
        xt = np.asarray(xt, np.float64)
        dt = self.dtype
        front = self.net.layers[:-1]
        (c1, b1) = params[0]
        W1 = _layer_dense(front[0], c1)
        z1 = xt @ W1.T + b1                                                   # (P, n) float64 bases
        B = fac.deltas @ W1.T                                                 # (J, n), shared
        # float64 bases of every layer at the points themselves (P columns: cheap)
        bases = [z1]
        h = np.sin(z1) if front[0].activation == "sine" else z1
        for spec, (cores, bias) in zip(front[1:], params[1:]):
            z = tt_columns(spec.shape, [np.asarray(c, np.float64) for c in cores], np.ascontiguousarray(h.T)).T + bias
            bases.append(z)
            h = np.sin(z) if spec.activation == "sine" else z
        P, J = xt.shape[0], fac.count
        half_B = np.ascontiguousarray((0.5 * B).T.astype(dt))                 # (n, J)
        two_sin_half_B = np.ascontiguousarray((2.0 * np.sin(0.5 * B)).T.astype(dt))
        dh = np.empty((h.shape[1], P * J), dtype=dt)
        per = max(1, self.chunk_rows // J)
        for s in range(0, P, per):
            p = min(per, P - s)
            base = bases[0][s:s + p].T.astype(dt)                              # (n, p)
            if front[0].activation == "sine":
                d = base[:, :, None] + half_B[:, None, :]                     # (n, p, J)
                np.cos(d, out=d)
                d *= two_sin_half_B[:, None, :]
            else:
                d = np.broadcast_to(B.T.astype(dt)[:, None, :], (B.shape[1], p, J)).copy()
            d = d.reshape(d.shape[0], -1)
            for li, (spec, (cores, _)) in enumerate(zip(front[1:], params[1:]), start=1):
                d = tt_columns(spec.shape, cores, d)                           # W dh (no bias)
                if spec.activation == "sine":
                    half = d.reshape(d.shape[0], p, J)
                    half *= dt(0.5)
                    arg = half + bases[li][s:s + p].T.astype(dt)[:, :, None]
                    np.cos(arg, out=arg)
                    np.sin(half, out=half)
                    half *= arg
                    half *= dt(2.0)
            dh[:, s * J:(s + p) * J] = d
        return h, dh

    def output(self, last: tuple, h0: np.ndarray, dh: np.ndarray, xt: np.ndarray, fac: SteinFactors) -> tuple[
            np.ndarray, np.ndarray]:
        """NN at the points (P,) and NN(x + delta_j) - NN(x) (P, J), float64, from `features`."""
        spec = self.net.layers[-1]
        cores, bias = last
        nn0 = tt_columns(spec.shape, [np.asarray(c, np.float64) for c in cores], np.ascontiguousarray(h0.T))[0]
        nn0 = nn0 + float(np.asarray(bias).reshape(-1)[0])
        dnn = tt_columns(spec.shape, cores, dh)[0].astype(np.float64)
        return nn0, dnn.reshape(h0.shape[0], fac.count)

    @staticmethod
    def g_from_nn(nn0: np.ndarray, dnn: np.ndarray, xt: np.ndarray, fac: SteinFactors) -> np.ndarray:
        """g(x + delta_j) (..., P, J) from NN(x) (..., P) and the differences (..., P, J)."""
        t = np.asarray(xt, np.float64)[:, D_X:D]                              # (P, 1)
        dtn = fac.deltas[:, D_X]                                              # (J,)
        one_nn0 = 1.0 + nn0[..., None]
        g0 = (1.0 - t) * one_nn0
        # g_j = g_0 + (g_j - g_0); SteinFactors.apply subtracts g_0 again (exact to 1e-16 |g|)
        return g0 + ((1.0 - t - dtn) * dnn - dtn * one_nn0)

    def g_nodes(self, params: Params, xt: np.ndarray, fac: SteinFactors) -> np.ndarray:
        if self.net.layers[-1].activation != "identity" or self.net.layers[-1].shape.out_features != 1:
            raise ValueError("DeltaHJB needs an identity output layer with one output")
        h0, dh = self.features(params[:-1], xt, fac)
        nn0, dnn = self.output(params[-1], h0, dh, xt, fac)
        return self.g_from_nn(nn0, dnn, xt, fac)

    def batched_loss(self, xt: np.ndarray, fac: SteinFactors) -> "OutputLayerCache":
        return OutputLayerCache(self, np.asarray(xt, np.float64), fac)


class OutputLayerCache:
    """Batched loss of a DeltaHJB with an exact fast path for coordinates of the output layer.

    The output layer is linear in its parameters (NN = w . h + b), so once the features h of a
    parameter set are known (`DeltaHJB.features`, cached by the parameters of the other layers),
    changing one output weight w_k by dv changes NN(x) by dv h_k(x) and every node difference by
    dv dh_k: ZO-CGE on the output layer costs no network evaluation per coordinate
    (`coordinate_losses`, used by golden/zo.cge).  Other coordinates fall back to a full evaluation.
    """

    def __init__(self, model: DeltaHJB, xt: np.ndarray, fac: SteinFactors) -> None:
        self.model, self.xt, self.fac = model, xt, fac
        net = model.net
        self.n_last = sum(int(np.prod(cs)) for cs in net.layers[-1].shape.core_shapes) + net.layers[-1].shape.out_features
        self.front = net.n_params - self.n_last
        self.dense_last = net.layers[-1].shape.L == 1 and net.layers[-1].shape.out_features == 1
        self.block_entries = 1 << 21   # (coordinate, point, node) entries per block of the fast path
        self._key: np.ndarray | None = None
        self._feats: tuple[np.ndarray, np.ndarray] | None = None

    def _features(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = theta[:self.front]
        if self._key is None or not np.array_equal(self._key, key):
            params = self.model.net.unflatten(theta)
            self._feats = self.model.features(params[:-1], self.xt, self.fac)
            self._key = key.copy()
        return self._feats

    def _loss_from_nn(self, nn0: np.ndarray, dnn: np.ndarray) -> np.ndarray:
        g = DeltaHJB.g_from_nn(nn0, dnn, self.xt, self.fac)
        grad, lap = self.fac.apply(g)
        r = residual(grad, lap)
        return np.mean(r * r, axis=-1)

    def __call__(self, theta_batch: np.ndarray) -> np.ndarray:
        out = []
        for th in np.atleast_2d(theta_batch):
            h0, dh = self._features(th)
            last = self.model.net.unflatten(th)[-1]
            out.append(float(self._loss_from_nn(*self.model.output(last, h0, dh, self.xt, self.fac))))
        return np.array(out)

    def coordinate_losses(self, theta: np.ndarray, coords: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Losses of theta with theta[coords[q]] := values[q], one at a time."""
        theta = np.asarray(theta, np.float64)
        coords = np.asarray(coords, np.int64)
        values = np.asarray(values, np.float64)
        out = np.empty(coords.size)
        fast = (coords >= self.front) if self.dense_last else np.zeros(coords.size, bool)
        for q in np.flatnonzero(~fast):
            t = theta.copy()
            t[coords[q]] = values[q]
            out[q] = self(t[None])[0]
        if fast.any():
            h0, dh = self._features(theta)
            nn0, dnn = self.model.output(self.model.net.unflatten(theta)[-1], h0, dh, self.xt, self.fac)
            idx = coords[fast] - self.front                     # < n: weight k, == n: the bias
            dv = values[fast] - theta[coords[fast]]
            n = h0.shape[1]
            w = idx < n
            k = np.where(w, idx, 0)
            P, J = dnn.shape
            res = np.empty(k.size)
            step = max(1, self.block_entries // (P * J))
            for a in range(0, k.size, step):
                sl = slice(a, a + step)
                nn0_q = nn0[None] + dv[sl, None] * np.where(w[sl, None], h0[:, k[sl]].T, 1.0)      # (K, P)
                ddn = dh[k[sl]].astype(np.float64).reshape(-1, P, J) * (dv[sl] * w[sl])[:, None, None]
                res[sl] = self._loss_from_nn(nn0_q, dnn[None] + ddn)                           # (K, P, J)
            out[fast] = res
        return out


# ------------------------------------------------------------------------------------------------
# Fixed point: the network the way hardware computes it (table sine), Stein sums in float
# ------------------------------------------------------------------------------------------------

#: Wider formats for the fixed-point Stein path.  The level-3 Laplacian factors reach 1e4 (the
#: origin's -4e5 cancels exactly), so an error e in NN(x + delta_j) becomes ~1e4 e in lap u:
#: node offsets need 28 fraction bits, activations 25, and the sine needs the interpolated
#: table with 14 phase bits (measured lap error 0.03 against 211 for PINN_CONFIG's plain
#: 12-bit table; docs/pinn.md, "Fixed point").  Every accumulator stays below 62 bits.
HJB_FIXED_CONFIG = FixedConfig(input=QFormat(32, 28), weight=QFormat(20, 16), bias=QFormat(20, 16),
                               state=QFormat(32, 25), act=QFormat(32, 25), loss=QFormat(32, 20), sine_bits=14)

SINE_MODES = ("table", "interp")
INTERP_BITS = 10


INTERP_CONST_BITS = 27


def interp_phase_shift(frac: int, phase_bits: int) -> int:
    """Shift S' of the interpolated sine's phase product; C = round(2^(S'+P-f) / 2 pi) ~ 2^24.3.

    The table sine's fixed S = 24 leaves C only S+P-f bits (13 for f = 25, P = 14: a 1.6e-4
    relative phase error, 6e-3 at |x| = 37); here S' grows with f so C always has ~24 bits.
    """
    return frac - phase_bits + INTERP_CONST_BITS


def sine_fixed_interp(x: np.ndarray, fmt: QFormat, phase_bits: int, extra_bits: int = INTERP_BITS) -> np.ndarray:
    """Table sine with linear interpolation, for the PINN's Stein path.

    phase = round(x * C / 2^(S' - E)) with C = round(2^(S'+P-f) / 2 pi) (`interp_phase_shift`),
    i = (phase >> E) mod 2^P, r = phase mod 2^E, result T[i] + ((T[i+1] - T[i]) r + 2^(E-1)) >> E,
    with T the contract's full-turn table (golden/activations.sine_table, quarter-wave ROM).
    Hardware: two ROM reads (or a dual-port ROM), one multiply, one add.  Error
    <= (2 pi / 2^P)^2 / 8 + ~1.5 LSB + |x| * 2pi * 2^-25.
    """
    shift = interp_phase_shift(fmt.frac, phase_bits)
    if shift < extra_bits:
        raise ValueError(f"format {fmt} with {phase_bits} phase bits leaves no room for {extra_bits} extra bits")
    c = int(np.floor(2.0 ** (shift + phase_bits - fmt.frac) / (2 * np.pi) + 0.5))
    ph = round_shift(np.asarray(x, dtype=np.int64) * c, shift - extra_bits)
    mask = (1 << phase_bits) - 1
    idx = (ph >> extra_bits) & mask
    frac = ph & ((1 << extra_bits) - 1)
    t = sine_table(fmt.frac, phase_bits)
    lo, hi = t[idx], t[(idx + 1) & mask]
    return fmt.saturate(lo + round_shift((hi - lo) * frac, extra_bits))


@dataclass
class FixedHJB(SteinLoss):
    """Bit-exact fixed-point NN(x, t) with a table sine (golden/activations.py) or its interpolated form.

    Inputs x + delta_j are quantised to cfg.input (the node table's delta codes are added to the
    point's codes: an integer add).  The network output is in cfg.act; the Stein sums over nodes
    and the residual are computed in float from those exact codes (a J-term dot product with the
    node table's factors, which the host or a wide accumulator does; docs/pinn.md).
    `sine="table"` is the contract's table sine; "interp" adds linear interpolation.
    """

    net: TTNet
    cfg: FixedConfig = PINN_CONFIG
    counter: OverflowCounter = field(default_factory=OverflowCounter)
    sine: str = "table"

    def nn_codes(self, codes: Params, x_codes: np.ndarray) -> np.ndarray:
        if self.sine not in SINE_MODES:
            raise ValueError(f"sine mode {self.sine!r}: choose from {SINE_MODES}")
        h = np.asarray(x_codes, dtype=np.int64)
        cfg = self.cfg
        for i, (spec, (cores, bias)) in enumerate(zip(self.net.layers, codes)):
            h = tt_forward_fixed(spec.shape, cores, h, bias, self.net.layer_formats(cfg, i), spec.contraction,
                                 self.counter)
            if spec.activation == "sine" and self.sine == "interp":
                h = sine_fixed_interp(h, cfg.act, cfg.sine_bits)
            else:
                h = apply_fixed(spec.activation, h, cfg.act, cfg.sine_bits)
        return h[..., 0]

    def nn(self, params: Params, xt: np.ndarray) -> np.ndarray:
        codes = self.net.quantize(params, self.cfg, self.counter)
        xc = self.cfg.input.quantize(xt, self.counter, "input")
        return self.cfg.act.to_float(self.nn_codes(codes, xc))

    def u(self, params: Params, xt: np.ndarray) -> np.ndarray:
        xt = np.asarray(xt, np.float64)
        return xt[:, :D_X].sum(-1) + (1.0 - xt[:, D_X]) * (1.0 + self.nn(params, xt))

    def val_mse(self, params: Params, xt: np.ndarray) -> float:
        return float(np.mean((self.u(params, xt) - exact_u(xt)) ** 2))

    def g_nodes(self, params: Params, xt: np.ndarray, fac: SteinFactors, chunk: int = 8) -> np.ndarray:
        codes = self.net.quantize(params, self.cfg, self.counter)
        xc = self.cfg.input.quantize(xt, self.counter, "input")            # (P, 21)
        dc = self.cfg.input.quantize(fac.deltas, self.counter, "delta")    # (J, 21)
        P, J = xc.shape[0], dc.shape[0]
        out = np.empty((P, J))
        for s in range(0, P, chunk):
            pts = (xc[s:s + chunk, None, :] + dc[None]).reshape(-1, D)
            pts = self.cfg.input.saturate(pts, self.counter, "input+delta")
            out[s:s + chunk] = self.cfg.act.to_float(self.nn_codes(codes, pts)).reshape(-1, J)
        t = self.cfg.input.to_float(xc[:, D_X:D]) + self.cfg.input.to_float(dc[None, :, D_X])
        return (1.0 - t) * (1.0 + out)



# ------------------------------------------------------------------------------------------------
# The effect of fixed point on the estimates (docs/pinn.md, "Fixed point")
# ------------------------------------------------------------------------------------------------

#: (label, config, sine) cases compared by `fixed_point_report`.
FIXED_CASES = (
    ("PINN_CONFIG, table sine P=12", PINN_CONFIG, "table"),
    ("PINN_CONFIG, table sine P=16", FixedConfig(**{**PINN_CONFIG.__dict__, "sine_bits": 16}), "table"),
    ("PINN_CONFIG, interpolated sine P=12", PINN_CONFIG, "interp"),
    ("in s32.28 w s20.16 act s28.22, interpolated P=12",
     FixedConfig(input=QFormat(32, 28), weight=QFormat(20, 16), bias=QFormat(20, 16), state=QFormat(28, 22),
                 act=QFormat(28, 22), loss=QFormat(32, 20), sine_bits=12), "interp"),
    ("HJB_FIXED_CONFIG, interpolated sine P=14", HJB_FIXED_CONFIG, "interp"),
)


def fixed_point_report(net: TTNet, params: Params, points: int = 4, val_points: int = 2000, seed: int = 5,
                       estimator: str = "sg") -> dict:
    """Validation MSE and max |error| of grad u, lap u, residual of each fixed-point case against float64."""
    rng = np.random.default_rng(seed)
    xt = sample_points(rng, points)
    val = sample_points(rng, val_points)
    fac = estimator_factors(estimator, rng)
    fl = FloatHJB(net, np.float64)
    g, lap = fl.derivatives(params, xt, fac)
    r = residual(g, lap)
    out = {"points": points, "val_points": val_points, "estimator": estimator, "val_mse_float64": fl.val_mse(params, val),
           "residual_float64_rms": float(np.sqrt(np.mean(r * r))), "cases": []}
    for label, cfg, sine in FIXED_CASES:
        fx = FixedHJB(net, cfg, sine=sine)
        gq, lq = fac.apply(fx.g_nodes(params, xt, fac))
        out["cases"].append({"case": label, "config": cfg.to_dict(), "sine": sine,
                             "val_mse": fx.val_mse(params, val), "grad_err": float(np.abs(gq - g).max()),
                             "lap_err": float(np.abs(lq - lap).max()),
                             "residual_err": float(np.abs(residual(gq, lq) - r).max()),
                             "saturated": int(sum(v["saturated"] for v in fx.counter.report().values()))})
    return out
