"""First-order baseline for the HJB PINN: exact gradient of the SG/MC/FD residual loss by jax autodiff.

Optional: needs `jax` (CPU).  The loss is the same function of the parameters as
`hjb.FloatHJB.loss` (same node rule, same ansatz u = sum x + (1 - t)(1 + NN)); only the
parameter gradient comes from reverse-mode autodiff instead of ZO queries, as in the paper's
Table 4 ("FO + SG" etc.).  Adam (b1 0.9, b2 0.999) with the run's learning-rate schedule.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .network import TTNet
from .stein import SteinFactors


def _require_jax():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ImportError("the first-order HJB baseline needs jax: pip install jax") from exc
    jax.config.update("jax_enable_x64", True)
    return jax, jnp


class FOTrainer:
    """Loss and gradient of the HJB residual loss in jax (float64), plus an Adam update."""

    def __init__(self, net: TTNet, cfg: Any) -> None:
        self.jax, self.jnp = _require_jax()
        self.net = net
        self.cfg = cfg
        self.m = np.zeros(net.n_params)
        self.v = np.zeros(net.n_params)
        self.t = 0
        self._grad = self.jax.jit(self.jax.value_and_grad(self._loss))

    def load_state(self, m: np.ndarray, v: np.ndarray, step: int) -> None:
        self.m, self.v, self.t = m.copy(), v.copy(), int(step)

    # --- the loss in jax ---------------------------------------------------------------------
    def _dense(self, shape, cores):
        jnp = self.jnp
        t = jnp.ones((1, 1, 1))
        for G in cores:
            r0, n, m, r1 = G.shape
            t = jnp.einsum("abr,rnms->ambns", t, G).reshape(t.shape[0] * m, t.shape[1] * n, r1)
        return t[:, :, 0]

    def _unflatten(self, theta):
        out = []
        pos = 0
        for spec in self.net.layers:
            cores = []
            for cs in spec.shape.core_shapes:
                n = int(np.prod(cs))
                cores.append(theta[pos:pos + n].reshape(cs))
                pos += n
            n = spec.shape.out_features
            out.append((cores, theta[pos:pos + n]))
            pos += n
        return out

    def _loss(self, theta, xt, deltas, a, b):
        jnp = self.jnp
        from .hjb import D_X, HJB_COEFF, HJB_RHS
        params = self._unflatten(theta)
        specs = self.net.layers
        W1 = self._dense(specs[0].shape, params[0][0])
        A = xt @ W1.T + params[0][1]                        # (P, n)
        B = deltas @ W1.T                                   # (J, n)
        h = jnp.sin(A[:, None, :] + B[None, :, :])          # (P, J, n)
        for spec, (cores, bias) in zip(specs[1:], params[1:]):
            W = self._dense(spec.shape, cores)
            h = h @ W.T + bias
            if spec.activation == "sine":
                h = jnp.sin(h)
        nn = h[..., 0]                                      # (P, J)
        g = (1.0 - xt[:, D_X:D_X + 1] - deltas[None, :, D_X]) * (1.0 + nn)
        d = g - g[:, 0:1]                                   # node 0 is the origin (checked by the caller)
        grad = d @ a
        lap = d @ b
        gx = 1.0 + grad[:, :D_X]
        r = grad[:, D_X] + lap - HJB_COEFF * jnp.sum(gx * gx, axis=1) - HJB_RHS
        return jnp.mean(r * r)

    def loss_and_grad(self, theta: np.ndarray, xt: np.ndarray, fac: SteinFactors) -> tuple[float, np.ndarray]:
        if fac.origin != 0:
            raise ValueError("the FO loss expects the rule's origin node first")
        L, g = self._grad(self.jnp.asarray(theta), self.jnp.asarray(xt), self.jnp.asarray(fac.deltas),
                          self.jnp.asarray(fac.a), self.jnp.asarray(fac.b))
        return float(L), np.asarray(g, dtype=np.float64)

    def update(self, theta: np.ndarray, g: np.ndarray, lr: float, b1: float = 0.9, b2: float = 0.999,
               eps: float = 1e-8) -> np.ndarray:
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        mh = self.m / (1 - b1 ** self.t)
        vh = self.v / (1 - b2 ** self.t)
        return theta - lr * mh / (np.sqrt(vh) + eps)
