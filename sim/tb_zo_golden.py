"""Golden references for the ZO RTL benches: thin wrappers around golden/zo_fixed.py (the contract).

They add only what the RTL reports besides the parameters: every batch loss and correct count,
in the order the chip runs its forward passes (L_0, then query/coordinate passes).
"""
from __future__ import annotations

import numpy as np

from ttzo.golden import zo, zo_fixed
from ttzo.golden.formats import DEFAULT_CONFIG, FixedConfig
from ttzo.golden.loss import argmax_first, batch_loss_fixed
from ttzo.golden.network import TTNet


class LoggingLoss:
    """(Q, d) parameter codes -> (Q,) integer batch losses; logs (loss, correct) of each evaluation."""

    def __init__(self, net: TTNet, x: np.ndarray, labels: np.ndarray, cfg: FixedConfig = DEFAULT_CONFIG) -> None:
        self.net, self.x, self.labels, self.cfg = net, np.asarray(x), np.asarray(labels), cfg
        self.log: list[tuple[int, int]] = []

    def __call__(self, thetas: np.ndarray) -> np.ndarray:
        out = []
        for th in np.atleast_2d(thetas):
            logits = self.net.forward_fixed(self.net.unflatten(th), self.x, self.cfg)
            L = int(batch_loss_fixed(logits, self.labels, self.cfg.act, self.cfg.loss))
            self.log.append((L, int(np.sum(argmax_first(logits) == self.labels))))
            out.append(L)
        return np.array(out, dtype=np.int64)


def step_codes(net: TTNet, cfg: FixedConfig, mu_w: int, mu_b: int, alpha_w: int = 0, alpha_b: int = 0
               ) -> tuple[zo_fixed.ParamFormats, np.ndarray, np.ndarray]:
    pf = zo_fixed.ParamFormats.of(net, cfg)
    return pf, np.where(pf.is_bias, mu_b, mu_w).astype(np.int64), np.where(pf.is_bias, alpha_b, alpha_w).astype(np.int64)


def signrge_steps(net: TTNet, theta: np.ndarray, x: np.ndarray, labels: np.ndarray, *, seed: int, step0: int,
                  k_steps: int, n_queries: int, mu_w: int, mu_b: int, alpha_w: int, alpha_b: int,
                  kind: str = "rademacher", cfg: FixedConfig = DEFAULT_CONFIG
                  ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """K golden signRGE steps (zo_fixed.signrge_step, forward difference) from flat codes `theta`."""
    pf, mu, alpha = step_codes(net, cfg, mu_w, mu_b, alpha_w, alpha_b)
    loss = LoggingLoss(net, x, labels, cfg)
    theta = np.asarray(theta, dtype=np.int64)
    for t in range(step0, step0 + k_steps):
        theta, _ = zo_fixed.signrge_step(loss, theta, seed, t, n_queries, mu, alpha, pf, kind)
    return theta, loss.log


def cge_step(net: TTNet, theta: np.ndarray, b: np.ndarray, x: np.ndarray, labels: np.ndarray, *, seed: int,
             step: int, fraction: float, c: zo_fixed.CGEConstants, cfg: FixedConfig = DEFAULT_CONFIG,
             rounding: str = "nearest") -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], np.ndarray]:
    """One golden CGE step (zo_fixed.cge_step, coordinates from zo.sample_coordinates); `rounding`
    "stochastic" rounds the update with the words of PRNG stream (seed, step, SR_QUERY)."""
    pf = zo_fixed.ParamFormats.of(net, cfg)
    loss = LoggingLoss(net, x, labels, cfg)
    coords = zo.sample_coordinates(seed, step, net.n_params, fraction)
    words = zo_fixed.stochastic_rounding_words(seed, step, net.n_params) if rounding == "stochastic" else None
    new, b_new, _ = zo_fixed.cge_step(loss, np.asarray(theta, dtype=np.int64), b, coords, c, pf,
                                      rounding_words=words)
    return new, b_new, loss.log, coords
